using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Mvc.Testing;

namespace EmaLab.Dashboard.Tests;

/// <summary>With EmaLab:ApiToken set (the service token), accounts are on: every API call and page needs credentials.</summary>
public sealed class ApiTokenTests : IDisposable
{
    readonly EmaLabFactory _factory = new() { Settings = { ["EmaLab:ApiToken"] = "s3cret" } };

    [Fact]
    public async Task Every_api_call_needs_the_token_when_one_is_set_and_health_stays_open()
    {
        var client = _factory.CreateClient();
        var denied = await client.PostAsJsonAsync("/api/runs", Api.DigitsRun(steps: 5));
        Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        Assert.Equal(["Bearer", "Basic"], denied.Headers.WwwAuthenticate.Select(h => h.Scheme));
        Assert.Equal("application/problem+json", denied.Content.Headers.ContentType!.MediaType);

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "wrong");
        var wrong = await client.PostAsJsonAsync("/api/runs", Api.DigitsRun(steps: 5));
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Contains("invalid_token", wrong.Headers.WwwAuthenticate.ToString());

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 5));
        Assert.Equal("completed", (await Api.WaitForFinishAsync(client, run.Id())).Status());
        var checkpoint = (await Api.GetAsync(client, $"/api/runs/{run.Id()}/checkpoints"))[0].GetProperty("id").GetInt64();

        // Reads too: downloads, logs (stack traces), CSV and the live stream are not anonymous.
        client.DefaultRequestHeaders.Authorization = null;
        foreach (var url in new[] { "/api/runs", $"/api/runs/{run.Id()}", $"/api/runs/{run.Id()}/metrics", $"/api/runs/{run.Id()}/metrics.csv",
                     $"/api/runs/{run.Id()}/log", $"/api/runs/{run.Id()}/events", $"/api/checkpoints/{checkpoint}/download" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync(url)).StatusCode);
        Assert.Equal("Healthy", await client.GetStringAsync("/health"));

        // MLflow's clients read the error code from the body: theirs, not problem details.
        var tracking = await client.GetAsync("/api/2.0/mlflow/experiments/get?experiment_id=0");
        Assert.Equal(HttpStatusCode.Unauthorized, tracking.StatusCode);
        Assert.Equal("UNAUTHENTICATED", (await tracking.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("error_code").GetString());
    }

    [Fact]
    public async Task Failed_token_attempts_are_rate_limited_per_address()
    {
        var client = _factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "guess");
        for (var i = 0; i < 10; i++) Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/runs")).StatusCode);
        var limited = await client.GetAsync("/api/runs");
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.NotNull(limited.Headers.RetryAfter);
        // Blocked even with the right token until the window ends: guessing gains nothing.
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        Assert.Equal(HttpStatusCode.TooManyRequests, (await client.GetAsync("/api/runs")).StatusCode);
    }

    [Fact]
    public async Task An_mlflow_client_logs_with_its_tracking_token_and_nothing_gets_in_without_it()
    {
        var client = _factory.CreateClient();

        // MLFLOW_TRACKING_TOKEN=s3cret makes MLflow's client send exactly this header.
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        var created = await client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody("""{"experiment_id": "0"}"""));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var runId = System.Text.Json.JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var batch = $$"""{"run_id": "{{runId}}", "metrics": [{"key": "val_acc", "value": 0.5, "timestamp": "1700000000000", "step": "1"}]}""";
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody(batch))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/notes.txt", new StringContent("kept"))).StatusCode);

        // Without it (or with another one): no logging, no reading, no artifact in or out.
        foreach (var token in new string?[] { null, "wrong" })
        {
            client.DefaultRequestHeaders.Authorization = token is null ? null : new AuthenticationHeaderValue("Bearer", token);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody(batch))).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync($"/api/2.0/mlflow/metrics/get-history?run_id={runId}&metric_key=val_acc")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/notes.txt")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.PutAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/other.txt", new StringContent("no"))).StatusCode);
        }

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        var history = await client.GetStringAsync($"/api/2.0/mlflow/metrics/get-history?run_id={runId}&metric_key=val_acc");
        Assert.Single(System.Text.Json.JsonDocument.Parse(history).RootElement.GetProperty("metrics").EnumerateArray());
        Assert.Equal("kept", await client.GetStringAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/notes.txt"));
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/other.txt")).StatusCode);
    }

    [Fact]
    public async Task Without_a_token_pages_are_open()
    {
        using var open = new EmaLabFactory();
        var client = open.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/runs/new")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/runs")).StatusCode);
    }

    public void Dispose() => _factory.Dispose();
}
