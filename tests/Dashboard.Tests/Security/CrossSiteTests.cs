using System.Net;
using System.Net.Http.Json;
using System.Text;

namespace EmaLab.Dashboard.Tests;

/// <summary>With no token (the default), a web page the user visits must not be able to start, cancel or delete runs, nor read them by DNS rebinding.</summary>
public sealed class CrossSiteTests(EmaLabFactory factory) : IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    static HttpRequestMessage Post(string url, string? body, string? contentType, params (string, string)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, url);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
            if (contentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        return request;
    }

    [Fact]
    public async Task A_run_cannot_be_started_by_a_simple_cross_site_post()
    {
        var body = Api.DigitsRun(steps: 5).ToJsonString();
        var before = (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32();

        // The reproduction: no content type and another origin (once 201).
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(Post("/api/runs", body, null, ("Origin", "https://evil.example")))).StatusCode);
        // No content type, or a form's (what a page can send without a preflight): 415 whatever the origin.
        foreach (var type in new string?[] { null, "text/plain", "application/x-www-form-urlencoded" })
        {
            var response = await _client.SendAsync(Post("/api/runs", body, type));
            Assert.True(response.StatusCode == HttpStatusCode.UnsupportedMediaType, $"{type}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
        // JSON, but from another origin or site: 403.
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(Post("/api/runs", body, "application/json", ("Origin", "https://evil.example")))).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(Post("/api/runs", body, "application/json", ("Sec-Fetch-Site", "cross-site")))).StatusCode);
        Assert.Equal(before, (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32());

        // The server's own origin, and tools that send no Origin, are served.
        Assert.Equal(HttpStatusCode.Created, (await _client.SendAsync(Post("/api/runs", body, "application/json", ("Origin", "http://localhost"), ("Sec-Fetch-Site", "same-origin")))).StatusCode);
        Assert.Equal(HttpStatusCode.Created, (await _client.SendAsync(Post("/api/runs", body, "application/json; charset=utf-8"))).StatusCode);
    }

    [Fact]
    public async Task Cancel_delete_and_post_hoc_refuse_other_origins()
    {
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 5));
        await Api.WaitForFinishAsync(_client, run.Id());
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(Post($"/api/runs/{run.Id()}/cancel", null, null, ("Origin", "https://evil.example")))).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(Post($"/api/runs/{run.Id()}/clone", null, null, ("Sec-Fetch-Site", "same-site")))).StatusCode);
        var delete = new HttpRequestMessage(HttpMethod.Delete, $"/api/runs/{run.Id()}");
        delete.Headers.Add("Origin", "http://127.0.0.1.evil.example");
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(delete)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"/api/runs/{run.Id()}")).StatusCode);
    }

    [Fact]
    public async Task Only_loopback_host_names_are_answered_by_default()
    {
        var rebound = new HttpRequestMessage(HttpMethod.Get, "/api/runs");
        rebound.Headers.Host = "rebind.evil.example";
        Assert.Equal(HttpStatusCode.BadRequest, (await _client.SendAsync(rebound)).StatusCode);
        foreach (var host in new[] { "localhost", "127.0.0.1:5080", "[::1]:5080" })
        {
            var local = new HttpRequestMessage(HttpMethod.Get, "/api/runs");
            local.Headers.Host = host;
            Assert.Equal(HttpStatusCode.OK, (await _client.SendAsync(local)).StatusCode);
        }
    }
}
