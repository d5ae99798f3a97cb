using EmaLab.Companion.Tests;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A script trained elsewhere, against a live server (a child process on a real port): it logs raw and EMA tracks with
/// the Python companion, uploads its post-hoc snapshots, and evaluates a sweep the server reconstructs from them
/// (clients/python/tests/live_server.py holds the script's own checks).
/// </summary>
[Collection(ChildServerCollection.Name)]
[Trait("Speed", "Process")]
public sealed class CompanionLiveTests : IDisposable
{
    readonly string _data = Directory.CreateTempSubdirectory("emalab-companion-").FullName;

    [Fact]
    public async Task A_scripts_run_uploads_snapshots_and_logs_back_the_post_hoc_sweep_the_server_reconstructs()
    {
        using var server = await ChildServer.StartAsync(_data);
        var (code, output) = await Python.RunAsync("live_server.py", server.Client.BaseAddress!.ToString());
        Assert.True(code == 0, $"{output}\n--- server ---\n{server.Output}");
        var id = long.Parse(output.Trim().Split('\n')[^1]);

        var run = await Api.GetAsync(server.Client, $"/api/runs/{id}");
        Assert.Equal("completed", run.Status());
        var tracks = run.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()).ToHashSet();
        Assert.Superset(new HashSet<string?> { "raw", "ema-0.99", "ema-0.995-timm", "posthoc-0.03", "posthoc-0.07", "posthoc-0.15" }, tracks);

        var overview = await Api.GetAsync(server.Client, $"/api/runs/{id}/posthoc");
        Assert.Equal([0.05, 0.1], overview.GetProperty("snapshotSigmaRels").EnumerateArray().Select(s => s.GetDouble()));
        Assert.Equal(6, overview.GetProperty("snapshots").GetInt32()); // every 50 steps of 300; the refused one is not among them
        var results = overview.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["posthoc-0.03", "posthoc-0.07", "posthoc-0.15"], results.Select(r => r.GetProperty("track").GetString()));
        Assert.All(results, r => Assert.InRange(r.GetProperty("score").GetDouble(), 0.7, 1.0)); // the script's evaluation
        // The script recorded its rules (emalab.tracks): its tracks are marked at their σ_rel, as an engine run's are.
        var tracked = overview.GetProperty("tracked").EnumerateArray().ToList();
        Assert.Equal(["ema-0.99", "ema-0.995-timm"], tracked.Select(t => t.GetProperty("track").GetString()));
        var timm = new EmaLab.TrainingEngine.Averaging.EmaTrackSettings { Preset = "timm", Decay = 0.995 }
            .Resolve(new EmaLab.TrainingEngine.Averaging.EmaSettings(), "timm", null);
        var emalab = new EmaLab.TrainingEngine.Averaging.EmaTrackSettings { Decay = 0.99 }.Resolve(new EmaLab.TrainingEngine.Averaging.EmaSettings(), "emalab", null);
        Assert.Equal(EmaLab.TrainingEngine.Averaging.EmaMath.SigmaRel(emalab, 300), tracked[0].GetProperty("sigmaRel").GetDouble());
        Assert.Equal(EmaLab.TrainingEngine.Averaging.EmaMath.SigmaRel(timm, 300), tracked[1].GetProperty("sigmaRel").GetDouble());
        var badRules = System.Text.Json.JsonSerializer.Serialize(new
        {
            run_id = run.GetProperty("trackingId").GetString(), key = "emalab.tracks",
            value = """[{"name": "ema-2", "preset": "emalab", "decay": 2}]""",
        });
        var refused = await server.Client.PostAsync("/api/2.0/mlflow/runs/set-tag",
            new StringContent(badRules, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("Tag 'emalab.tracks': rule [0].decay: Decay 2 is outside (0, 1).",
            System.Text.Json.JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString());
        var checkpoints = (await Api.GetAsync(server.Client, $"/api/runs/{id}/checkpoints")).EnumerateArray()
            .Select(c => c.GetProperty("track").GetString()).Order().ToList();
        Assert.Equal(["posthoc-0.03", "posthoc-0.07", "posthoc-0.15"], checkpoints);

        // The command a run page shows for a σ_rel still waiting: the companion's CLI with the script's model and evaluation.
        var (cli, cliOutput) = await Python.RunModuleAsync("emalab", "sweep", "--server", server.Client.BaseAddress!.ToString(),
            "--run", run.GetProperty("trackingId").GetString()!, "--sigma-rels", "0.2", "--model", "tests.live_model:build_model",
            "--evaluate", "tests.live_model:evaluate");
        Assert.True(cli == 0, cliOutput);
        var swept = (await Api.GetAsync(server.Client, $"/api/runs/{id}/posthoc")).GetProperty("results").EnumerateArray()
            .Single(r => r.GetProperty("track").GetString() == "posthoc-0.2");
        Assert.InRange(swept.GetProperty("score").GetDouble(), 0.5, 1.0);
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_data, recursive: true);
    }
}
