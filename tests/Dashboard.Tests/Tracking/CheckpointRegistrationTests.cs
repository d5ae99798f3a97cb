using System.IO.Compression;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A run page's "Register": a trained run's track checkpoint becomes a version of a registered model, with MLflow's
/// pytorch flavor files and the checkpoint's evaluation; its files outlive the run.
/// </summary>
public sealed class CheckpointRegistrationTests(EmaLabFactory factory) : IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    async Task<(long Run, JsonElement Checkpoint)> TrainedCheckpointAsync(string track)
    {
        var run = (await Api.CreateAsync(_client, Api.DigitsRun(steps: 20, evalInterval: 10))).Id();
        await Api.WaitForFinishAsync(_client, run);
        var checkpoint = (await Api.GetAsync(_client, $"/api/runs/{run}/checkpoints")).EnumerateArray().Single(c => c.GetProperty("track").GetString() == track);
        return (run, checkpoint);
    }

    async Task<JsonElement> RegisterAsync(long checkpoint, object body)
    {
        var response = await _client.PostAsJsonAsync($"/api/checkpoints/{checkpoint}/register", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    [Fact]
    public async Task A_checkpoint_registers_as_a_pytorch_model_with_its_evaluation_and_keeps_its_files_when_the_run_is_deleted()
    {
        var (run, checkpoint) = await TrainedCheckpointAsync("ema-0.99");
        var name = $"reg-{Guid.NewGuid():N}"[..12];
        var version = await RegisterAsync(checkpoint.GetProperty("id").GetInt64(), new { name, alias = "champion" });
        Assert.Equal("1", version.GetProperty("version").GetString());
        var modelId = version.GetProperty("modelId").GetString()!;
        Assert.Equal($"models:/{modelId}", version.GetProperty("source").GetString());

        // MLflow's view: the alias resolves, the logged model holds the track, its step and the checkpoint's evaluation.
        var byAlias = await Api.OkAsync(await _client.GetAsync($"/api/2.0/mlflow/registered-models/alias?name={name}&alias=champion"));
        Assert.Equal("1", byAlias.GetProperty("model_version").GetProperty("version").GetString());
        var logged = (await Api.OkAsync(await _client.GetAsync($"/api/2.0/mlflow/logged-models/{modelId}"))).GetProperty("model");
        var tags = logged.GetProperty("info").GetProperty("tags").EnumerateArray().ToDictionary(t => t.GetProperty("key").GetString()!, t => t.GetProperty("value").GetString());
        Assert.Equal("ema-0.99", tags["emalab.track"]);
        Assert.Equal("0.99", tags["emalab.decay"]);
        Assert.Equal("ema-0_99", logged.GetProperty("info").GetProperty("name").GetString());
        var metrics = logged.GetProperty("data").GetProperty("metrics").EnumerateArray().ToDictionary(m => m.GetProperty("key").GetString()!);
        Assert.Equal(20, metrics["eval_accuracy"].GetProperty("step").GetInt64());
        var file = await _client.GetByteArrayAsync($"/api/checkpoints/{checkpoint.GetProperty("id").GetInt64()}/download");
        var label = EmaLab.TrainingEngine.Formats.SafeTensors.ReadHeader(new MemoryStream(file), "checkpoint").Metadata;
        Assert.Equal(double.Parse(label["eval_accuracy"], System.Globalization.CultureInfo.InvariantCulture),
            metrics["eval_accuracy"].GetProperty("value").GetDouble());

        // The flavor's files, where the download URI points.
        var uri = (await Api.OkAsync(await _client.GetAsync($"/api/2.0/mlflow/model-versions/get-download-uri?name={name}&version=1")))
            .GetProperty("artifact_uri").GetString()!;
        var root = "/api/2.0/mlflow-artifacts/artifacts/" + uri["mlflow-artifacts:/".Length..];
        var mlmodel = await _client.GetStringAsync($"{root}/MLmodel");
        Assert.Contains("  pytorch:\n    code: code\n    model_data: data\n", mlmodel);
        Assert.Contains($"model_id: {modelId}", mlmodel);
        Assert.Equal("pickle", await _client.GetStringAsync($"{root}/data/pickle_module_info.txt"));
        var weights = await _client.GetByteArrayAsync($"{root}/model.safetensors");
        Assert.Equal(file, weights);
        using (var pth = new ZipArchive(new MemoryStream(await _client.GetByteArrayAsync($"{root}/data/model.pth"))))
        {
            Assert.Equal(["model/data.pkl", "model/byteorder", "model/version"], pth.Entries.Select(e => e.FullName));
            using var pickle = new MemoryStream();
            pth.GetEntry("model/data.pkl")!.Open().CopyTo(pickle);
            var bytes = pickle.ToArray();
            Assert.Equal("\u0080\u0003cemalab_model\nfrom_safetensors\nB", Encoding.Latin1.GetString(bytes, 0, 34));
            Assert.Equal(weights.Length, BitConverter.ToInt32(bytes, 34));
        }

        // Registering the same checkpoint again reuses its logged model; the version numbers go on.
        var again = await RegisterAsync(checkpoint.GetProperty("id").GetInt64(), new { name });
        Assert.Equal(new[] { "2", modelId }, new[] { again.GetProperty("version").GetString(), again.GetProperty("modelId").GetString() });

        // The run is deleted: the version's files stay, under the registry's folder; the logged model still says which run
        // made it (MLflow's source_run_id), though no run of this server holds it any more.
        Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync($"/api/runs/{run}")).StatusCode);
        Assert.Equal(weights, await _client.GetByteArrayAsync($"{root}/model.safetensors"));
        var orphan = (await Api.OkAsync(await _client.GetAsync($"/api/2.0/mlflow/logged-models/{modelId}"))).GetProperty("model").GetProperty("info");
        Assert.Equal(version.GetProperty("runId").GetString(), orphan.GetProperty("source_run_id").GetString());
        Assert.Equal("1", (await Api.OkAsync(await _client.GetAsync($"/api/2.0/mlflow/registered-models/alias?name={name}&alias=champion")))
            .GetProperty("model_version").GetProperty("version").GetString());
    }

    [Fact]
    public async Task A_bad_name_or_alias_is_refused_by_its_field_and_registers_nothing()
    {
        var (_, checkpoint) = await TrainedCheckpointAsync("raw");
        var id = checkpoint.GetProperty("id").GetInt64();
        foreach (var (body, field) in new (object, string)[]
        {
            (new { name = "a/b" }, "name"),
            (new { name = "" }, "name"),
            (new { alias = "x" }, "name"),
            (new { name = "fine-name", alias = "latest" }, "alias"),
            (new { name = "fine-name", alias = "has space" }, "alias"),
        })
        {
            var response = await _client.PostAsJsonAsync($"/api/checkpoints/{id}/register", body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
        }
        var missing = await _client.GetAsync("/api/2.0/mlflow/registered-models/get?name=fine-name");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsJsonAsync("/api/checkpoints/999999/register", new { name = "x" })).StatusCode);
    }
}
