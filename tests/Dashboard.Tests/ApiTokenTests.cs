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

    [Fact]
    public async Task Pages_ask_for_the_token_once_and_remember_it()
    {
        var client = _factory.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var page = await client.GetAsync("/runs/new");
        Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
        Assert.Equal("/login?returnUrl=%2Fruns%2Fnew", page.Headers.Location!.OriginalString);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/_blazor/negotiate")).StatusCode);

        var wrong = await client.PostAsync("/login", new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = "nope", ["returnUrl"] = "/runs/new" }));
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Contains("That is not the token.", await wrong.Content.ReadAsStringAsync());

        // An absolute return address is not followed (no open redirect).
        var right = await client.PostAsync("/login", new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = "s3cret", ["returnUrl"] = "https://evil.example/" }));
        Assert.Equal(HttpStatusCode.Redirect, right.StatusCode);
        Assert.Equal("/", right.Headers.Location!.OriginalString);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/runs/new")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task Without_a_token_pages_are_open()
    {
        using var open = new EmaLabFactory();
        var client = open.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/runs/new")).StatusCode);
    }

    public void Dispose() => _factory.Dispose();
}
