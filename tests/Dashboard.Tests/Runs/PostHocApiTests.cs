using EmaLab.TrainingEngine.Averaging;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Checkpoints;

namespace EmaLab.Dashboard.Tests;

public sealed class PostHocApiTests(EmaLabFactory factory) : PostHocApiSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL.</summary>
[Trait("Speed", "Postgres")]
public sealed class PostHocApiOnPostgresTests(PostgresEmaLabFactory factory) : PostHocApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class PostHocApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    async Task<long> TrainedRunAsync(JsonArray? tracks = null)
    {
        var body = Api.DigitsRun(steps: 200, decays: [0.9, 0.99]);
        if (tracks is not null) body["ema"]!["tracks"] = tracks;
        body["postHoc"] = new JsonObject { ["sigmaRels"] = new JsonArray(0.05, 0.10), ["snapshotEvery"] = 20 };
        var run = await Api.CreateAsync(_client, body);
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, run.Id())).Status());
        return run.Id();
    }

    [Fact]
    public async Task Lawa_of_the_stored_raw_checkpoints_is_the_mean_of_their_weights_evaluated_and_stored_as_a_track()
    {
        var body = Api.DigitsRun(steps: 200, decays: [0.9]);
        body["checkpointEvery"] = 50;
        var id = (await Api.CreateAsync(_client, body)).Id();
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, id)).Status());

        // Raw weights at 0, 50, 100, 150, 200: spacings of 50 (4 copies), 100 (2) and 150 (2) end at 200.
        var options = await Api.GetAsync(_client, $"/api/runs/{id}/posthoc/lawa");
        Assert.Equal([0L, 50, 100, 150, 200], options.GetProperty("keptSteps").EnumerateArray().Select(s => s.GetInt64()));
        Assert.Equal([(50L, 4), (100L, 2), (150L, 2)], options.GetProperty("choices").EnumerateArray()
            .Select(c => (c.GetProperty("every").GetInt64(), c.GetProperty("maxCheckpoints").GetInt32())));

        var response = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc/lawa", new { checkpoints = 3, every = 50 });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var result = JsonDocument.Parse(text).RootElement;
        Assert.Equal("posthoc-lawa-k3-every50", result.GetProperty("track").GetString());
        Assert.Equal(PostHocLawa.SigmaRel([100, 150, 200], 200), result.GetProperty("sigmaRel").GetDouble(), 12);

        // Its checkpoint holds the mean of the three raw checkpoints' weights, and it scored what the metric says.
        var checkpoints = (await Api.GetAsync(_client, $"/api/runs/{id}/checkpoints")).EnumerateArray().ToList();
        async Task<EmaLab.TrainingEngine.Formats.SafeTensorsContent> Load(string track, long step)
        {
            var row = checkpoints.Single(c => c.GetProperty("track").GetString() == track && c.GetProperty("step").GetInt64() == step);
            return EmaLab.TrainingEngine.Formats.SafeTensors.Read(new MemoryStream(await _client.GetByteArrayAsync($"/api/checkpoints/{row.GetProperty("id").GetInt64()}/download")));
        }
        using var lawa = await Load("posthoc-lawa-k3-every50", 200);
        var raws = new[] { await Load("raw", 100), await Load("raw", 150), await Load("raw", 200) };
        try
        {
            var expected = PostHocLawa.Mean(raws.Select(r => r.Tensors).ToList());
            foreach (var (name, tensor) in expected) Assert.True(tensor.equal(lawa.Tensors[name]).all().item<bool>(), $"{name} is not the mean of the raw checkpoints");
        }
        finally { foreach (var r in raws) r.Dispose(); }
        var series = await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy&track=posthoc-lawa-k3-every50");
        Assert.Equal(result.GetProperty("score").GetDouble(), series[0].GetProperty("points")[0].GetProperty("value").GetDouble());
        // On the σ_rel axis with the run's tracks, not among the σ_rel reconstructions.
        var overview = await Api.GetAsync(_client, $"/api/runs/{id}/posthoc");
        Assert.Contains(overview.GetProperty("tracked").EnumerateArray(), t => t.GetProperty("track").GetString() == "posthoc-lawa-k3-every50");
        Assert.DoesNotContain(overview.GetProperty("results").EnumerateArray(), t => t.GetProperty("track").GetString() == "posthoc-lawa-k3-every50");

        // What the kept steps do not allow is a 400 naming the field and what is possible.
        var tooMany = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc/lawa", new { checkpoints = 5, every = 50 });
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.Contains("at most 4 of the kept checkpoints", (await tooMany.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").GetProperty("checkpoints")[0].GetString());
        var offGrid = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc/lawa", new { checkpoints = 2, every = 70 });
        Assert.Contains("possible: every 50: k ≤ 4; every 100: k ≤ 2; every 150: k ≤ 2",
            (await offGrid.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").GetProperty("every")[0].GetString());
        var missing = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc/lawa", new { every = 50 });
        Assert.True((await missing.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").TryGetProperty("checkpoints", out _));
    }

    [Fact]
    public async Task A_sigma_rel_is_reconstructed_evaluated_and_stored_as_a_track()
    {
        var id = await TrainedRunAsync();
        var response = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc", new { sigmaRel = 0.075 });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var result = JsonDocument.Parse(text).RootElement;
        Assert.Equal("posthoc-0.075", result.GetProperty("track").GetString());
        Assert.Equal(200, result.GetProperty("step").GetInt64());
        var accuracy = result.GetProperty("score").GetDouble();
        Assert.True(accuracy > 0.8, text);

        // Stored like any track: its metric, its checkpoint, listed on the run.
        var series = await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy&track=posthoc-0.075");
        Assert.Equal(accuracy, series[0].GetProperty("points")[0].GetProperty("value").GetDouble());
        var checkpoint = (await Api.GetAsync(_client, $"/api/runs/{id}/checkpoints")).EnumerateArray().Single(c => c.GetProperty("track").GetString() == "posthoc-0.075");
        var bytes = await _client.GetByteArrayAsync($"/api/checkpoints/{checkpoint.GetProperty("id").GetInt64()}/download");
        using (var imported = CheckpointExport.Import(new MemoryStream(bytes)))
        {
            Assert.Equal("posthoc-0.075", imported.Metadata["track"]);
            Assert.Equal(accuracy, double.Parse(imported.Metadata["eval_accuracy"], System.Globalization.CultureInfo.InvariantCulture));
        }
        var tracks = (await Api.GetAsync(_client, $"/api/runs/{id}")).GetProperty("tracks").EnumerateArray().ToList();
        Assert.Equal(0.075, tracks.Single(t => t.GetProperty("name").GetString() == "posthoc-0.075").GetProperty("sigmaRel").GetDouble());

        // A classic decay goes through its equivalent σ_rel at the last snapshot: √0.9 / 0.1 / 200.
        var byDecay = JsonDocument.Parse(await (await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc", new { decay = 0.9 })).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(Math.Sqrt(0.9) / 0.1 / 200, byDecay.GetProperty("sigmaRel").GetDouble(), 12);
        Assert.Equal(0.9, byDecay.GetProperty("equivalentDecay").GetDouble(), 12);
        // 0.99 averages over ~100 of the 200 steps: wider than any power-function profile.
        var tooWide = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc", new { decay = 0.99 });
        Assert.Equal(HttpStatusCode.BadRequest, tooWide.StatusCode);
        Assert.Contains("wider than the whole run", await tooWide.Content.ReadAsStringAsync());
        // 1e-200 once answered 500 after a NaN reconstruction; decays that narrow are refused by name too.
        foreach (var narrow in new object[] { new { sigmaRel = 1e-200 }, new { decay = 1e-9 } })
        {
            var refused = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc", narrow);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }
        Assert.DoesNotContain((await Api.GetAsync(_client, $"/api/runs/{id}")).GetProperty("tracks").EnumerateArray(), t => t.GetProperty("name").GetString()!.Contains("e-"));

        var overview = await Api.GetAsync(_client, $"/api/runs/{id}/posthoc");
        Assert.Equal(10, overview.GetProperty("snapshots").GetInt32());
        Assert.True(overview.GetProperty("snapshotBytes").GetInt64() > 0);
        Assert.Equal(["ema-0.9", "ema-0.99"], overview.GetProperty("tracked").EnumerateArray().Select(t => t.GetProperty("track").GetString()));
        Assert.Equal(2, overview.GetProperty("results").GetArrayLength());
    }

    [Fact]
    public async Task A_sweep_runs_in_the_background_and_reports_progress()
    {
        var id = await TrainedRunAsync(new JsonArray(
            new JsonObject { ["decay"] = 0.9 },
            new JsonObject { ["preset"] = "timm", ["decay"] = 0.99, ["warmup"] = "power" },
            new JsonObject { ["preset"] = "swa", ["startStep"] = 101 }));
        var response = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc/sweep", new { from = 0.03, to = 0.2, count = 4 });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        JsonElement overview;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        do
        {
            await Task.Delay(100);
            overview = await Api.GetAsync(_client, $"/api/runs/{id}/posthoc");
        } while (overview.GetProperty("sweep").GetProperty("running").GetBoolean() && DateTime.UtcNow < deadline);
        Assert.True(overview.GetProperty("sweep").GetProperty("done").GetInt32() == 4, $"the sweep: {overview.GetProperty("sweep")}");
        var sigmas = overview.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("sigmaRel").GetDouble()).ToList();
        Assert.Equal(4, sigmas.Count);
        Assert.Equal(0.03, sigmas[0], 12);
        Assert.Equal(0.2, sigmas[^1], 12);

        // Every track sits on the σ_rel axis at the width of its own rule's profile; SWA, which has no decay, too.
        var tracked = overview.GetProperty("tracked").EnumerateArray().ToDictionary(t => t.GetProperty("track").GetString()!);
        Assert.Equal(["ema-0.9", "ema-0.99-timm-warmup", "swa-from-101"], tracked.Keys);
        Assert.Equal(JsonValueKind.Null, tracked["swa-from-101"].GetProperty("decay").ValueKind);
        // A uniform average of the weights after steps 101..200, read at 200: σ = √((100² − 1)/12) steps.
        Assert.Equal(Math.Sqrt((100 * 100 - 1) / 12.0) / 200, tracked["swa-from-101"].GetProperty("sigmaRel").GetDouble(), 1e-8);
        Assert.Equal(PowerFunctionProfile.SigmaRelOfDecay(0.9, 200), tracked["ema-0.9"].GetProperty("sigmaRel").GetDouble(), 1e-9);
    }

    [Fact]
    public async Task Bad_post_hoc_requests_are_refused_with_reasons()
    {
        var plain = await Api.CreateAsync(_client, Api.DigitsRun(steps: 20));
        await Api.WaitForFinishAsync(_client, plain.Id());
        var noPostHoc = await _client.PostAsJsonAsync($"/api/runs/{plain.Id()}/posthoc", new { sigmaRel = 0.1 });
        Assert.Equal(HttpStatusCode.Conflict, noPostHoc.StatusCode);
        Assert.Contains("without post-hoc EMA", await noPostHoc.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsJsonAsync("/api/runs/999999/posthoc", new { sigmaRel = 0.1 })).StatusCode);
        foreach (var (body, field) in new (object, string)[] { (new { sigmaRel = 0.5 }, "sigmaRel"), (new { sigmaRel = 1e-200 }, "sigmaRel"), (new { sigmaRel = -0.1 }, "sigmaRel"), (new { decay = 1.0 }, "decay"), (new { }, "sigmaRel"), (new { sigmaRel = 0.1, decay = 0.9 }, "sigmaRel") })
        {
            var response = await _client.PostAsJsonAsync($"/api/runs/{plain.Id()}/posthoc", body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.True(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("errors").TryGetProperty(field, out _));
        }
        var badSweep = await _client.PostAsJsonAsync($"/api/runs/{plain.Id()}/posthoc/sweep", new { from = 0.2, to = 0.1, count = 4 });
        Assert.Equal(HttpStatusCode.BadRequest, badSweep.StatusCode);

        var body2 = Api.DigitsRun(steps: 20);
        body2["postHoc"] = new JsonObject { ["sigmaRels"] = new JsonArray(0.5) };
        var invalid = await _client.PostAsJsonAsync("/api/runs", body2);
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Contains("postHoc.sigmaRels", await invalid.Content.ReadAsStringAsync());
    }
}
