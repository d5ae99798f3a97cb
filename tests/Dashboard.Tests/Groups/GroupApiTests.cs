using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

public sealed class GroupApiTests(EmaLabFactory factory) : GroupApiSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL (groups are a join of tags and runs: both databases must answer it).</summary>
[Trait("Speed", "Postgres")]
public sealed class GroupApiOnPostgresTests(PostgresEmaLabFactory factory) : GroupApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class GroupApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    static JsonObject Grid(string name, JsonArray seeds, JsonArray? rates = null, int steps = 30)
    {
        var body = Api.DigitsRun(steps: steps, evalInterval: 10);
        body["name"] = name;
        body["seed"] = seeds;
        if (rates is not null) body["learningRate"] = rates;
        return body;
    }

    async Task<JsonElement> CreateGroupAsync(JsonObject body)
    {
        var response = await _client.PostAsJsonAsync("/api/groups", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    async Task<int> RunCountAsync() => (await Api.GetAsync(_client, "/api/runs?pageSize=1")).GetProperty("total").GetInt32();

    async Task<JsonElement> BadRequestAsync(string url, JsonObject body, string field)
    {
        var response = await _client.PostAsJsonAsync(url, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {text}");
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"the problem names '{field}': {text}");
        return problem;
    }

    [Fact]
    public async Task A_grid_becomes_the_cross_product_of_runs_and_the_group_shows_paired_statistics_computed_from_their_metrics()
    {
        var created = await CreateGroupAsync(Grid("lr grid", [1, 2, 3], [0.001, 0.003]));
        Assert.Equal("lr grid", created.GetProperty("name").GetString());
        var ids = created.GetProperty("runIds").EnumerateArray().Select(i => i.GetInt64()).ToList();
        Assert.Equal(6, ids.Count);
        Assert.Equal(6 * 30, created.GetProperty("totalSteps").GetInt64());

        var specs = new List<(long Seed, double Rate)>();
        foreach (var id in ids)
        {
            var run = await Api.WaitForFinishAsync(_client, id);
            Assert.Equal("completed", run.Status());
            var spec = run.GetProperty("spec");
            specs.Add((spec.GetProperty("seed").GetInt64(), spec.GetProperty("learningRate").GetDouble()));
            Assert.StartsWith("lr grid · learningRate=", run.GetProperty("name").GetString());
        }
        // Axes in the body's order, the last varying fastest: a configuration's seeds come together.
        Assert.Equal([(1, 0.001), (2, 0.001), (3, 0.001), (1, 0.003), (2, 0.003), (3, 0.003)], specs);

        var listed = await Api.GetAsync(_client, "/api/groups?experiment=0");
        var summary = listed.EnumerateArray().Single(g => g.GetProperty("name").GetString() == "lr grid");
        Assert.Equal(6, summary.GetProperty("runs").GetInt32());
        Assert.Equal(6, summary.GetProperty("completed").GetInt32());

        var group = await Api.GetAsync(_client, "/api/groups/lr%20grid");
        Assert.Equal(["learningRate"], group.GetProperty("varied").EnumerateArray().Select(v => v.GetString()));
        var configurations = group.GetProperty("configurations").EnumerateArray().ToList();
        Assert.Equal(["learningRate=0.001", "learningRate=0.003"], configurations.Select(c => c.GetProperty("label").GetString()));

        // The paired gap of ema-0.9 at the final step, recomputed here from the runs' own series.
        var slow = configurations[0];
        var runIds = slow.GetProperty("runIds").EnumerateArray().Select(i => i.GetInt64()).ToList();
        Assert.Equal(ids[..3], runIds);
        var differences = new List<double>();
        var curves = new List<(Dictionary<long, double> Ema, Dictionary<long, double> Raw)>();
        foreach (var id in runIds)
        {
            async Task<Dictionary<long, double>> SeriesAsync(string track) =>
                (await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy&track={track}&maxPoints=0"))[0].GetProperty("points").EnumerateArray()
                    .ToDictionary(p => p.GetProperty("step").GetInt64(), p => p.GetProperty("value").GetDouble());
            var (emaSeries, rawSeries) = (await SeriesAsync("ema-0.9"), await SeriesAsync("raw"));
            curves.Add((emaSeries, rawSeries));
            differences.Add(emaSeries[emaSeries.Keys.Max()] - rawSeries[rawSeries.Keys.Max()]);
        }
        var ema = slow.GetProperty("tracks").EnumerateArray().Single(t => t.GetProperty("track").GetString() == "ema-0.9");
        Assert.Equal(3, ema.GetProperty("seeds").GetInt32());
        var gap = ema.GetProperty("finalGap").GetProperty("difference");
        var mean = differences.Average();
        Assert.Equal(mean, gap.GetProperty("mean").GetDouble(), 12);
        Assert.Equal(Math.Sqrt(differences.Sum(d => (d - mean) * (d - mean)) / 2), gap.GetProperty("standardDeviation").GetDouble(), 12);
        // At the best step (where the mean of ema-0.9 over the seeds is highest, the earliest on a tie), paired the same way.
        var bestStep = curves[0].Ema.Keys.OrderBy(s => s).MaxBy(s => curves.Average(c => c.Ema[s]));
        Assert.Equal(bestStep, ema.GetProperty("bestStep").GetInt64());
        Assert.Equal(curves.Average(c => c.Ema[bestStep] - c.Raw[bestStep]), ema.GetProperty("bestGap").GetProperty("difference").GetProperty("mean").GetDouble(), 12);
        var verdict = ema.GetProperty("verdict").GetString()!;
        Assert.Contains("3 seeds", verdict);
        Assert.True(verdict.Contains("beats") || verdict.StartsWith("No evidence"), verdict);
        Assert.Equal(JsonValueKind.Null, slow.GetProperty("tracks")[0].GetProperty("finalGap").ValueKind); // raw has no gap to itself
        Assert.NotNull(slow.GetProperty("bestTrack").GetString());
    }

    [Fact]
    public async Task A_group_compares_switch_ema_with_training_without_it()
    {
        var body = Grid("switch or not", [1, 2]);
        body["switchEma"] = new JsonArray(null, new JsonObject { ["track"] = "ema-0.9", ["every"] = 10 });
        var created = await CreateGroupAsync(body);
        var ids = created.GetProperty("runIds").EnumerateArray().Select(i => i.GetInt64()).ToList();
        Assert.Equal(4, ids.Count);
        foreach (var id in ids) Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, id)).Status());

        var group = await Api.GetAsync(_client, "/api/groups/switch%20or%20not");
        // Two configurations of two seeds each, told apart by the switch's settings: with and without it.
        var configurations = group.GetProperty("configurations").EnumerateArray().ToList();
        Assert.Equal(2, configurations.Count);
        Assert.All(configurations, c => Assert.Equal(2, c.GetProperty("runIds").GetArrayLength()));
        Assert.Contains(group.GetProperty("varied").EnumerateArray().Select(v => v.GetString()), v => v!.StartsWith("switchEma", StringComparison.Ordinal));
        Assert.Equal(["switchEma.every=— switchEma.track=—", "switchEma.every=10 switchEma.track=ema-0.9"], configurations.Select(c => c.GetProperty("label").GetString()));
    }

    [Fact]
    public async Task A_preview_counts_runs_and_steps_and_stores_nothing()
    {
        var before = await RunCountAsync();
        var response = await _client.PostAsJsonAsync("/api/groups/preview", Grid("preview", [1, 2], [0.001, 0.002, 0.003], steps: 40));
        var preview = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(6, preview.GetProperty("runs").GetInt32());
        Assert.Equal(240, preview.GetProperty("totalSteps").GetInt64());
        Assert.Equal("preview · learningRate=0.001 seed=1", preview.GetProperty("runNames")[0].GetString());
        Assert.Equal(before, await RunCountAsync());
    }

    [Fact]
    public async Task Bad_grids_are_refused_by_field_and_store_no_run()
    {
        var before = await RunCountAsync();
        await BadRequestAsync("/api/groups", Grid("empty", []), "seed");
        await BadRequestAsync("/api/groups", Grid("twice", [1, 2, 1]), "seed");
        var tooMany = await BadRequestAsync("/api/groups", Grid("big", new JsonArray(Enumerable.Range(1, 51).Select(i => (JsonNode)i).ToArray()), [0.001, 0.002]), "seed");
        Assert.Contains("102 runs", tooMany.GetProperty("errors").GetProperty("seed")[0].GetString());
        // So many long lists that their product would wrap around a 64-bit count: refused by count all the same.
        var huge = Grid("huge", new JsonArray(Enumerable.Range(1, 1000).Select(i => (JsonNode)i).ToArray()));
        foreach (var field in new[] { "batchSize", "steps", "evalInterval", "threads", "stepSize", "learningRate" })
            huge[field] = new JsonArray(Enumerable.Range(1, 1000).Select(i => (JsonNode)(field == "learningRate" ? i / 1e4 : i)).ToArray());
        Assert.Contains("1,000,000,000,000,000,000,000 runs", (await BadRequestAsync("/api/groups", huge, "learningRate")).GetProperty("errors").GetProperty("learningRate")[0].GetString());
        // One bad combination refuses the whole group, and says which run it is.
        var bad = await BadRequestAsync("/api/groups", Grid("bad rate", [1, 2], [0.001, 20]), "learningRate");
        Assert.Contains("learningRate=20", bad.GetProperty("errors").GetProperty("learningRate")[0].GetString());
        var misplaced = Grid("misplaced", [1, 2]);
        misplaced["group"] = "x";
        await BadRequestAsync("/api/groups", misplaced, "group");
        var elsewhere = Grid("elsewhere", [1, 2]);
        elsewhere["experimentId"] = 999;
        await BadRequestAsync("/api/groups", elsewhere, "experimentId");
        Assert.Equal(before, await RunCountAsync());
        Assert.DoesNotContain((await Api.GetAsync(_client, "/api/groups")).EnumerateArray(), g => g.GetProperty("name").GetString() is "bad rate" or "elsewhere");
    }

    [Fact]
    public async Task Runs_join_a_group_from_the_runs_api_and_from_a_tracking_client_and_names_may_hold_slashes()
    {
        var single = Api.DigitsRun(steps: 20, evalInterval: 10);
        single["group"] = "mixed/one";
        var engine = await Api.CreateAsync(_client, single);

        var created = await _client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody("""{"experiment_id": "0", "run_name": "script", "tags": [{"key": "emalab.group", "value": "mixed/one"}]}"""));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var uuid = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var logged = await _client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody($$"""
            {"run_id": "{{uuid}}", "params": [{"key": "seed", "value": "7"}], "metrics": [{"key": "val_acc", "value": 0.5, "timestamp": 1, "step": 1}]}
            """));
        Assert.Equal(HttpStatusCode.OK, logged.StatusCode);

        var group = await Api.GetAsync(_client, "/api/groups/mixed%2Fone");
        Assert.Equal("mixed/one", group.GetProperty("name").GetString());
        var runs = group.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal([engine.Id(), runs[1].GetProperty("id").GetInt64()], runs.Select(r => r.GetProperty("id").GetInt64()));
        Assert.Equal(["engine", "client"], runs.Select(r => r.GetProperty("origin").GetString()));
        Assert.Equal("7", runs[1].GetProperty("seed").GetString());

        var missing = await _client.GetAsync("/api/groups/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        var badMetric = await _client.GetAsync("/api/groups/mixed%2Fone?metric=speed");
        Assert.Equal(HttpStatusCode.BadRequest, badMetric.StatusCode);
    }

    [Fact]
    public async Task Seeds_logged_by_a_script_pair_their_final_gap_at_the_last_step_both_tracks_have_and_read_the_latest_value()
    {
        // Each seed: raw evaluated at steps 100, 200, 300, its EMA at 100 and 200 only; at step 300 raw has two values sent
        // out of time order (the latest, 0.75, is final — not the first stored, nor the last sent); and an epoch metric
        // logged without a step (all at step 0). The EMA is better by 0.03 + seed/1000 at step 200, the last step both have.
        var group = $"script seeds {Guid.NewGuid():N}";
        string? lastRun = null;
        foreach (var seed in new[] { 0, 1, 2 })
        {
            var created = await _client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody($$"""
                {"experiment_id": "0", "run_name": "seed {{seed}}", "tags": [{"key": "emalab.group", "value": "{{group}}"}, {"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]}
                """));
            var uuid = lastRun = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
            var d = seed / 1000.0;
            (string Key, double Value, int Step, int Time)[] points =
            [
                ("val_acc", 0.60, 100, 1000), ("val_acc_ema", 0.62 + d, 100, 1000),
                ("val_acc", 0.70, 200, 2000), ("val_acc_ema", 0.73 + d, 200, 2000),
                ("val_acc", 0.75, 300, 3000), ("val_acc", 0.95, 300, 2500),
                ("epoch_loss", 0.9, 0, 1000), ("epoch_loss", 0.5, 0, 3000), ("epoch_loss", 0.7, 0, 2000),
            ];
            var metrics = string.Join(", ", points.Select(p => $$"""{"key": "{{p.Key}}", "value": {{p.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "timestamp": "{{p.Time}}", "step": "{{p.Step}}"}"""));
            (await _client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody($$"""{"run_id": "{{uuid}}", "params": [{"key": "seed", "value": "{{seed}}"}], "metrics": [{{metrics}}]}"""))).EnsureSuccessStatusCode();
            (await _client.PostAsync("/api/2.0/mlflow/runs/update", Api.JsonBody($$"""{"run_id": "{{uuid}}", "status": "FINISHED"}"""))).EnsureSuccessStatusCode();
        }

        var statistics = await Api.GetAsync(_client, $"/api/groups/{Uri.EscapeDataString(group)}");
        var tracks = statistics.GetProperty("configurations")[0].GetProperty("tracks").EnumerateArray().ToDictionary(t => t.GetProperty("track").GetString()!);
        Assert.Equal(0.75, tracks["raw"].GetProperty("final").GetProperty("mean").GetDouble(), 12);
        Assert.Equal(0.95, tracks["raw"].GetProperty("best").GetProperty("mean").GetDouble(), 12);
        var ema = tracks["ema-0.999"];
        Assert.Equal(0.731, ema.GetProperty("final").GetProperty("mean").GetDouble(), 12);
        Assert.Equal(0.031, ema.GetProperty("finalGap").GetProperty("difference").GetProperty("mean").GetDouble(), 12);
        Assert.Equal(200, ema.GetProperty("finalGapSteps").GetProperty("from").GetInt64());
        Assert.Equal(200, ema.GetProperty("finalGapSteps").GetProperty("to").GetInt64());
        Assert.Contains("ema-0.999 beats raw", ema.GetProperty("verdict").GetString());

        // The CSV says at which step the final gap paired the seeds; the run's own latest values are MLflow's.
        var csv = await _client.GetStringAsync($"/api/groups/{Uri.EscapeDataString(group)}/runs.csv");
        Assert.Contains(",200,", csv.Split('\n').Single(l => l.Contains(",ema-0.999,", StringComparison.Ordinal)));
        var run = await Api.GetAsync(_client, $"/api/2.0/mlflow/runs/get?run_id={lastRun}");
        var latest = run.GetProperty("run").GetProperty("data").GetProperty("metrics").EnumerateArray().ToDictionary(m => m.GetProperty("key").GetString()!, m => m.GetProperty("value").GetDouble());
        Assert.Equal(0.5, latest["epoch_loss"]);
        Assert.Equal(0.75, latest["val_acc"]);
        Assert.Equal(0.732, latest["val_acc_ema"], 12);
    }

    [Fact]
    public async Task One_sigma_rel_reconstructed_on_every_seed_joins_the_statistics_and_the_table_downloads_as_csv()
    {
        var body = Grid("posthoc seeds", [1, 2], steps: 60);
        body["postHoc"] = new JsonObject { ["sigmaRels"] = new JsonArray(0.05, 0.10), ["snapshotEvery"] = 20 };
        var created = await CreateGroupAsync(body);
        foreach (var id in created.GetProperty("runIds").EnumerateArray()) await Api.WaitForFinishAsync(_client, id.GetInt64());

        await BadRequestAsync("/api/groups/posthoc%20seeds/posthoc", new JsonObject { ["sigmaRel"] = 0.9 }, "sigmaRel");
        var response = await _client.PostAsJsonAsync("/api/groups/posthoc%20seeds/posthoc", new JsonObject { ["sigmaRel"] = 0.08 });
        var outcomes = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, outcomes.GetArrayLength());
        Assert.All(outcomes.EnumerateArray(), o => Assert.Equal("posthoc-0.08", o.GetProperty("result").GetProperty("track").GetString()));

        var configuration = (await Api.GetAsync(_client, "/api/groups/posthoc%20seeds")).GetProperty("configurations")[0];
        var postHoc = configuration.GetProperty("tracks").EnumerateArray().Single(t => t.GetProperty("track").GetString() == "posthoc-0.08");
        Assert.Equal(2, postHoc.GetProperty("seeds").GetInt32());
        var accuracies = outcomes.EnumerateArray().Select(o => o.GetProperty("result").GetProperty("score").GetDouble()).ToList();
        Assert.Equal(accuracies.Average(), postHoc.GetProperty("final").GetProperty("mean").GetDouble(), 12);
        Assert.Contains("2 seeds", postHoc.GetProperty("verdict").GetString());

        var csv = await _client.GetAsync("/api/groups/posthoc%20seeds/runs.csv");
        Assert.Equal("text/csv", csv.Content.Headers.ContentType!.MediaType);
        var lines = (await csv.Content.ReadAsStringAsync()).TrimEnd('\n').Split('\n');
        Assert.StartsWith("configuration,track,seeds,final_accuracy_mean,", lines[0]);
        Assert.Equal(1 + configuration.GetProperty("tracks").GetArrayLength(), lines.Length);
        Assert.Contains(lines, l => l.StartsWith("all runs,posthoc-0.08,2,", StringComparison.Ordinal));
    }
}
