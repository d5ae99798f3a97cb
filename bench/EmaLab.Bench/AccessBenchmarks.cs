using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

/// <summary>
/// What accounts cost an API call. The same calls as the service token (an admin: nothing to look up beyond comparing the
/// token), as a user with a grant sending a personal token (the token's hash looked up, the user's grants, the run's
/// experiment) and as that user sending a password over HTTP Basic (Identity's PBKDF2 on every request — MLflow's auth
/// app also checks a password on each). Server as a child process on SQLite; medians of interleaved rounds.
/// </summary>
static class AccessBenchmarks
{
    const string ServiceToken = "bench-service-token-0123456789";
    const string Password = "a long enough passphrase";
    const int Rounds = 41;

    public static Task RunAsync() => LoadBenchmarks.WithServerAsync(new Dictionary<string, string>
    {
        ["EmaLab__Admin__UserName"] = "ana", ["EmaLab__Admin__Password"] = "correct horse battery", ["EmaLab__ApiToken"] = ServiceToken,
    }, async (service, _) =>
    {
        Console.WriteLine("== API calls with accounts: the service token, a user's personal token, the user's password (SQLite, server as a child process) ==");
        service.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ServiceToken);
        var experiment = (await TrackingBenchmarks.Post(service, "experiments/create", """{"name": "bench"}""")).GetProperty("experiment_id").GetString();
        await TrackingBenchmarks.Post(service, "users/create", $$"""{"username": "bob", "password": "{{Password}}"}""");
        await TrackingBenchmarks.Post(service, "experiments/permissions/create", $$"""{"experiment_id": "{{experiment}}", "username": "bob", "permission": "EDIT"}""");
        var runId = (await TrackingBenchmarks.Post(service, "runs/create", $$"""{"experiment_id": "{{experiment}}"}""")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var metrics = string.Join(",", Enumerable.Range(0, 30).Select(i => $$"""{"key": "loss", "value": {{1.0 / (i + 1)}}, "timestamp": {{i}}, "step": {{i}}}"""));
        await TrackingBenchmarks.Post(service, "runs/log-batch", $$"""{"run_id": "{{runId}}", "metrics": [{{metrics}}]}""");
        var number = JsonDocument.Parse(await service.GetStringAsync($"/api/runs?trackingId={runId}")).RootElement.GetProperty("items")[0].GetProperty("id").GetInt64();

        using var basic = new HttpClient { BaseAddress = service.BaseAddress };
        basic.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"bob:{Password}")));
        var created = await basic.PostAsync("/api/account/tokens", new StringContent("""{"name": "bench"}""", Encoding.UTF8, "application/json"));
        var secret = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("secret").GetString();
        using var token = new HttpClient { BaseAddress = service.BaseAddress };
        token.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);

        var step = 100;
        var calls = new (string Label, Func<HttpClient, Task> Call)[]
        {
            ($"GET /api/runs/{{id}}", c => Ok(c.GetAsync($"/api/runs/{number}"))),
            ("GET runs/get", c => Ok(c.GetAsync($"/api/2.0/mlflow/runs/get?run_id={runId}"))),
            ("POST runs/log-batch (10 metrics)", c => Ok(c.PostAsync("/api/2.0/mlflow/runs/log-batch", new StringContent(
                $$"""{"run_id": "{{runId}}", "metrics": [{{string.Join(",", Enumerable.Range(0, 10).Select(i => $$"""{"key": "acc", "value": 0.5, "timestamp": 1, "step": {{Interlocked.Increment(ref step)}}}"""))}}]}""",
                Encoding.UTF8, "application/json")))),
            ("GET /api/runs (a page of 50)", c => Ok(c.GetAsync("/api/runs?pageSize=50"))),
        };
        Console.WriteLine($"{"call",-34} {"service token",14} {"personal token",15} {"× service",10} {"password",12} {"× service",10}");
        foreach (var (label, call) in calls)
        {
            var clients = new[] { service, token, basic };
            foreach (var client in clients) await call(client); // warm
            var times = clients.Select(_ => new List<double>()).ToArray();
            for (var round = 0; round < Rounds; round++)
                for (var c = 0; c < clients.Length; c++)
                {
                    var clock = Stopwatch.StartNew();
                    await call(clients[c]);
                    times[c].Add(clock.Elapsed.TotalSeconds);
                }
            var median = times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray();
            Console.WriteLine($"{label,-34} {Timing.Us(median[0]),14} {Timing.Us(median[1]),15} {median[1] / median[0],9:F2}× {Timing.Us(median[2]),12} {median[2] / median[0],9:F2}×");
        }
        Console.WriteLine();
    });

    static async Task Ok(Task<HttpResponseMessage> call)
    {
        using var response = await call;
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{response.RequestMessage?.RequestUri}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        await response.Content.ReadAsByteArrayAsync();
    }
}
