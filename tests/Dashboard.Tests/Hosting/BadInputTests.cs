using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

public sealed class BadInputTests(EmaLabFactory factory) : BadInputSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL.</summary>
[Trait("Speed", "Postgres")]
public sealed class BadInputOnPostgresTests(PostgresEmaLabFactory factory) : BadInputSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class BadInputSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    static string With(Action<JsonObject> change)
    {
        var body = Api.DigitsRun(steps: 10);
        change(body);
        return body.ToJsonString();
    }

    static JsonObject Ema(JsonObject body) => body["ema"]!.AsObject();

    public static TheoryData<string, string> Invalid() => new()
    {
        { With(b => Ema(b)["decays"] = new JsonArray(1.0)), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray(0.0)), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray(-0.5)), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray(1.5)), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray()), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray(0.9, 0.9)), "ema.decays" },
        { With(b => Ema(b)["decays"] = new JsonArray(Enumerable.Range(1, 9).Select(i => (JsonNode)(1 - 1.0 / (i + 2))).ToArray())), "ema.decays" },
        { With(b => Ema(b)["decays"] = "0.9"), "ema.decays" },
        { With(b => b["learningRate"] = 0), "learningRate" },
        { With(b => b["learningRate"] = -0.1), "learningRate" },
        { With(b => b["learningRate"] = "fast"), "learningRate" },
        { With(b => b["batchSize"] = 0), "batchSize" },
        { With(b => b["batchSize"] = 100_000), "batchSize" },
        { With(b => b["steps"] = 0), "steps" },
        { With(b => b["steps"] = 1_000_000_000), "steps" },
        { With(b => { b.Remove("steps"); b["epochs"] = 0; }), "epochs" },
        { With(b => b["dataset"] = "imagenet"), "dataset" },
        { With(b => b["model"] = "transformer"), "model" },
        { With(b => b["optimizer"] = "lion"), "optimizer" },
        { With(b => Ema(b)["bnPolicy"] = "freeze"), "ema.bnPolicy" },
        { With(b => Ema(b)["every"] = 0), "ema.every" },
        { With(b => b["evalInterval"] = 0), "evalInterval" },
        { With(b => b["checkpointEvery"] = 0), "checkpointEvery" },
        { With(b => b["lr"] = 0.1), "lr" },
        { "{\"steps\": 10,", "$" },
        { "[1, 2]", "$" },
        // JSON null where an object or list belongs (once 500s).
        { With(b => b["dataset"] = null), "dataset" },
        { With(b => b["ema"] = null), "ema" },
        { With(b => Ema(b)["decays"] = null), "ema.decays" },
        // Per-track rules: each problem names the track and the setting.
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["preset"] = "keras", ["every"] = 2 })), "ema.tracks[0].every" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["decay"] = 0.9 }, new JsonObject { ["preset"] = "timm", ["warmup"] = "tf" })), "ema.tracks[1].warmup" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["decay"] = 0.9, ["name"] = "Raw!" })), "ema.tracks[0].name" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["preset"] = "torch-ema" })), "ema.tracks[0].preset" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["decay"] = 0.9, ["dtype"] = "float8" })), "ema.tracks[0].dtype" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["decay"] = 0.9 }, new JsonObject { ["preset"] = "bema", ["multiplier"] = 2 })), "ema.tracks[1].multiplier" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["preset"] = "lawa", ["checkpoints"] = 0 })), "ema.tracks[0].checkpoints" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["preset"] = "edm", ["halfLifeKimg"] = -1 })), "ema.tracks[0].halfLifeKimg" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["halfLifeSamples"] = 500, ["decay"] = 0.9 })), "ema.tracks[0].halfLifeSamples" },
        { With(b => Ema(b)["tracks"] = new JsonArray(new JsonObject { ["preset"] = "trl-bema", ["decay"] = 0.9 })), "ema.tracks[0].decay" },
        { With(b => b["switchEma"] = new JsonObject { ["track"] = "ema-0.5", ["every"] = 10 }), "switchEma.track" },
        { With(b => b["switchEma"] = new JsonObject { ["every"] = 0 }), "switchEma.every" },
        { With(b => Ema(b)["tracks"] = new JsonArray()), "ema.tracks" },
        { With(b => b["postHoc"] = new JsonObject { ["sigmaRels"] = null }), "postHoc.sigmaRels" },
        // Bounded resources.
        { With(b => b["hidden"] = new JsonArray(Enumerable.Range(0, 17).Select(_ => (JsonNode)8).ToArray())), "hidden" },
        { With(b => b["hidden"] = new JsonArray(16384, 16384)), "hidden" },
        { With(b => { b["model"] = "cnn"; b.Remove("hidden"); b["channels"] = new JsonArray(Enumerable.Range(0, 32).Select(_ => (JsonNode)1).ToArray()); }), "channels" },
        { With(b => { b["steps"] = 100_000; b["checkpointEvery"] = 100; }), "checkpointEvery" },
        { With(b => { b["steps"] = 100_000; b["postHoc"] = new JsonObject { ["snapshotEvery"] = 10 }; }), "postHoc.snapshotEvery" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public async Task Invalid_field_gets_400_naming_it_and_writes_nothing(string body, string field)
    {
        var before = await CountRunsAsync();
        var response = await _client.PostAsync("/api/runs", Api.JsonBody(body));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal(400, problem.GetProperty("status").GetInt32());
        var errors = problem.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out var messages), text);
        Assert.False(string.IsNullOrWhiteSpace(messages[0].GetString()));
        Assert.Equal(before, await CountRunsAsync());
    }

    [Fact]
    public async Task Several_invalid_fields_are_all_named()
    {
        var body = With(b => { b["learningRate"] = -1; b["batchSize"] = 0; Ema(b)["decays"] = new JsonArray(1.5); });
        var response = await _client.PostAsync("/api/runs", Api.JsonBody(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("errors");
        Assert.Equal(["learningRate", "batchSize", "ema.decays"], errors.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task Every_broken_track_is_named_with_its_setting()
    {
        var body = With(b => Ema(b)["tracks"] = new JsonArray(
            new JsonObject { ["preset"] = "keras", ["every"] = 2 },
            new JsonObject { ["decay"] = 0.9 },
            new JsonObject { ["preset"] = "swa", ["startStep"] = -1 },
            new JsonObject { ["decay"] = 0.99, ["name"] = "ema-0.9" }));
        var response = await _client.PostAsync("/api/runs", Api.JsonBody(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("errors");
        Assert.Equal(["ema.tracks[0].every", "ema.tracks[2].startStep", "ema.tracks[3].name"], errors.EnumerateObject().Select(p => p.Name));
        Assert.Equal("Two tracks are named 'ema-0.9'.", errors.GetProperty("ema.tracks[3].name")[0].GetString());
    }

    [Fact]
    public async Task Unknown_run_is_404_with_problem_details()
    {
        foreach (var (method, url) in new[] { ("GET", "/api/runs/4242"), ("POST", "/api/runs/4242/cancel"), ("POST", "/api/runs/4242/resume"), ("DELETE", "/api/runs/4242"), ("GET", "/api/runs/4242/checkpoints"), ("GET", "/api/checkpoints/4242/download") })
        {
            var response = await _client.SendAsync(new HttpRequestMessage(new HttpMethod(method), url));
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        }
    }

    [Fact]
    public async Task Resume_without_a_bundle_is_409()
    {
        // Held in the queue behind a long run, cancelled before it starts: it never trained, so it has no bundle.
        var blocker = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000));
        var waiting = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100));
        await _client.PostAsync($"/api/runs/{waiting.Id()}/cancel", null);
        await _client.PostAsync($"/api/runs/{blocker.Id()}/cancel", null);
        Assert.Equal("cancelled", (await Api.GetAsync(_client, $"/api/runs/{waiting.Id()}")).Status());

        var response = await _client.PostAsync($"/api/runs/{waiting.Id()}/resume", null);
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains("no resume bundle", await response.Content.ReadAsStringAsync());

        // A completed run is not resumable either.
        var done = await Api.CreateAsync(_client, Api.DigitsRun(steps: 5));
        await Api.WaitForFinishAsync(_client, done.Id());
        Assert.Equal(HttpStatusCode.Conflict, (await _client.PostAsync($"/api/runs/{done.Id()}/resume", null)).StatusCode);
    }

    [Fact]
    public async Task Metrics_query_validates_max_points()
    {
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 5));
        var response = await _client.GetAsync($"/api/runs/{run.Id()}/metrics?key=train/loss&maxPoints=3");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("maxPoints", await response.Content.ReadAsStringAsync());
    }

    async Task<int> CountRunsAsync() => (await Api.GetAsync(_client, "/api/runs?pageSize=1")).GetProperty("total").GetInt32();

    [Fact]
    public async Task A_body_that_is_not_utf8_is_refused_by_name()
    {
        var bytes = Encoding.UTF8.GetBytes(Api.DigitsRun(steps: 10).ToJsonString().Replace("test", "t\u00e9st")).ToList();
        var valid = Encoding.UTF8.GetBytes("\"name\":\"");
        var at = IndexOf(bytes, valid) + valid.Length;
        bytes.Insert(at, 0xff); // not UTF-8 inside a string
        var response = await _client.PostAsync("/api/runs", new ByteArrayContent(bytes.ToArray()) { Headers = { ContentType = new("application/json") } });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid UTF-8", await response.Content.ReadAsStringAsync());
    }

    static int IndexOf(List<byte> haystack, byte[] needle)
    {
        for (var i = 0; i + needle.Length <= haystack.Count; i++)
            if (haystack.Skip(i).Take(needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    [Fact]
    public async Task Query_and_clone_edge_cases_are_answered_without_500()
    {
        Assert.Equal(HttpStatusCode.BadRequest, (await _client.GetAsync($"/api/runs?page={int.MaxValue}&pageSize=500")).StatusCode);
        // A value that does not bind names its parameter (once a 500 under the default profile).
        var unbound = await _client.GetAsync("/api/runs?page=abc");
        Assert.Equal(HttpStatusCode.BadRequest, unbound.StatusCode);
        Assert.True(JsonDocument.Parse(await unbound.Content.ReadAsStringAsync()).RootElement.GetProperty("errors").TryGetProperty("page", out _));
        var body = Api.DigitsRun(steps: 5);
        body["name"] = new string('n', 200);
        var run = await Api.CreateAsync(_client, body);
        var clone = await _client.PostAsync($"/api/runs/{run.Id()}/clone", null);
        Assert.Equal(HttpStatusCode.Created, clone.StatusCode);
        var name = JsonDocument.Parse(await clone.Content.ReadAsStringAsync()).RootElement.GetProperty("name").GetString()!;
        Assert.Equal(200, name.Length);
        Assert.EndsWith(" (clone)", name);
    }
}
