using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.Dashboard.Tests;

public sealed class RunApiTests(EmaLabFactory factory) : RunApiSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL.</summary>
[Trait("Speed", "Postgres")]
public sealed class RunApiOnPostgresTests(PostgresEmaLabFactory factory) : RunApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class RunApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    [Fact]
    public async Task The_app_trains_into_the_configured_database()
    {
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 20, evalInterval: 10));
        await Api.WaitForFinishAsync(_client, run.Id());
        var postgres = factory.ConnectionString is not null;
        Assert.Equal(postgres ? typeof(EmaLab.Dashboard.Data.PostgresDatabase) : typeof(EmaLab.Dashboard.Data.SqliteDatabase),
            factory.Services.GetRequiredService<EmaLab.Dashboard.Data.EmaLabDatabase>().GetType());
        Assert.Equal(!postgres, File.Exists(Path.Combine(factory.DataDirectory, "emalab.db")));
        if (!postgres) return;
        await using var db = new Npgsql.NpgsqlConnection(factory.ConnectionString);
        await db.OpenAsync();
        await using var count = new Npgsql.NpgsqlCommand($"SELECT COUNT(*) FROM \"Metrics\" WHERE \"RunId\" = {run.Id()}", db);
        Assert.True((long)(await count.ExecuteScalarAsync())! >= 20, "the run's metrics are rows of the PostgreSQL database");
    }

    [Fact]
    public async Task A_run_with_its_own_tracks_trains_each_rule_and_records_them_by_name()
    {
        var body = Api.DigitsRun(steps: 60);
        body["ema"]!["tracks"] = new JsonArray(
            new JsonObject { ["decay"] = 0.9 },
            new JsonObject { ["preset"] = "timm", ["decay"] = 0.99, ["warmup"] = "power" },
            new JsonObject { ["preset"] = "swa", ["startStep"] = 30 },
            new JsonObject { ["name"] = "keras-bf16", ["preset"] = "keras", ["dtype"] = "bfloat16" });
        var created = await Api.CreateAsync(_client, body);
        var run = await Api.WaitForFinishAsync(_client, created.Id());
        Assert.Equal("completed", run.Status());
        string[] names = ["raw", "ema-0.9", "ema-0.99-timm-warmup", "swa-from-30", "keras-bf16"];
        Assert.Equal(names, run.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));
        foreach (var track in names)
        {
            var series = await Api.GetAsync(_client, $"/api/runs/{run.Id()}/metrics?key=eval/accuracy&track={track}");
            Assert.Equal(60, series[0].GetProperty("points").EnumerateArray().Last().GetProperty("step").GetInt64());
        }
    }

    [Fact]
    public async Task A_run_trains_records_every_track_and_serves_its_checkpoints()
    {
        var body = Api.DigitsRun(steps: 200);
        body["checkpointEvery"] = 100;
        var created = await Api.CreateAsync(_client, body);
        Assert.Equal("queued", created.Status());
        Assert.Equal(200, created.GetProperty("totalSteps").GetInt64());
        var run = await Api.WaitForFinishAsync(_client, created.Id());
        Assert.Equal("completed", run.Status());
        Assert.Equal(200, run.GetProperty("step").GetInt64());
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], run.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));

        foreach (var track in new[] { "raw", "ema-0.9", "ema-0.99" })
        {
            var series = await Api.GetAsync(_client, $"/api/runs/{run.Id()}/metrics?key=eval/accuracy&track={track}");
            var points = series[0].GetProperty("points").EnumerateArray().ToList();
            Assert.Equal([0L, 50, 100, 150, 200], points.Select(p => p.GetProperty("step").GetInt64()));
            Assert.All(points, p => Assert.InRange(p.GetProperty("value").GetDouble(), 0, 1));
            Assert.True(points[^1].GetProperty("value").GetDouble() > 0.8, $"{track} final accuracy {points[^1]}");
        }
        var loss = await Api.GetAsync(_client, $"/api/runs/{run.Id()}/metrics?key=train/loss&track=raw&maxPoints=0");
        Assert.Equal(200, loss[0].GetProperty("totalPoints").GetInt32());

        var checkpoints = (await Api.GetAsync(_client, $"/api/runs/{run.Id()}/checkpoints")).EnumerateArray().ToList();
        Assert.Equal(9, checkpoints.Count); // 3 tracks at steps 0, 100 and 200
        Assert.Equal([0L, 100, 200], checkpoints.Select(c => c.GetProperty("step").GetInt64()).Distinct());
        var ema = checkpoints.Single(c => c.GetProperty("track").GetString() == "ema-0.99" && c.GetProperty("step").GetInt64() == 200);

        var download = await _client.GetAsync($"/api/checkpoints/{ema.GetProperty("id").GetInt64()}/download");
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal($"test-run{run.Id()}-ema-0.99-step200.safetensors", download.Content.Headers.ContentDisposition!.FileNameStar);
        var bytes = await download.Content.ReadAsByteArrayAsync();
        Assert.Equal(ema.GetProperty("sizeBytes").GetInt64(), bytes.Length);
        using var content = SafeTensors.Read(new MemoryStream(bytes));
        Assert.Equal(["1.bias", "1.weight", "3.bias", "3.weight"], content.Tensors.Keys.Order());
        Assert.Equal([64L, 64], content.Tensors["1.weight"].shape);
        Assert.Equal("ema-0.99", content.Metadata["track"]);
        Assert.Equal("200", content.Metadata["step"]);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), ema.GetProperty("sha256").GetString());

        var log = (await Api.GetAsync(_client, $"/api/runs/{run.Id()}/log")).EnumerateArray().Select(l => l.GetProperty("message").GetString()!).ToList();
        Assert.Contains(log, l => l.StartsWith("Training mlp"));
        Assert.Contains(log, l => l.StartsWith("Step 200: raw accuracy"));
    }

    [Fact]
    public async Task Cancelling_a_running_run_stops_it_and_records_cancelled()
    {
        var body = Api.DigitsRun(steps: 200_000, evalInterval: 1000);
        var created = await Api.CreateAsync(_client, body);
        await Api.WaitForAsync(_client, created.Id(), r => r.Status() == "running" && r.GetProperty("step").GetInt64() > 20);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var response = await _client.PostAsync($"/api/runs/{created.Id()}/cancel", null);
        clock.Stop();
        var run = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("cancelled", run.Status());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"cancel took {clock.Elapsed}");
        Assert.True(run.GetProperty("resumable").GetBoolean());
        var stoppedAt = run.GetProperty("step").GetInt64();
        await Task.Delay(300);
        Assert.Equal(stoppedAt, (await Api.GetAsync(_client, $"/api/runs/{created.Id()}")).GetProperty("step").GetInt64());

        // Cancelling again is a conflict: the run is no longer running.
        Assert.Equal(HttpStatusCode.Conflict, (await _client.PostAsync($"/api/runs/{created.Id()}/cancel", null)).StatusCode);
    }

    [Fact]
    public async Task Clone_applies_overrides_and_keeps_the_rest()
    {
        var original = await Api.CreateAsync(_client, Api.DigitsRun(steps: 30));
        var response = await _client.PostAsJsonAsync($"/api/runs/{original.Id()}/clone",
            new JsonObject { ["ema"] = new JsonObject { ["decays"] = new JsonArray(0.5) }, ["seed"] = 7 });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var clone = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.NotEqual(original.Id(), clone.Id());
        Assert.Equal("test (clone)", clone.GetProperty("name").GetString());
        Assert.Equal(["raw", "ema-0.5"], clone.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));
        var spec = clone.GetProperty("spec");
        Assert.Equal(7, spec.GetProperty("seed").GetInt64());
        Assert.Equal(30, spec.GetProperty("steps").GetInt64());
        Assert.Equal("average", spec.GetProperty("ema").GetProperty("bnPolicy").GetString());
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, clone.Id())).Status());

        var bad = await _client.PostAsJsonAsync($"/api/runs/{original.Id()}/clone", new JsonObject { ["ema"] = new JsonObject { ["decays"] = new JsonArray(2.0) } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.PostAsync("/api/runs/999999/clone", null)).StatusCode);
    }

    [Fact]
    public async Task A_trainer_whose_run_another_start_took_over_stops_and_writes_nothing_more()
    {
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000, evalInterval: 1000));
        await Api.WaitForAsync(_client, run.Id(), r => r.GetProperty("step").GetInt64() >= 100);
        using var scope = factory.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLab.Dashboard.Data.EmaLabDbContext>();
        while (!await db.Metrics.AnyAsync(m => m.RunId == run.Id())) await Task.Delay(50);
        var ours = await db.Runs.Where(r => r.Id == run.Id()).Select(r => r.Attempt).SingleAsync();
        Assert.Matches("^[0-9a-f]{32}$", ours);

        // Another start takes the run over, as a worker does that found this trainer gone.
        const string successor = "0123456789abcdef0123456789abcdef";
        await db.Runs.Where(r => r.Id == run.Id()).ExecuteUpdateAsync(s => s.SetProperty(r => r.Attempt, successor));
        // Every batch the writer commits from now on checks the attempt: no row of this trainer lands any more.
        var rows = await db.Metrics.CountAsync(m => m.RunId == run.Id());
        await Api.WaitForAsync(_client, run.Id(), r => !r.TryGetProperty("progress", out var live) || live.ValueKind == JsonValueKind.Null, seconds: 30);
        Assert.Equal(rows, await db.Metrics.CountAsync(m => m.RunId == run.Id()));
        Assert.True(await db.Metrics.Where(m => m.RunId == run.Id()).MaxAsync(m => (long?)m.Step) < 50_000, "the trainer stopped long before its last step");
        // Its end is the successor's to record: the run is still running under the successor's attempt, with no error.
        var now = await db.Runs.AsNoTracking().SingleAsync(r => r.Id == run.Id());
        Assert.Equal((EmaLab.Dashboard.Data.RunStatus.Running, successor, (string?)null), (now.Status, now.Attempt, now.Error));
    }

    [Fact]
    public async Task Delete_removes_rows_and_files()
    {
        var body = Api.DigitsRun(steps: 60);
        body["checkpointEvery"] = 30;
        var run = await Api.CreateAsync(_client, body);
        await Api.WaitForFinishAsync(_client, run.Id());
        var folder = Path.Combine(factory.DataDirectory, "runs", run.Id().ToString());
        Assert.True(Directory.Exists(folder));

        Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync($"/api/runs/{run.Id()}")).StatusCode);
        Assert.False(Directory.Exists(folder));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/api/runs/{run.Id()}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/api/runs/{run.Id()}/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.DeleteAsync($"/api/runs/{run.Id()}")).StatusCode);
        using var scope = factory.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLab.Dashboard.Data.EmaLabDbContext>();
        Assert.Equal(0, await db.Metrics.CountAsync(m => m.RunId == run.Id()));
        Assert.Equal(0, await db.Checkpoints.CountAsync(c => c.RunId == run.Id()));
        Assert.Equal(0, await db.RunLog.CountAsync(l => l.RunId == run.Id()));
        Assert.Equal(0, await db.Tracks.CountAsync(t => t.RunId == run.Id()));
    }

    [Fact]
    public async Task Listing_filters_by_status_and_pages()
    {
        var queuedThenCancelled = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000));
        var other = await Api.CreateAsync(_client, Api.DigitsRun(steps: 10));
        await _client.PostAsync($"/api/runs/{other.Id()}/cancel", null);      // cancelled while queued (or just after)
        await _client.PostAsync($"/api/runs/{queuedThenCancelled.Id()}/cancel", null);

        var cancelled = await Api.GetAsync(_client, "/api/runs?status=cancelled&pageSize=1");
        Assert.Equal(1, cancelled.GetProperty("items").GetArrayLength());
        Assert.True(cancelled.GetProperty("total").GetInt32() >= 2);
        Assert.All(cancelled.GetProperty("items").EnumerateArray(), r => Assert.Equal("cancelled", r.Status()));
        var bad = await _client.GetAsync("/api/runs?status=sleeping");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("status", await bad.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Catalog_and_documents_are_served()
    {
        var datasets = await Api.GetAsync(_client, "/api/datasets");
        // The built-in ones first; uploads (another test's, in this process's dataset folder) after them.
        Assert.Equal(["digits-8x8", "mnist-10k", "fashion-mnist"], datasets.EnumerateArray().Where(d => d.GetProperty("builtIn").GetBoolean()).Select(d => d.GetProperty("name").GetString()));
        Assert.Equal(["digits-8x8", "mnist-10k", "fashion-mnist"], datasets.EnumerateArray().Take(3).Select(d => d.GetProperty("name").GetString()));
        Assert.Equal(8000, datasets[1].GetProperty("trainCount").GetInt32());
        Assert.Equal(60_000, datasets[2].GetProperty("trainCount").GetInt32());
        var models = await Api.GetAsync(_client, "/api/models");
        Assert.Equal(["mlp", "cnn", "resnet"], models.EnumerateArray().Select(d => d.GetProperty("name").GetString()));
        var openApi = await Api.GetAsync(_client, "/openapi/v1.json");
        Assert.True(openApi.GetProperty("paths").TryGetProperty("/api/runs/{id}/metrics", out _));
        // The run body is described: the spec's fields and the service's own.
        var runSpec = openApi.GetProperty("components").GetProperty("schemas").GetProperty("RunSpec").GetProperty("properties");
        foreach (var field in new[] { "dataset", "model", "learningRate", "ema", "postHoc", "name", "checkpointEvery" })
            Assert.True(runSpec.TryGetProperty(field, out _), $"RunSpec schema lacks {field}");
        Assert.Contains("RunSpec", openApi.GetProperty("paths").GetProperty("/api/runs").GetProperty("post").GetProperty("requestBody").GetRawText());
        Assert.Equal("Healthy", await _client.GetStringAsync("/health"));
        var docs = await _client.GetStringAsync("/api/docs/");
        Assert.Contains("scalar.js", docs);
        Assert.DoesNotContain("cdn.", docs);
    }

    [Fact]
    public async Task Events_stream_live_metrics_of_a_run()
    {
        var created = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000, evalInterval: 1000));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await _client.GetAsync($"/api/runs/{created.Id()}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var types = new HashSet<string>();
        var trainSteps = new List<long>();
        string? eventType = null;
        while (!(types.Contains("metrics") && types.Contains("progress") && trainSteps.Count > 100))
        {
            var line = await reader.ReadLineAsync(cts.Token);
            Assert.NotNull(line);
            if (line.StartsWith("event: ")) types.Add(eventType = line["event: ".Length..]);
            if (!line.StartsWith("data: ")) continue;
            var data = JsonDocument.Parse(line["data: ".Length..]).RootElement;
            Assert.Equal(created.Id(), data.GetProperty("runId").GetInt64());
            Assert.Equal(eventType, data.GetProperty("type").GetString());
            // One message per writer flush carries all its points.
            if (eventType == "metrics")
                trainSteps.AddRange(data.GetProperty("points").EnumerateArray().Where(p => p.GetProperty("key").GetString() == "train/loss").Select(p => p.GetProperty("step").GetInt64()));
        }
        Assert.Equal(Enumerable.Range((int)trainSteps[0], trainSteps.Count).Select(i => (long)i), trainSteps);
        await _client.PostAsync($"/api/runs/{created.Id()}/cancel", null);
    }

    [Fact]
    public async Task Event_streams_are_capped_per_run()
    {
        using var capped = factory.New();
        capped.Settings["EmaLab:Limits:MaxEventStreamsPerRun"] = "2";
        var client = capped.CreateClient();
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 5));
        var open = new List<HttpResponseMessage>();
        for (var i = 0; i < 2; i++)
        {
            open.Add(await client.GetAsync($"/api/runs/{run.Id()}/events", HttpCompletionOption.ResponseHeadersRead));
            Assert.Equal(HttpStatusCode.OK, open[^1].StatusCode);
        }
        var third = await client.GetAsync($"/api/runs/{run.Id()}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("application/problem+json", third.Content.Headers.ContentType!.MediaType);

        // A closed stream frees its place.
        open[0].Dispose();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        HttpResponseMessage again;
        while ((again = await client.GetAsync($"/api/runs/{run.Id()}/events", HttpCompletionOption.ResponseHeadersRead)).StatusCode != HttpStatusCode.OK && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        again.Dispose();
        open[1].Dispose();
    }
}
