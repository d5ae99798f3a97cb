using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;

namespace EmaLab.Dashboard.Tests;

public sealed class ApiTokenTests : IDisposable
{
    readonly EmaLabFactory _factory = new() { Settings = { ["EmaLab:ApiToken"] = "s3cret" } };

    [Fact]
    public async Task Mutating_calls_need_the_token_when_one_is_set()
    {
        var client = _factory.CreateClient();
        var denied = await client.PostAsJsonAsync("/api/runs", Api.DigitsRun(steps: 5));
        Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        Assert.Equal(0, (await Api.GetAsync(client, "/api/runs")).GetProperty("total").GetInt32());

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.PostAsJsonAsync("/api/runs", Api.DigitsRun(steps: 5))).StatusCode);

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 5));
        Assert.Equal("completed", (await Api.WaitForFinishAsync(client, run.Id())).Status());

        // Reads stay open.
        client.DefaultRequestHeaders.Authorization = null;
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/runs/{run.Id()}/metrics")).StatusCode);
    }

    public void Dispose() => _factory.Dispose();
}
