using System.Net;
using System.Text;
using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// MLflow's UI routes and the answers its own REST tests (tests/tracking/test_rest_tracking.py) check, kept here because CI
/// has no MLflow: /ajax-api is the REST API again, the UI-only routes answer only there, /get-artifact at the root, every
/// other path under MLflow's prefixes is ENDPOINT_NOT_FOUND, a field of the wrong type is said in MLflow's words.
/// </summary>
public sealed class MlflowUiRouteTests(EmaLabFactory factory) : MlflowUiRouteSuite(factory), IClassFixture<EmaLabFactory>;

[Trait("Speed", "Postgres")]
public sealed class MlflowUiRouteOnPostgresTests(PostgresEmaLabFactory factory) : MlflowUiRouteSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class MlflowUiRouteSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, string? json = null, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content ?? (json is null ? null : Api.JsonBody(json)) };
        using var response = await _client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length > 0 && text[0] == '{' ? JsonDocument.Parse(text).RootElement : JsonDocument.Parse(JsonSerializer.Serialize(text)).RootElement);
    }

    static void Error(HttpStatusCode status, string code, (HttpStatusCode Status, JsonElement Body) answer, string? message = null)
    {
        Assert.True(answer.Status == status, $"{(int)answer.Status}: {answer.Body}");
        Assert.Equal(code, answer.Body.GetProperty("error_code").GetString());
        if (message is not null) Assert.Contains(message, answer.Body.GetProperty("message").GetString());
    }

    async Task<(string Experiment, string Run)> RunAsync()
    {
        var experiment = (await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/create", $$"""{"name": "ui-{{Guid.NewGuid():N}}"}""")).Body
            .GetProperty("experiment_id").GetString()!;
        var run = (await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/create", $$"""{"experiment_id": "{{experiment}}"}""")).Body
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        return (experiment, run);
    }

    [Fact]
    public async Task The_ajax_prefix_answers_as_the_rest_api_and_its_own_routes_only_there()
    {
        var (_, run) = await RunAsync();
        // (Two values at one step and one time are one point here: the metric store keys points by step and time. MLflow
        // keeps both; its bulk-history test logs such a pair — left for the metric store's key, not this route.)
        foreach (var (step, time, value) in new[] { (3L, 4L, 12.0), (2, 1, 10), (3, 3, 12), (3, 2, 11) })
            await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/log-metric",
                $$"""{"run_id": "{{run}}", "key": "acc", "value": {{value}}, "timestamp": {{time}}, "step": {{step}}}""");
        var viaAjax = await SendAsync(HttpMethod.Get, $"/ajax-api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=acc");
        Assert.Equal(HttpStatusCode.OK, viaAjax.Status);
        Assert.Equal(4, viaAjax.Body.GetProperty("metrics").GetArrayLength());

        // get-history-bulk: by run, then time, step and value (MLflow's store); only on the UI prefix.
        var bulk = await SendAsync(HttpMethod.Get, $"/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id={run}&run_id=no-such-run&metric_key=acc&max_results=3");
        Assert.Equal(HttpStatusCode.OK, bulk.Status);
        Assert.Equal(["1:2:10", "2:3:11", "3:3:12"], bulk.Body.GetProperty("metrics").EnumerateArray()
            .Select(m => $"{m.GetProperty("timestamp").GetInt64()}:{m.GetProperty("step").GetInt64()}:{m.GetProperty("value").GetDouble()}"));
        Assert.All(bulk.Body.GetProperty("metrics").EnumerateArray(), m => Assert.Equal(run, m.GetProperty("run_id").GetString()));
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Get, "/ajax-api/2.0/mlflow/metrics/get-history-bulk?metric_key=acc"),
            "GetMetricHistoryBulk request must specify at least one run_id.");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Get, $"/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id={run}"),
            "GetMetricHistoryBulk request must specify a metric_key.");
        Error(HttpStatusCode.NotFound, "ENDPOINT_NOT_FOUND", await SendAsync(HttpMethod.Get, $"/api/2.0/mlflow/metrics/get-history-bulk?run_id={run}&metric_key=acc"));
        // The interval route checks its parameters before it looks a run up (an empty key is a missing one).
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await SendAsync(HttpMethod.Get, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=123&metric_key="),
            "Missing value for required parameter 'metric_key'.");

        // Every other path under MLflow's prefixes is an endpoint this server does not have, in MLflow's words.
        foreach (var (method, path) in new[] { ("POST", "/api/3.0/mlflow/traces"), ("GET", "/api/2.0/mlflow/nothing"), ("GET", "/ajax-api/3.0/mlflow/x"),
                     ("DELETE", "/api/2.0/gateway/routes/x") })
            Error(HttpStatusCode.NotFound, "ENDPOINT_NOT_FOUND", await SendAsync(new HttpMethod(method), path, method == "POST" ? "{}" : null), path);
    }

    [Fact]
    public async Task An_artifact_uploads_through_the_ui_route_and_downloads_from_the_root_route()
    {
        var (_, run) = await RunAsync();
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Post, "/ajax-api/2.0/mlflow/upload-artifact"), "Request must specify run_uuid.");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Post, $"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path="),
            "Request must specify path.");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await SendAsync(HttpMethod.Post, $"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path=../test.txt"), "Invalid path");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await SendAsync(HttpMethod.Post, $"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path=test.txt"), "Request must specify data.");
        var uploaded = await SendAsync(HttpMethod.Post, $"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path=notes/test.txt",
            content: new StringContent("hello world", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.OK, uploaded.Status);
        var file = await _client.GetAsync($"/get-artifact?run_uuid={run}&path=notes/test.txt");
        Assert.Equal(HttpStatusCode.OK, file.StatusCode);
        Assert.Equal("hello world", await file.Content.ReadAsStringAsync());
        Assert.Equal("attachment", file.Content.Headers.ContentDisposition?.DispositionType);
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Get, $"/get-artifact?run_id={run}&path=../path"), "Invalid path");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await SendAsync(HttpMethod.Get, "/model-versions/get-artifact?name=model&version=1&path=../path"), "Invalid path");
    }

    [Fact]
    public async Task Datasets_are_summarised_per_experiment_and_fields_of_the_wrong_type_are_said_in_mlflows_words()
    {
        var (experiment, run) = await RunAsync();
        await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/log-inputs", $$$"""
            {"run_id": "{{{run}}}", "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
              "dataset": {"name": "name1", "digest": "digest1", "source_type": "local", "source": "s"}}]}
            """);
        var summaries = await SendAsync(HttpMethod.Post, "/ajax-api/2.0/mlflow/experiments/search-datasets", $$"""{"experiment_ids": ["{{experiment}}"]}""");
        Assert.Equal(HttpStatusCode.OK, summaries.Status);
        Assert.Equal($$"""[{"experiment_id":"{{experiment}}","name":"name1","digest":"digest1","context":"training"}]""",
            summaries.Body.GetProperty("dataset_summaries").GetRawText());
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Post, "/ajax-api/2.0/mlflow/experiments/search-datasets", "{}"),
            "SearchDatasets request must specify at least one experiment_id.");

        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/create", """{"name": 123}"""),
            "Invalid value 123 for parameter 'name' supplied:  Hint: Value was of type 'int'.");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/log-metric", $$"""{"run_id": "{{run}}", "key": "k", "value": 1, "timestamp": "foo", "step": 1}"""),
            "Invalid value \"foo\" for parameter 'timestamp' supplied:  Hint: Value was of type 'str'.");
        var batch = await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/log-batch", $$"""{"run_id": "{{run}}", "metrics": "foo"}""");
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", batch, "Invalid value \"foo\" for parameter 'metrics' supplied");
        Assert.DoesNotContain("EmaLab", batch.Body.GetProperty("message").GetString());
        var broken = await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/runs/log-batch", """{"run_id": """);
        Error(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", broken, "the JSON does not parse");

        // An experiment's tag is deleted once; a relative artifact location becomes an absolute path, as MLflow's store makes it.
        await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/set-experiment-tag", $$"""{"experiment_id": "{{experiment}}", "key": "dataset", "value": "x"}""");
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/delete-experiment-tag",
            $$"""{"experiment_id": "{{experiment}}", "key": "dataset"}""")).Status);
        Error(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/delete-experiment-tag",
            $$"""{"experiment_id": "{{experiment}}", "key": "dataset"}"""), $"No tag with name: dataset in experiment with id {experiment}");
        var located = (await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/experiments/create", $$"""{"name": "loc-{{Guid.NewGuid():N}}", "artifact_location": "my_location"}"""))
            .Body.GetProperty("experiment_id").GetString();
        var location = (await SendAsync(HttpMethod.Get, $"/api/2.0/mlflow/experiments/get?experiment_id={located}")).Body.GetProperty("experiment")
            .GetProperty("artifact_location").GetString();
        Assert.Equal(Path.GetFullPath("my_location"), location);

        // A logged model keeps the source run id it was given, even one this server does not have.
        var model = (await SendAsync(HttpMethod.Post, "/api/2.0/mlflow/logged-models", $$"""{"experiment_id": "{{experiment}}", "source_run_id": "123"}"""))
            .Body.GetProperty("model").GetProperty("info");
        Assert.Equal("123", model.GetProperty("source_run_id").GetString());
    }
}
