using System.Net.Http.Json;
using System.Text.RegularExpressions;
using EmaLab.Companion.Tests;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A registered EMA checkpoint loads in PyTorch by name, as <c>mlflow.pytorch.load_model("models:/name@alias")</c> loads it:
/// the real MLflow client was checked by hand against a live server (the issue's note); CI, without MLflow, runs the same
/// steps with nothing but PyTorch (clients/python/tests/registered_model.py) against a child server.
/// </summary>
[Collection(ChildServerCollection.Name)]
[Trait("Speed", "Process")]
public sealed partial class RegisteredModelLoadTests : IDisposable
{
    readonly string _data = Directory.CreateTempSubdirectory("emalab-registry-").FullName;

    [Theory]
    [InlineData("mlp", "Sequential")]
    [InlineData("resnet", "ResNet")]
    [InlineData("unet", "DiffusionUNet")]
    public async Task A_registered_track_loads_by_its_alias_as_the_docs_network_with_the_checkpoints_weights(string model, string pythonClass)
    {
        using var server = await ChildServer.StartAsync(_data);
        var spec = Api.DigitsRun(steps: 20, evalInterval: 10);
        spec["model"] = model;
        if (model == "resnet")
        {
            spec.Remove("hidden");
            spec["channels"] = new System.Text.Json.Nodes.JsonArray(8, 8);
            spec["blocks"] = 1;
        }
        if (model == "unet")
        {
            spec.Remove("hidden");
            spec["channels"] = new System.Text.Json.Nodes.JsonArray(8, 16);
            spec["diffusion"] = new System.Text.Json.Nodes.JsonObject { ["samples"] = 100, ["finalSamples"] = 100, ["samplingSteps"] = 4 };
        }
        var run = (await Api.CreateAsync(server.Client, spec)).Id();
        await Api.WaitForFinishAsync(server.Client, run);
        var checkpoint = (await Api.GetAsync(server.Client, $"/api/runs/{run}/checkpoints")).EnumerateArray()
            .Single(c => c.GetProperty("track").GetString() == "ema-0.99").GetProperty("id").GetInt64();
        var registered = await server.Client.PostAsJsonAsync($"/api/checkpoints/{checkpoint}/register", new { name = $"digits-{model}", alias = "champion" });
        Assert.True(registered.IsSuccessStatusCode, await registered.Content.ReadAsStringAsync());

        var (code, output) = await Python.RunAsync("registered_model.py", server.Client.BaseAddress!.ToString(), $"digits-{model}", "champion");
        Assert.True(code == 0, $"{output}\n--- server ---\n{server.Output}");
        Assert.Equal($"{pythonClass} ema-0.99 1 2.10.0", output.Trim().Split('\n')[^1]);
    }

    [Fact]
    public void The_models_code_a_registered_checkpoint_carries_is_the_documentations()
    {
        // code/emalab_model.py holds docs/training.md's classes as they stand there (DocsPyTorchTests and DocsDiffusionTests
        // check those against the engine), so a registered model is the network the docs describe.
        var docs = File.ReadAllText(Path.Combine(Python.RepositoryRoot, "docs", "training.md"));
        var code = File.ReadAllText(Path.Combine(Python.RepositoryRoot, "src", "Dashboard", "Tracking", "emalab_model.py"));
        var blocks = PythonBlock().Matches(docs).Select(m => m.Groups[1].Value)
            .Where(b => b.Contains("def build(arch)", StringComparison.Ordinal) || b.Contains("def build_unet(", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, blocks.Count);
        Assert.All(blocks, block => Assert.Contains(block, code));
    }

    [GeneratedRegex(@"```python\n(.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex PythonBlock();

    public void Dispose() => Directory.Delete(_data, recursive: true);
}
