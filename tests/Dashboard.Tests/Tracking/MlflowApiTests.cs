using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The MLflow-compatible tracking API with the request bodies MLflow's Python client sends: protobuf JSON, where
/// int64 fields (timestamps, steps) are strings and NaN is "NaN" (mlflow/utils/proto_json_utils.py, message_to_json).
/// </summary>
public sealed class MlflowApiTests(EmaLabFactory factory) : MlflowApiSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL.</summary>
[Trait("Speed", "Postgres")]
public sealed class MlflowApiOnPostgresTests(PostgresEmaLabFactory factory) : MlflowApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class MlflowApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();
    const string Base = "/api/2.0/mlflow/";

    async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(string path, string json)
    {
        var response = await _client.PostAsync(Base + path, Api.JsonBody(json));
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(string pathAndQuery)
    {
        var response = await _client.GetAsync(Base + pathAndQuery);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    async Task<JsonElement> OkAsync(Task<(HttpStatusCode Status, JsonElement Body)> call)
    {
        var (status, body) = await call;
        Assert.True(status == HttpStatusCode.OK, $"{(int)status}: {body}");
        return body;
    }

    static void AssertError(HttpStatusCode expectedStatus, string errorCode, (HttpStatusCode Status, JsonElement Body) answer, string? messageContains = null)
    {
        Assert.True(answer.Status == expectedStatus, $"{(int)answer.Status}: {answer.Body}");
        Assert.Equal(errorCode, answer.Body.GetProperty("error_code").GetString());
        if (messageContains is not null) Assert.Contains(messageContains, answer.Body.GetProperty("message").GetString());
    }

    async Task<string> NewRunAsync(string experimentId = "0", string tags = "[]")
    {
        var created = await OkAsync(PostAsync("runs/create", $$"""{"experiment_id": "{{experimentId}}", "start_time": "1700000000000", "tags": {{tags}}}"""));
        return created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
    }

    [Fact]
    public async Task Experiments_are_created_found_searched_and_named_uniquely()
    {
        var zero = await OkAsync(GetAsync("experiments/get?experiment_id=0"));
        Assert.Equal("Default", zero.GetProperty("experiment").GetProperty("name").GetString());
        Assert.Equal("active", zero.GetProperty("experiment").GetProperty("lifecycle_stage").GetString());

        var id = (await OkAsync(PostAsync("experiments/create", """{"name": "ema-decays", "tags": [{"key": "team", "value": "vision"}]}""")))
            .GetProperty("experiment_id").GetString()!;
        AssertError(HttpStatusCode.BadRequest, "RESOURCE_ALREADY_EXISTS", await PostAsync("experiments/create", """{"name": "ema-decays"}"""), "already exists");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("experiments/create", """{}"""), "Missing value for required parameter 'name'");
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await GetAsync("experiments/get?experiment_id=424242"));
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await GetAsync("experiments/get-by-name?experiment_name=nope"), "Could not find experiment with name 'nope'");

        var byName = await OkAsync(GetAsync("experiments/get-by-name?experiment_name=ema-decays"));
        Assert.Equal(id, byName.GetProperty("experiment").GetProperty("experiment_id").GetString());
        Assert.Equal($"mlflow-artifacts:/{id}", byName.GetProperty("experiment").GetProperty("artifact_location").GetString());

        var found = await OkAsync(PostAsync("experiments/search", """{"max_results": 10, "filter": "name LIKE 'ema-%' AND tags.team = 'vision'"}"""));
        Assert.Equal(["ema-decays"], found.GetProperty("experiments").EnumerateArray().Select(e => e.GetProperty("name").GetString()));
        var viaGet = await OkAsync(GetAsync("experiments/search?filter=name%20%3D%20%27Default%27"));
        Assert.Equal(["Default"], viaGet.GetProperty("experiments").EnumerateArray().Select(e => e.GetProperty("name").GetString()));

        // Deleted experiments leave the default view and take no runs; restored, they do again.
        await OkAsync(PostAsync("experiments/delete", $$"""{"experiment_id": "{{id}}"}"""));
        var active = await OkAsync(PostAsync("experiments/search", "{}"));
        Assert.DoesNotContain("ema-decays", active.GetProperty("experiments").EnumerateArray().Select(e => e.GetProperty("name").GetString()));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/create", $$"""{"experiment_id": "{{id}}"}"""), "must be in the 'active' state");
        await OkAsync(PostAsync("experiments/restore", $$"""{"experiment_id": "{{id}}"}"""));
        await NewRunAsync(id);
    }

    [Fact]
    public async Task A_client_logs_raw_and_two_ema_tracks_and_reads_them_back()
    {
        // The script logs val_acc and val_acc_ema (mapped by the suffix tag) and an ema-0.99/… key (mapped by its prefix).
        var runId = await NewRunAsync(tags: """[{"key": "mlflow.source.name", "value": "train.py"}, {"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]""");
        var metrics = new JsonArray();
        for (var step = 1; step <= 5; step++)
        {
            metrics.Add(new JsonObject { ["key"] = "val_acc", ["value"] = 0.5 + step / 100.0, ["timestamp"] = (1700000000000 + step).ToString(), ["step"] = step.ToString() });
            metrics.Add(new JsonObject { ["key"] = "val_acc_ema", ["value"] = 0.6 + step / 100.0, ["timestamp"] = (1700000000000 + step).ToString(), ["step"] = step.ToString() });
            metrics.Add(new JsonObject { ["key"] = "ema-0.99/val_acc", ["value"] = 0.55 + step / 100.0, ["timestamp"] = 1700000000000 + step, ["step"] = step });
        }
        var batch = new JsonObject { ["run_id"] = runId, ["metrics"] = metrics, ["params"] = new JsonArray(new JsonObject { ["key"] = "lr", ["value"] = "0.001" }) };
        await OkAsync(PostAsync("runs/log-batch", batch.ToJsonString()));
        await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "val_acc", "value": "NaN", "timestamp": "1700000000010", "step": "6"}"""));

        // The tracking API answers with the keys as logged; the latest value of each.
        var run = (await OkAsync(GetAsync($"runs/get?run_id={runId}"))).GetProperty("run");
        var latest = run.GetProperty("data").GetProperty("metrics").EnumerateArray().ToDictionary(m => m.GetProperty("key").GetString()!);
        Assert.Equal(["ema-0.99/val_acc", "val_acc", "val_acc_ema"], latest.Keys);
        Assert.Equal("NaN", latest["val_acc"].GetProperty("value").GetString());
        Assert.Equal(0.65, latest["val_acc_ema"].GetProperty("value").GetDouble(), 12);
        Assert.Equal(5, latest["val_acc_ema"].GetProperty("step").GetInt64());
        Assert.Equal("0.001", run.GetProperty("data").GetProperty("params")[0].GetProperty("value").GetString());

        // History, paged.
        var first = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=val_acc_ema&max_results=3"));
        Assert.Equal([1L, 2, 3], first.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("step").GetInt64()));
        var token = first.GetProperty("next_page_token").GetString();
        var rest = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=val_acc_ema&max_results=3&page_token={token}"));
        Assert.Equal([4L, 5], rest.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("step").GetInt64()));
        Assert.False(rest.TryGetProperty("next_page_token", out _));
        Assert.Equal(1700000000004, rest.GetProperty("metrics")[0].GetProperty("timestamp").GetInt64());

        // EMA Lab sees three tracks with the same metric name: the run page and compare work on them as on the engine's.
        var emaLabRun = (await Api.GetAsync(_client, "/api/runs?pageSize=100")).GetProperty("items").EnumerateArray()
            .Single(r => r.GetProperty("name").GetString() == run.GetProperty("info").GetProperty("run_name").GetString());
        var detail = await Api.GetAsync(_client, $"/api/runs/{emaLabRun.Id()}");
        Assert.Equal(["raw", "ema-0.999", "ema-0.99"], detail.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));
        Assert.Equal(0.999, detail.GetProperty("tracks")[1].GetProperty("decay").GetDouble());
        Assert.Equal("running", detail.Status());
        var series = await Api.GetAsync(_client, $"/api/runs/{emaLabRun.Id()}/metrics?key=val_acc&maxPoints=0");
        Assert.Equal(["ema-0.99", "ema-0.999", "raw"], series.EnumerateArray().Select(s => s.GetProperty("track").GetString()).Order());
        Assert.Equal(6, series.EnumerateArray().Single(s => s.GetProperty("track").GetString() == "raw").GetProperty("points").GetArrayLength());

        // Search with a filter on the mapped EMA key and a param; then the run finishes.
        var found = await OkAsync(PostAsync("runs/search", """{"experiment_ids": ["0"], "filter": "metrics.val_acc_ema > 0.64 and params.lr = '0.001'", "max_results": 10, "order_by": ["attributes.start_time DESC"]}"""));
        Assert.Contains(runId, found.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()));
        var none = await OkAsync(PostAsync("runs/search", """{"experiment_ids": ["0"], "filter": "metrics.val_acc_ema > 0.9"}"""));
        Assert.False(none.TryGetProperty("runs", out var runs) && runs.GetArrayLength() > 0);
        var finished = await OkAsync(PostAsync("runs/update", $$"""{"run_id": "{{runId}}", "status": "FINISHED", "end_time": "1700000099999"}"""));
        Assert.Equal("FINISHED", finished.GetProperty("run_info").GetProperty("status").GetString());
        Assert.Equal(1700000099999, finished.GetProperty("run_info").GetProperty("end_time").GetInt64());
        Assert.Equal("completed", (await Api.GetAsync(_client, $"/api/runs/{emaLabRun.Id()}")).Status());
    }

    [Fact]
    public async Task Bulk_interval_history_samples_steps_as_mlflow_does()
    {
        var (a, b) = (await NewRunAsync(), await NewRunAsync());
        foreach (var (run, steps) in new[] { (a, Enumerable.Range(0, 50)), (b, Enumerable.Range(10, 5)) })
            await OkAsync(PostAsync("runs/log-batch", new JsonObject
            {
                ["run_id"] = run,
                ["metrics"] = new JsonArray(steps.Select(s => (JsonNode)new JsonObject { ["key"] = "acc", ["value"] = s / 100.0, ["timestamp"] = s, ["step"] = s }).ToArray()),
            }.ToJsonString()));
        var answer = await OkAsync(GetAsync($"metrics/get-history-bulk-interval?run_ids={a}&run_ids={b}&metric_key=acc&max_results=5"));
        var byRun = answer.GetProperty("metrics").EnumerateArray().GroupBy(m => m.GetProperty("run_id").GetString()!)
            .ToDictionary(g => g.Key, g => g.Select(m => m.GetProperty("step").GetInt64()).ToList());
        // Steps 0..49 over both runs, 5 results: indices 0, 10, 20, 30, 40 and the last (49), plus each run's first and last (10, 14).
        Assert.Equal([0L, 10, 14, 20, 30, 40, 49], byRun[a]);
        Assert.Equal([10L, 14], byRun[b]);
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await GetAsync($"metrics/get-history-bulk-interval?run_ids={a}&metric_key=acc&max_results=2501"), "max_results must be between 1 and 2500");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await GetAsync($"metrics/get-history-bulk-interval?run_ids={a}&metric_key=acc&start_step=3"), "both must be specified");
    }

    [Fact]
    public async Task Many_values_at_one_step_are_all_kept_as_mlflow_keeps_them()
    {
        // mlflow.log_metric without a step logs at step 0: a loop of them is a history, not one value.
        var runId = await NewRunAsync();
        for (var i = 0; i < 4; i++)
            await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "loss", "value": {{1.0 / (i + 1)}}, "timestamp": {{1700000000000 + i}}}"""));
        var history = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=loss"));
        Assert.Equal([1.0, 0.5, 1.0 / 3, 0.25], history.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("value").GetDouble()));
        Assert.All(history.GetProperty("metrics").EnumerateArray(), m => Assert.Equal(0, m.GetProperty("step").GetInt64()));
    }

    [Fact]
    public async Task A_point_logged_again_with_the_same_step_and_time_is_stored_once_and_its_neighbours_are_kept()
    {
        // A retried call (the client timed out, the server had stored it) and a batch that repeats a point: each point
        // is one row, and the other points of those batches are all stored (PostgreSQL takes its merge path here).
        var runId = await NewRunAsync();
        string Point(string key, double value, int step) => $$"""{"key": "{{key}}", "value": {{value}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}""";
        var batch = $$"""{"run_id": "{{runId}}", "metrics": [{{Point("acc", 0.5, 1)}}, {{Point("acc", 0.6, 2)}}]}""";
        await OkAsync(PostAsync("runs/log-batch", batch));
        await OkAsync(PostAsync("runs/log-batch", batch));
        await OkAsync(PostAsync("runs/log-batch", $$"""{"run_id": "{{runId}}", "metrics": [{{Point("acc", 0.7, 3)}}, {{Point("acc", 0.7, 3)}}, {{Point("acc", 0.6, 2)}}, {{Point("acc", 0.8, 4)}}]}"""));
        var history = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=acc"));
        Assert.Equal([(1L, 0.5), (2L, 0.6), (3L, 0.7), (4L, 0.8)],
            history.GetProperty("metrics").EnumerateArray().Select(m => (m.GetProperty("step").GetInt64(), m.GetProperty("value").GetDouble())));
    }

    [Fact]
    public async Task Bad_logging_gets_mlflow_errors_and_writes_nothing()
    {
        var runId = await NewRunAsync();
        async Task<int> Points() => (await OkAsync(GetAsync($"runs/get?run_id={runId}"))).GetProperty("run").GetProperty("data").GetProperty("metrics").GetArrayLength();

        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-batch", """{"metrics": []}"""), "Missing value for required parameter 'run_id'");
        // A body that does not say it is JSON (what a cross-site form can send) is refused before it is read.
        var form = await _client.PostAsync(Base + "runs/log-metric", new StringContent($$"""{"run_id": "{{runId}}", "key": "acc", "value": 1, "timestamp": 1}""", Encoding.UTF8, "text/plain"));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", (form.StatusCode, JsonDocument.Parse(await form.Content.ReadAsStringAsync()).RootElement), "Content-Type must be one of ['application/json']");
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await PostAsync("runs/log-batch", """{"run_id": "0123456789abcdef0123456789abcdef"}"""), "Run with id=0123456789abcdef0123456789abcdef not found");

        // A key over 250 characters, a bad character or a negative timestamp refuses the whole batch: the good metric beside it is not written.
        foreach (var (bad, message) in new[]
        {
            ($$"""{"key": "{{new string('k', 251)}}", "value": 1, "timestamp": 1}""", "exceeds the maximum length of 250 characters"),
            ("""{"key": "acc@1", "value": 1, "timestamp": 1}""", "Invalid value \"acc@1\" for parameter 'metrics[1].name' supplied: Names may only contain"),
            ("""{"key": "../up", "value": 1, "timestamp": 1}""", "must not resolve to other names"),
            ("""{"key": "acc", "value": 1, "timestamp": -5}""", "Timestamp must be a nonnegative long"),
            ("""{"key": "acc", "timestamp": 5}""", "Missing value for required parameter 'metrics[1].value'"),
            ("""{"key": "acc", "value": 5}""", "Missing value for required parameter 'metrics[1].timestamp'"),
            // A field of the wrong type, in MLflow's words (the value as json.dumps writes it, the type by Python's name).
            ("""{"key": "acc", "value": 5, "timestamp": 1, "step": "NaN"}""", "Invalid value \"NaN\" for parameter 'metrics[1].step' supplied:  Hint: Value was of type 'str'."),
            ("""{"key": "acc", "value": 5, "timestamp": 1.5}""", "Invalid value 1.5 for parameter 'metrics[1].timestamp' supplied:  Hint: Value was of type 'float'."),
        })
            AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
                await PostAsync("runs/log-batch", $$"""{"run_id": "{{runId}}", "metrics": [{"key": "good", "value": 1, "timestamp": 1}, {{bad}}]}"""), message);
        Assert.Equal(0, await Points());

        // MLflow's batch limits.
        var tooMany = new JsonObject { ["run_id"] = runId, ["metrics"] = new JsonArray(Enumerable.Range(0, 1001).Select(i => (JsonNode)new JsonObject { ["key"] = "m", ["value"] = i, ["timestamp"] = i }).ToArray()) };
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-batch", tooMany.ToJsonString()), "A batch logging request can contain at most 1000 metrics. Got 1001 metrics.");
        var tooManyParams = new JsonObject { ["run_id"] = runId, ["params"] = new JsonArray(Enumerable.Range(0, 101).Select(i => (JsonNode)new JsonObject { ["key"] = $"p{i}", ["value"] = "v" }).ToArray()) };
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-batch", tooManyParams.ToJsonString()), "at most 100 params");
        var mixed = new JsonObject
        {
            ["run_id"] = runId,
            ["metrics"] = new JsonArray(Enumerable.Range(0, 901).Select(i => (JsonNode)new JsonObject { ["key"] = "m", ["value"] = i, ["timestamp"] = i }).ToArray()),
            ["tags"] = new JsonArray(Enumerable.Range(0, 100).Select(i => (JsonNode)new JsonObject { ["key"] = $"t{i}", ["value"] = "v" }).ToArray()),
        };
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-batch", mixed.ToJsonString()), "at most 1000 metrics, params, and tags");
        var huge = $$"""{"run_id": "{{runId}}", "tags": [{"key": "note", "value": "{{new string('x', 1_000_100)}}"}]}""";
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-batch", huge), "must be at most 1000000 bytes");
        Assert.Equal(0, await Points());

        // A param is written once; the same value again is fine. A suffix map that is not a map is refused by name.
        await OkAsync(PostAsync("runs/log-parameter", $$"""{"run_id": "{{runId}}", "key": "lr", "value": "0.1"}"""));
        await OkAsync(PostAsync("runs/log-parameter", $$"""{"run_id": "{{runId}}", "key": "lr", "value": "0.1"}"""));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-parameter", $$"""{"run_id": "{{runId}}", "key": "lr", "value": "0.2"}"""), "Changing param values is not allowed");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/set-tag", $$"""{"run_id": "{{runId}}", "key": "emalab.track_suffixes", "value": "[1]"}"""), "emalab.track_suffixes");
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await PostAsync("runs/delete-tag", $$"""{"run_id": "{{runId}}", "key": "nope"}"""), "No tag with name: nope");

        // A deleted run takes nothing until restored; it leaves the default search view.
        await OkAsync(PostAsync("runs/delete", $$"""{"run_id": "{{runId}}"}"""));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "acc", "value": 1, "timestamp": 1}"""), "must be in the 'active' state");
        var deleted = await OkAsync(PostAsync("runs/search", """{"experiment_ids": ["0"], "run_view_type": "DELETED_ONLY"}"""));
        Assert.Contains(runId, deleted.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()));
        await OkAsync(PostAsync("runs/restore", $$"""{"run_id": "{{runId}}"}"""));
        await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "acc", "value": 1, "timestamp": 1}"""));
        Assert.Equal(1, await Points());

        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", """{"experiment_ids": ["0"], "filter": "metrics.acc ~ 3"}"""), "Invalid filter");
    }

    async Task<JsonElement> RunDataAsync(string runId) =>
        (await OkAsync(GetAsync($"runs/get?run_id={runId}"))).GetProperty("run").GetProperty("data");

    static double? MetricOf(JsonElement data, string key) =>
        data.GetProperty("metrics").EnumerateArray().Where(m => m.GetProperty("key").GetString() == key).Select(m => (double?)m.GetProperty("value").GetDouble()).SingleOrDefault();

    async Task<List<string>> SearchAsync(string filter, string orderBy = "[]") =>
        (await OkAsync(PostAsync("runs/search", $$"""{"experiment_ids": ["0"], "filter": {{JsonSerializer.Serialize(filter)}}, "order_by": {{orderBy}}}""")))
            .TryGetProperty("runs", out var runs) ? runs.EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()!).ToList() : [];

    [Fact]
    public async Task Search_runs_filters_orders_and_pages_as_mlflows_sql_store()
    {
        var experiment = (await OkAsync(PostAsync("experiments/create", $$"""{"name": "search-{{Guid.NewGuid():N}}"}"""))).GetProperty("experiment_id").GetString();
        async Task<string> Run(string name, long start, string tags, params (string Key, double Value)[] metrics)
        {
            var created = await OkAsync(PostAsync("runs/create", $$"""{"experiment_id": "{{experiment}}", "run_name": "{{name}}", "start_time": "{{start}}", "tags": {{tags}}}"""));
            var id = created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
            foreach (var (key, value) in metrics)
                await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{id}}", "key": "{{key}}", "value": {{(double.IsNaN(value) ? "\"NaN\"" : value.ToString(System.Globalization.CultureInfo.InvariantCulture))}}, "timestamp": "1", "step": "1"}"""));
            return id;
        }
        async Task Param(string run, string key, string value) =>
            await OkAsync(PostAsync("runs/log-parameter", $$"""{"run_id": "{{run}}", "key": "{{key}}", "value": "{{value}}"}"""));
        var a = await Run("alpha", 1700000000000, """[{"key": "team", "value": "vision"}]""", ("train/loss", 0.5), ("acc", 0.9), ("val.acc", 0.8));
        var b = await Run("beta", 1700000000005, "[]", ("train/loss", 0.2), ("acc", double.NaN));
        var c = await Run("gamma", 1700000000010, """[{"key": "team", "value": "nlp"}]""", ("acc", 0.7));
        var d = await Run("delta", 1700000000015, """[{"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]""", ("acc_ema", 0.95));
        await Param(a, "lr", "0.01");
        await Param(a, "opt", "Adam");
        await Param(b, "lr", "0.001");
        await Param(b, "opt", "adam");
        await Param(c, "lr", "0.1");
        await OkAsync(PostAsync("runs/update", $$"""{"run_id": "{{c}}", "status": "FINISHED", "end_time": "1700000001000"}"""));
        async Task Input(string run, string name, string digest, string context) => await OkAsync(PostAsync("runs/log-inputs", $$$"""
            {"run_id": "{{{run}}}", "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "{{{context}}}"}], "dataset": {"name": "{{{name}}}", "digest": "{{{digest}}}", "source_type": "local", "source": "digits.npz"}}]}
            """));
        await Input(a, "mnist", "d1", "training");
        await Input(a, "mnist-test", "d3", "eval");
        await Input(b, "digits", "d2", "eval");
        // A tag key sent twice takes its last value (never a 500).
        await OkAsync(PostAsync("runs/log-inputs", $$$"""
            {"run_id": "{{{d}}}", "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "x"}, {"key": "mlflow.data.context", "value": "test"}],
              "dataset": {"name": "digits", "digest": "d4", "source_type": "local", "source": "digits.npz"}}]}
            """));

        async Task<List<string>> Search(string filter, params string[] orderBy)
        {
            var body = new JsonObject { ["experiment_ids"] = new JsonArray(experiment), ["filter"] = filter, ["order_by"] = new JsonArray(orderBy.Select(o => (JsonNode)o).ToArray()) };
            var found = await OkAsync(PostAsync("runs/search", body.ToJsonString()));
            return found.TryGetProperty("runs", out var runs) ? runs.EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()!).ToList() : [];
        }

        // Quoted keys, either quote; an unquoted key may hold dots. Newest start first unless ordered otherwise.
        Assert.Equal([b], await Search("metrics.`train/loss` < 0.4"));
        Assert.Equal([b, a], await Search("metrics.\"train/loss\" >= 0.2"));
        Assert.Equal([a], await Search("metrics.val.acc > 0.5"));
        // A NaN matches no comparison, != included; a key logged through the suffix map is found by its logged name.
        Assert.Equal([c], await Search("metrics.acc != 0.9"));
        Assert.Equal([d], await Search("metrics.acc_ema > 0.9"));
        Assert.Equal([a], await Search("metrics.acc > 0.5 and params.lr = '0.01'"));
        // LIKE is case-sensitive, ILIKE is not; IS NULL finds runs without the tag.
        Assert.Equal([b], await Search("params.opt LIKE 'a%'"));
        Assert.Equal([b, a], await Search("params.opt ILIKE 'A%'"));
        Assert.Equal([a], await Search("params.opt LIKE 'A_a%'"));
        Assert.Equal([d, b], await Search("tags.team IS NULL"));
        Assert.Equal([c, a], await Search("tags.team IS NOT NULL"));
        // Times in whole milliseconds; MLflow's aliases; status as MLflow names it; names and ids.
        Assert.Equal([d, c], await Search("attributes.start_time > 1700000000005"));
        Assert.Equal([b], await Search("created = 1700000000005"));
        Assert.Equal([b, a], await Search("start_time <= 1700000000005"));
        Assert.Equal([c], await Search("end_time > 0"));
        Assert.Equal([c], await Search("status = 'FINISHED'"));
        Assert.Equal([d, b, a], await Search("status LIKE 'RUN%'"));
        Assert.Equal([a], await Search("\"run name\" = 'alpha'"));
        Assert.Equal([a], await Search("attributes.run_name ILIKE 'ALP%'"));
        Assert.Equal([c, a], await Search($"run_id IN ('{a}', '{c}')"));
        Assert.Equal([d, b], await Search($"run_id NOT IN ('{a}', '{c}')"));

        // A run matches when one of its dataset inputs does.
        Assert.Equal([a], await Search("datasets.name = 'mnist'"));
        Assert.Equal([b, a], await Search("datasets.context = 'eval'"));
        Assert.Equal([a], await Search("datasets.context = 'training' and datasets.digest != 'd2'"));
        Assert.Equal([b, a], await Search("datasets.digest IN ('d1', 'd2')"));
        Assert.Equal([], await Search("datasets.name LIKE 'DIG%'"));
        Assert.Equal([d, b], await Search("datasets.name ILIKE 'DIG%'"));
        Assert.Equal([d], await Search("datasets.context = 'test'"));

        // Order: a number, then NaN, then missing, in either direction; strings as strings; a quoted key with a space.
        Assert.Equal([a, c, b, d], await Search("", "metrics.acc DESC"));
        Assert.Equal([c, a, b, d], await Search("", "metrics.acc"));
        Assert.Equal([a, b, d, c], await Search("", "metrics.`train/loss` DESC"));
        Assert.Equal([b, a, c, d], await Search("", "params.lr ASC"));
        Assert.Equal([c, a, b, d], await Search("", "params.lr DESC"));
        Assert.Equal([c, d, b, a], await Search("", "end_time DESC"));
        Assert.Equal([a, b, c, d], await Search("", "attributes.start_time ASC"));
        Assert.Equal([a, c, b, d], await Search("", "tags.team DESC", "run_name"));

        // Pages cut by the database: the token leads to the rest, and the last page has none.
        var first = await OkAsync(PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "max_results": 3, "order_by": ["start_time ASC"]}"""));
        Assert.Equal([a, b, c], first.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()));
        var token = first.GetProperty("next_page_token").GetString();
        var rest = await OkAsync(PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "max_results": 3, "order_by": ["start_time ASC"], "page_token": "{{token}}"}"""));
        Assert.Equal([d], rest.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("info").GetProperty("run_id").GetString()));
        Assert.False(rest.TryGetProperty("next_page_token", out _));
        // Each run of a page is whole: its metrics, params and tags.
        var whole = first.GetProperty("runs")[0].GetProperty("data");
        Assert.Equal(0.9, MetricOf(whole, "acc"));
        Assert.Equal(["lr", "opt"], whole.GetProperty("params").EnumerateArray().Select(p => p.GetProperty("key").GetString()));

        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "order_by": ["metrics.acc", "metrics.acc DESC"]}"""), "duplicate fields");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "filter": "start_time > 1.5"}"""), "expected an integer");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "filter": "metrics.acc IS NULL"}"""), "only supported for tags and params");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "order_by": ["metrics.acc SIDEWAYS"]}"""), "Invalid ordering key");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "filter": "datasets.size = '1'"}"""), "Invalid dataset key");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/search", $$"""{"experiment_ids": ["{{experiment}}"], "order_by": ["datasets.name"]}"""), "not ordered by their datasets");
    }

    [Fact]
    public async Task The_latest_value_is_mlflows_the_highest_step_then_the_latest_time()
    {
        var runId = await NewRunAsync(tags: """[{"key": "case", "value": "latest"}]""");
        async Task Log(string key, double value, long step, long time) =>
            await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "{{key}}", "value": {{value.ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "timestamp": "{{time}}", "step": "{{step}}"}"""));

        // Step 10 = 0.9, then step 5 = 0.1 logged later: the latest is step 10's (MLflow's (step, timestamp, value) rule).
        await Log("x", 0.9, step: 10, time: 1000);
        await Log("x", 0.1, step: 5, time: 2000);
        // A script logging each epoch without a step: many values at step 0, sent out of time order.
        await Log("epoch_acc", 0.3, step: 0, time: 3000);
        await Log("epoch_acc", 0.7, step: 0, time: 1000);
        await Log("epoch_acc", 0.5, step: 0, time: 2000);
        // The same step and time again: the later write wins, as it replaces the stored point.
        await Log("same", 0.2, step: 4, time: 500);
        await Log("same", 0.6, step: 4, time: 500);

        var data = await RunDataAsync(runId);
        Assert.Equal(0.9, MetricOf(data, "x"));
        Assert.Equal("10", data.GetProperty("metrics").EnumerateArray().Single(m => m.GetProperty("key").GetString() == "x").GetProperty("step").ToString());
        Assert.Equal(0.3, MetricOf(data, "epoch_acc"));
        Assert.Equal(0.6, MetricOf(data, "same"));

        Assert.Contains(runId, await SearchAsync("metrics.x > 0.5 and tags.case = 'latest'"));
        Assert.DoesNotContain(runId, await SearchAsync("metrics.x < 0.5 and tags.case = 'latest'"));
        Assert.Contains(runId, await SearchAsync("metrics.epoch_acc = 0.3"));

        // The run page's series list and summaries read the same final value.
        var runs = await _client.GetFromJsonAsync<JsonElement>("/api/runs");
        var id = runs.GetProperty("items").EnumerateArray().First(r => r.GetProperty("trackingId").GetString() == runId).GetProperty("id").GetInt64();
        var series = await _client.GetFromJsonAsync<JsonElement>($"/api/runs/{id}/metrics");
        var x = series.EnumerateArray().Single(s => s.GetProperty("key").GetString() == "x");
        Assert.Equal(0.9, x.GetProperty("lastValue").GetDouble());
        Assert.Equal(10, x.GetProperty("lastStep").GetInt64());
    }

    [Fact]
    public async Task Keys_with_a_colon_and_characters_beyond_the_basic_plane_are_mlflows()
    {
        var runId = await NewRunAsync();
        var doubleStruck = string.Concat(Enumerable.Repeat("𝔼", 250)); // 250 characters, 500 UTF-16 units
        await OkAsync(PostAsync("runs/log-batch", $$"""
            {"run_id": "{{runId}}", "metrics": [{"key": "val:acc", "value": 0.5, "timestamp": 1}, {"key": "{{doubleStruck}}", "value": 1, "timestamp": 1}],
             "params": [{"key": "opt:lr", "value": "0.1"}], "tags": [{"key": "ema:decay", "value": "0.999"}]}
            """));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "{{doubleStruck}}𝔼", "value": 1, "timestamp": 1}"""), "exceeds the maximum length of 250");

        // Values over the limit are cut to the limit in characters, never inside a surrogate pair.
        var emoji = string.Concat(Enumerable.Repeat("😀", 8_001));
        await OkAsync(PostAsync("runs/set-tag", $$"""{"run_id": "{{runId}}", "key": "long", "value": "{{emoji}}"}"""));
        var longParam = string.Concat(Enumerable.Repeat("😀", 6_001));
        await OkAsync(PostAsync("runs/log-parameter", $$"""{"run_id": "{{runId}}", "key": "p", "value": "{{longParam}}"}"""));
        // A resumed script logs the same value again: the same truncated value, not a change.
        await OkAsync(PostAsync("runs/log-parameter", $$"""{"run_id": "{{runId}}", "key": "p", "value": "{{longParam}}"}"""));

        var data = await RunDataAsync(runId);
        Assert.Equal(0.5, MetricOf(data, "val:acc"));
        Assert.Equal(1, MetricOf(data, doubleStruck));
        var tag = data.GetProperty("tags").EnumerateArray().Single(t => t.GetProperty("key").GetString() == "long").GetProperty("value").GetString()!;
        Assert.Equal(string.Concat(Enumerable.Repeat("😀", 8_000)), tag);
        var param = data.GetProperty("params").EnumerateArray().Single(t => t.GetProperty("key").GetString() == "p").GetProperty("value").GetString()!;
        Assert.Equal(string.Concat(Enumerable.Repeat("😀", 6_000)), param);
        Assert.Equal("0.999", data.GetProperty("tags").EnumerateArray().Single(t => t.GetProperty("key").GetString() == "ema:decay").GetProperty("value").GetString());

        // An artifact named with a colon (allowed on Linux by MLflow's validate_path_is_safe); '..' and '#' are not.
        var root = $"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts";
        Assert.Equal(HttpStatusCode.OK, (await _client.PutAsync($"{root}/epoch:3.txt", new ByteArrayContent("three"u8.ToArray()))).StatusCode);
        Assert.Equal("three", await _client.GetStringAsync($"{root}/epoch:3.txt"));
        foreach (var bad in new[] { "a/..%2F..%2Fx.txt", "x%23y.txt" })
            Assert.True(HttpStatusCode.BadRequest == (await _client.PutAsync($"{root}/{bad}", new ByteArrayContent([1]))).StatusCode, bad);
    }

    [Fact]
    public async Task Unknown_endpoints_and_methods_answer_endpoint_not_found_never_405()
    {
        AssertError(HttpStatusCode.NotFound, "ENDPOINT_NOT_FOUND", await PostAsync("no-such/endpoint", "{}"));
        AssertError(HttpStatusCode.NotFound, "ENDPOINT_NOT_FOUND", await PostAsync("experiments/get", "{}"));
        var delete = await _client.DeleteAsync(Base + "runs/get");
        Assert.Equal(HttpStatusCode.NotFound, delete.StatusCode);
        Assert.Equal("ENDPOINT_NOT_FOUND", JsonDocument.Parse(await delete.Content.ReadAsStringAsync()).RootElement.GetProperty("error_code").GetString());
        var artifacts = await _client.PostAsync("/api/2.0/mlflow-artifacts/presigned/0/x", Api.JsonBody("{}"));
        Assert.Equal(HttpStatusCode.NotFound, artifacts.StatusCode);
        Assert.Equal("ENDPOINT_NOT_FOUND", JsonDocument.Parse(await artifacts.Content.ReadAsStringAsync()).RootElement.GetProperty("error_code").GetString());
    }

    /// <summary>
    /// The requests of <c>mlflow.pytorch.log_model(ema_model, name="ema")</c> in a run, in the order MLflow 3's client sends
    /// them (mlflow/models/model.py Model.log, rest_store.py, http_artifact_repo.py), then what <c>load_model("models:/…")</c>
    /// reads: the model, its directory listings and its files.
    /// </summary>
    [Fact]
    public async Task Log_model_creates_a_logged_model_whose_files_go_through_the_artifact_proxy_and_load_back()
    {
        var runId = await NewRunAsync();
        await OkAsync(PostAsync("runs/log-batch", $$"""
            {"run_id": "{{runId}}", "metrics": [{"key": "val_acc", "value": 0.91, "timestamp": "1000", "step": "300"}], "params": [{"key": "lr", "value": "0.001"}]}
            """));
        await OkAsync(PostAsync("runs/log-inputs", $$$"""
            {"run_id": "{{{runId}}}", "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
              "dataset": {"name": "digits", "digest": "abc123", "source_type": "local", "source": "{\"uri\": \"digits.npz\"}"}}]}
            """));

        // 1. create (PENDING) with the run's params, 2. the run's output at the step, 3. the step's metrics with model_id.
        var created = (await OkAsync(PostAsync("logged-models", $$"""
            {"experiment_id": "0", "name": "ema", "source_run_id": "{{runId}}", "params": [{"key": "lr", "value": "0.001"}],
             "tags": [{"key": "mlflow.source.name", "value": "train.py"}, {"key": "emalab.track", "value": "ema-0.999"}]}
            """))).GetProperty("model");
        var modelId = created.GetProperty("info").GetProperty("model_id").GetString()!;
        Assert.Matches("^m-[0-9a-f]{32}$", modelId);
        Assert.Equal("LOGGED_MODEL_PENDING", created.GetProperty("info").GetProperty("status").GetString());
        var artifactUri = created.GetProperty("info").GetProperty("artifact_uri").GetString()!;
        Assert.Equal($"mlflow-artifacts:/0/models/{modelId}/artifacts", artifactUri);
        await OkAsync(PostAsync("runs/outputs", $$"""{"run_id": "{{runId}}", "models": [{"model_id": "{{modelId}}", "step": "300"}]}"""));
        await OkAsync(PostAsync("runs/log-batch", $$"""
            {"run_id": "{{runId}}", "metrics": [{"key": "val_acc", "value": 0.91, "timestamp": "1000", "step": "300", "model_id": "{{modelId}}", "run_id": "{{runId}}"}]}
            """));

        // 4. the files, PUT to the proxy path of the model's artifact_uri; 5. finalize READY.
        var root = $"/api/2.0/mlflow-artifacts/artifacts/0/models/{modelId}/artifacts";
        var weights = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();
        Assert.Equal(HttpStatusCode.OK, (await _client.PutAsync($"{root}/MLmodel", new ByteArrayContent("artifact_path: mlflow-artifacts:/0/models\n"u8.ToArray()))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _client.PutAsync($"{root}/data/model.pth", new ByteArrayContent(weights))).StatusCode);
        var ready = (await OkAsync(SendAsync(HttpMethod.Patch, $"logged-models/{modelId}", $$"""{"model_id": "{{modelId}}", "status": "LOGGED_MODEL_READY"}"""))).GetProperty("model");
        Assert.Equal("LOGGED_MODEL_READY", ready.GetProperty("info").GetProperty("status").GetString());

        // load_model: get the model, list its root and sub-folders through the proxy, download the files.
        var model = (await OkAsync(GetAsync($"logged-models/{modelId}"))).GetProperty("model");
        Assert.Equal(runId, model.GetProperty("info").GetProperty("source_run_id").GetString());
        Assert.Equal(0.91, model.GetProperty("data").GetProperty("metrics")[0].GetProperty("value").GetDouble());
        Assert.Equal("lr", model.GetProperty("data").GetProperty("params")[0].GetProperty("key").GetString());
        var listing = await _client.GetFromJsonAsync<JsonElement>($"/api/2.0/mlflow-artifacts/artifacts?path=0/models/{modelId}/artifacts");
        Assert.Equal(["MLmodel", "data"], listing.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()).Order(StringComparer.Ordinal));
        Assert.Equal(weights, await _client.GetByteArrayAsync($"{root}/data/model.pth"));
        var directories = await OkAsync(GetAsync($"logged-models/{modelId}/artifacts/directories?artifact_directory_path=data"));
        Assert.Equal("data/model.pth", directories.GetProperty("files")[0].GetProperty("path").GetString());
        Assert.Equal(artifactUri, directories.GetProperty("root_uri").GetString());

        // The run shows its output model and its dataset input; the run's own history has one value at step 300, not two.
        var run = (await OkAsync(GetAsync($"runs/get?run_id={runId}"))).GetProperty("run");
        Assert.Equal(modelId, run.GetProperty("outputs").GetProperty("model_outputs")[0].GetProperty("model_id").GetString());
        Assert.Equal("digits", run.GetProperty("inputs").GetProperty("dataset_inputs")[0].GetProperty("dataset").GetProperty("name").GetString());
        var history = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=val_acc"));
        Assert.Single(history.GetProperty("metrics").EnumerateArray());

        // Search, tags, params and delete as MLflow's handlers answer them.
        var found = await OkAsync(PostAsync("logged-models/search", """{"experiment_ids": ["0"], "filter": "name = 'ema' AND metrics.val_acc > 0.9"}"""));
        Assert.Equal(modelId, found.GetProperty("models")[0].GetProperty("info").GetProperty("model_id").GetString());
        await OkAsync(SendAsync(HttpMethod.Patch, $"logged-models/{modelId}/tags", """{"tags": [{"key": "stage", "value": "best"}]}"""));
        await OkAsync(SendAsync(HttpMethod.Delete, $"logged-models/{modelId}/tags/stage", null));
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await SendAsync(HttpMethod.Delete, $"logged-models/{modelId}/tags/stage", null));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync($"logged-models/{modelId}/params", """{"params": [{"key": "lr", "value": "0.1"}]}"""), "Changing param values is not allowed");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("logged-models", """{"experiment_id": "0", "name": "a/b"}"""), "Invalid model name");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("logged-models", """{}"""), "experiment_id");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Patch, $"logged-models/{modelId}", """{"status": "DONE"}"""), "status");
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await GetAsync("logged-models/m-00000000000000000000000000000000"));
        await OkAsync(SendAsync(HttpMethod.Delete, $"logged-models/{modelId}", null));
        AssertError(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await GetAsync($"logged-models/{modelId}"));
        Assert.Equal(modelId, (await OkAsync(GetAsync($"logged-models/{modelId}?allow_deleted=true"))).GetProperty("model").GetProperty("info").GetProperty("model_id").GetString());
    }

    async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, string? json)
    {
        using var request = new HttpRequestMessage(method, Base + path) { Content = json is null ? null : Api.JsonBody(json) };
        var response = await _client.SendAsync(request);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    [Fact]
    public async Task Engine_runs_are_readable_through_the_tracking_api_but_take_no_client_metrics()
    {
        var body = Api.DigitsRun(steps: 20, evalInterval: 10);
        // A track with a name of its own: its keys are `slow/…`, and not a raw key with a slash in it.
        body["ema"] = new JsonObject { ["tracks"] = new JsonArray(new JsonObject { ["decay"] = 0.99 }, new JsonObject { ["decay"] = 0.9, ["name"] = "slow" }) };
        var created = await Api.CreateAsync(_client, body);
        await Api.WaitForFinishAsync(_client, created.Id());
        var search = await OkAsync(PostAsync("runs/search", """{"experiment_ids": ["0"], "filter": "attributes.status = 'FINISHED'"}"""));
        var run = search.GetProperty("runs").EnumerateArray().Single(r => r.GetProperty("info").GetProperty("run_name").GetString() == "test");
        var runId = run.GetProperty("info").GetProperty("run_id").GetString()!;
        var keys = run.GetProperty("data").GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("key").GetString()).ToList();
        Assert.Contains("eval/accuracy", keys);
        Assert.Contains("ema-0.99/eval/accuracy", keys);
        var history = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=ema-0.99/eval/accuracy"));
        Assert.Equal([0L, 10, 20], history.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("step").GetInt64()));
        Assert.Contains("slow/eval/accuracy", keys);
        var slow = await OkAsync(GetAsync($"metrics/get-history?run_id={runId}&metric_key=slow/eval/accuracy"));
        Assert.Equal([0L, 10, 20], slow.GetProperty("metrics").EnumerateArray().Select(m => m.GetProperty("step").GetInt64()));
        // The search finds an engine run by its keys as the API names them: raw's bare, a track's under its name.
        Assert.Contains(runId, await SearchAsync($"metrics.`eval/accuracy` >= 0 and run_id = '{runId}'"));
        Assert.Contains(runId, await SearchAsync($"metrics.\"ema-0.99/eval/accuracy\" >= 0 and run_id = '{runId}'"));
        Assert.Empty(await SearchAsync($"metrics.`raw/eval/accuracy` >= 0 and run_id = '{runId}'"));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "acc", "value": 1, "timestamp": 1}"""), "trained by EMA Lab's engine");
    }

    [Fact]
    public async Task Post_hoc_snapshots_are_checked_by_their_header_and_a_bad_one_is_refused_by_name_and_not_kept()
    {
        var runId = await NewRunAsync();
        var root = $"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts";

        byte[] Snapshot(long step, string sigmaRels = "[0.05,0.1]", string[]? profiles = null, int size = 3, string? stepText = null)
        {
            using var stream = new MemoryStream();
            var tensors = (profiles ?? ["pf-0.05", "pf-0.1"]).Select(p => ($"{p}/fc.weight", TorchSharp.torch.ones(size))).ToList();
            tensors.Add(("buffers/bn.running_mean", TorchSharp.torch.zeros(2)));
            EmaLab.TrainingEngine.Formats.SafeTensors.Write(stream, tensors, new Dictionary<string, string>
            {
                ["format"] = "emalab-posthoc/1", ["step"] = stepText ?? step.ToString(), ["sigma_rels"] = sigmaRels,
            });
            foreach (var (_, t) in tensors) t.Dispose();
            return stream.ToArray();
        }
        async Task<(HttpStatusCode, JsonElement)> Put(string name, byte[] bytes)
        {
            var response = await _client.PutAsync($"{root}/posthoc/{name}", new ByteArrayContent(bytes));
            var body = await response.Content.ReadAsStringAsync();
            return (response.StatusCode, body.Length > 0 ? JsonDocument.Parse(body).RootElement : default);
        }

        Assert.Equal(HttpStatusCode.OK, (await Put("snapshot-000000100.safetensors", Snapshot(100))).Item1);
        Assert.Equal(HttpStatusCode.OK, (await Put("snapshot-000000200.safetensors", Snapshot(200))).Item1);
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-000000300.safetensors", Snapshot(300, "[0.05,0.2]", ["pf-0.05", "pf-0.2"])),
            "Post-hoc snapshot posthoc/snapshot-000000300.safetensors refused: its σ_rels [0.05, 0.2] differ from the earlier snapshots'");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-000000300.safetensors", Snapshot(300, size: 4)),
            "its tensors (names, types or shapes) differ");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-000000300.safetensors", Snapshot(300, stepText: "301")),
            "its metadata 'step' must be 300");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-000000300.safetensors", Snapshot(300, profiles: ["pf-0.05"])),
            "profile pf-0.1 holds other tensors than pf-0.05");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-300.safetensors", Snapshot(300)),
            "a snapshot is named posthoc/snapshot-<step, 9 digits>.safetensors");
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await Put("snapshot-000000300.safetensors", Snapshot(300, "[0.5]", ["pf-0.5"])),
            "σ_rel 0.5");

        // Nothing refused was kept, and a snapshot is no checkpoint of a track.
        var listed = JsonDocument.Parse(await _client.GetStringAsync($"/api/2.0/mlflow-artifacts/artifacts?path=0/{runId}/artifacts/posthoc")).RootElement;
        Assert.Equal(["snapshot-000000100.safetensors", "snapshot-000000200.safetensors"],
            listed.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()));
        var id = (await Api.GetAsync(_client, "/api/runs")).GetProperty("items").EnumerateArray().Single(r => r.GetProperty("trackingId").GetString() == runId).Id();
        Assert.Empty((await Api.GetAsync(_client, $"/api/runs/{id}/checkpoints")).EnumerateArray());
    }

    [Fact]
    public async Task Artifacts_upload_through_the_proxy_and_a_safetensors_file_becomes_a_checkpoint_of_its_track()
    {
        var runId = await NewRunAsync(tags: """[{"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]""");
        var run = (await OkAsync(GetAsync($"runs/get?run_id={runId}"))).GetProperty("run").GetProperty("info");
        // The client turns artifact_uri mlflow-artifacts:/0/<run>/artifacts into this path.
        Assert.Equal($"mlflow-artifacts:/0/{runId}/artifacts", run.GetProperty("artifact_uri").GetString());
        var root = $"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts";
        await OkAsync(PostAsync("runs/log-metric", $$"""{"run_id": "{{runId}}", "key": "val_acc", "value": 0.9, "timestamp": 1, "step": 300}"""));

        byte[] Checkpoint(Dictionary<string, string>? metadata)
        {
            using var stream = new MemoryStream();
            using var weights = TorchSharp.torch.arange(6, TorchSharp.torch.ScalarType.Float32).reshape(2, 3);
            EmaLab.TrainingEngine.Formats.SafeTensors.Write(stream, [("fc.weight", weights)], metadata);
            return stream.ToArray();
        }
        async Task<HttpStatusCode> Put(string path, byte[] bytes) =>
            (await _client.PutAsync($"{root}/{path}", new ByteArrayContent(bytes))).StatusCode;

        var ema = Checkpoint(null);
        Assert.Equal(HttpStatusCode.OK, await Put("checkpoints/model_ema.safetensors", ema));               // by the suffix map
        Assert.Equal(HttpStatusCode.OK, await Put("raw.safetensors", Checkpoint(new() { ["step"] = "150" }))); // by its name, step from metadata
        Assert.Equal(HttpStatusCode.OK, await Put("notes/config.yaml", Encoding.UTF8.GetBytes("lr: 0.001\n")));  // a plain artifact
        // A step in the name too large for a long is no step (never a 500): the run's last step.
        Assert.Equal(HttpStatusCode.OK, await Put("swa-step99999999999999999999.safetensors", Checkpoint(null)));

        // A broken safetensors file is refused with the reason and not kept.
        var broken = (byte[])ema.Clone();
        broken[0] = 0xff; broken[1] = 0xff; // an absurd header length
        var refused = await _client.PutAsync($"{root}/broken.safetensors", new ByteArrayContent(broken));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", (refused.StatusCode, JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement), "header length");
        var truncated = await _client.PutAsync($"{root}/short.safetensors", new ByteArrayContent(ema[..^4]));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", (truncated.StatusCode, JsonDocument.Parse(await truncated.Content.ReadAsStringAsync()).RootElement), "the file holds");
        // A path that climbs out of the run's folder (escaped, so the client does not resolve it) is refused.
        var escape = await _client.PutAsync($"{root}/..%2F..%2Fescape.txt", new ByteArrayContent([1]));
        AssertError(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", (escape.StatusCode, JsonDocument.Parse(await escape.Content.ReadAsStringAsync()).RootElement), "Invalid path");

        // Listed as MLflow lists them: names relative to the folder asked for; the tracking API's list has full paths.
        var listed = JsonDocument.Parse(await _client.GetStringAsync($"/api/2.0/mlflow-artifacts/artifacts?path=0/{runId}/artifacts")).RootElement;
        Assert.Equal(["checkpoints", "notes", "raw.safetensors", "swa-step99999999999999999999.safetensors"], listed.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()));
        Assert.True(listed.GetProperty("files")[0].GetProperty("is_dir").GetBoolean());
        var nested = await OkAsync(GetAsync($"artifacts/list?run_id={runId}&path=checkpoints"));
        Assert.Equal("checkpoints/model_ema.safetensors", nested.GetProperty("files")[0].GetProperty("path").GetString());
        Assert.Equal(ema.Length, nested.GetProperty("files")[0].GetProperty("file_size").GetInt64());
        Assert.Equal(ema, await _client.GetByteArrayAsync($"{root}/checkpoints/model_ema.safetensors"));
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"{root}/nope.bin")).StatusCode);

        // EMA Lab lists the two checkpoints with their tracks and steps; downloads give the same bytes.
        var emaLabId = (await Api.GetAsync(_client, "/api/runs?pageSize=100")).GetProperty("items").EnumerateArray()
            .Single(r => r.GetProperty("trackingId").GetString() == runId).Id();
        var checkpoints = await Api.GetAsync(_client, $"/api/runs/{emaLabId}/checkpoints");
        var byTrack = checkpoints.EnumerateArray().ToDictionary(c => c.GetProperty("track").GetString()!);
        Assert.Equal(["ema-0.999", "raw", "swa-step99999999999999999999"], byTrack.Keys.Order());
        Assert.Equal(300, byTrack["ema-0.999"].GetProperty("step").GetInt64()); // the last step the run logged
        Assert.Equal(300, byTrack["swa-step99999999999999999999"].GetProperty("step").GetInt64());
        Assert.Equal(150, byTrack["raw"].GetProperty("step").GetInt64());
        Assert.Equal(ema, await _client.GetByteArrayAsync($"/api/checkpoints/{byTrack["ema-0.999"].GetProperty("id").GetInt64()}/download"));
    }

    [Fact]
    public async Task Engine_runs_join_an_experiment_by_id_and_a_clone_stays_in_it()
    {
        var id = (await OkAsync(PostAsync("experiments/create", """{"name": "engine-study"}"""))).GetProperty("experiment_id").GetString()!;
        var body = Api.DigitsRun(steps: 5);
        body["experimentId"] = long.Parse(id);
        var run = await Api.CreateAsync(_client, body);
        Assert.Equal(long.Parse(id), run.GetProperty("experimentId").GetInt64());
        var clone = await _client.PostAsync($"/api/runs/{run.Id()}/clone", Api.JsonBody("{}"));
        Assert.Equal(long.Parse(id), JsonDocument.Parse(await clone.Content.ReadAsStringAsync()).RootElement.GetProperty("experimentId").GetInt64());
        var listed = await Api.GetAsync(_client, $"/api/runs?experiment={id}");
        Assert.Equal(2, listed.GetProperty("total").GetInt32());

        // An experiment that does not exist is a 400 naming the field; nothing is written.
        var before = (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32();
        body["experimentId"] = 987654;
        var refused = await _client.PostAsync("/api/runs", Api.JsonBody(body.ToJsonString()));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("experimentId", await refused.Content.ReadAsStringAsync());
        Assert.Equal(before, (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32());
    }

    [Fact]
    public async Task An_artifact_that_would_eat_the_disk_reserve_is_refused_and_nothing_is_kept()
    {
        using var tight = factory.New();
        tight.Settings["EmaLab:Limits:DiskReserveMegabytes"] = "10000000"; // 10 TB must stay free: nothing fits
        var client = tight.CreateClient();
        var created = await client.PostAsync(Base + "runs/create", Api.JsonBody("{}"));
        var runId = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var refused = await client.PutAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/big.bin", new ByteArrayContent(new byte[1024]));
        AssertError((HttpStatusCode)429, "RESOURCE_EXHAUSTED", (refused.StatusCode, JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement), "Not enough free disk space");
        var listed = JsonDocument.Parse(await client.GetStringAsync($"/api/2.0/mlflow-artifacts/artifacts?path=0/{runId}/artifacts")).RootElement;
        Assert.Equal(0, listed.GetProperty("files").GetArrayLength());
    }

    [Fact]
    public async Task A_batch_the_store_refuses_is_an_error_for_that_run_only_never_a_silent_200()
    {
        using var own = factory.New();
        var client = own.CreateClient();
        async Task<(HttpStatusCode, JsonElement)> Post(string path, string body)
        {
            var response = await client.PostAsync(Base + path, Api.JsonBody(body));
            return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
        }
        var (_, a) = await Post("runs/create", "{}");
        var (_, b) = await Post("runs/create", "{}");
        var (runA, runB) = (a.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString(), b.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString());
        var idA = (await Api.GetAsync(client, "/api/runs")).GetProperty("items").EnumerateArray().Single(r => r.GetProperty("trackingId").GetString() == runA).Id();
        // The database refuses run A's rows for good (as a corrupt page or a constraint would).
        own.RefuseMetricsOf(idA, "rows of this run cannot be stored");
        string Batch(string? run) => $$"""{"run_id": "{{run}}", "metrics": [{"key": "acc", "value": 0.5, "timestamp": 1, "step": 1}]}""";
        AssertError(HttpStatusCode.InternalServerError, "INTERNAL_ERROR", await Post("runs/log-batch", Batch(runA)), "cannot be stored");
        AssertError(HttpStatusCode.InternalServerError, "INTERNAL_ERROR", await Post("runs/log-batch", Batch(runA)), "cannot be stored");
        var (status, _) = await Post("runs/log-batch", Batch(runB));
        Assert.Equal(HttpStatusCode.OK, status);
        var history = JsonDocument.Parse(await client.GetStringAsync($"{Base}metrics/get-history?run_id={runB}&metric_key=acc")).RootElement;
        Assert.Equal(1, history.GetProperty("metrics").GetArrayLength());
    }
}
