using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

namespace EmaLab.Dashboard.Tests;

/// <summary>The real app in process, with a real SQLite file in a fresh temporary data directory.</summary>
public sealed class EmaLabFactory : WebApplicationFactory<Program>
{
    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("emalab-test-").FullName;
    public Dictionary<string, string?> Settings { get; } = new();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("EmaLab:DataDirectory", DataDirectory);
        builder.UseSetting("EmaLab:BundleEvery", "50");
        foreach (var (key, value) in Settings) builder.UseSetting(key, value);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(DataDirectory)) Directory.Delete(DataDirectory, recursive: true);
    }
}

/// <summary>Small helpers over the REST API, used by several tests.</summary>
static class Api
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static JsonObject DigitsRun(int steps = 200, double[]? decays = null, int evalInterval = 50) => new()
    {
        ["name"] = "test",
        ["dataset"] = "digits-8x8",
        ["model"] = "mlp",
        ["hidden"] = new JsonArray(64),
        ["optimizer"] = "adam",
        ["learningRate"] = 0.001,
        ["batchSize"] = 64,
        ["steps"] = steps,
        ["seed"] = 1,
        ["evalInterval"] = evalInterval,
        ["ema"] = new JsonObject { ["decays"] = new JsonArray((decays ?? [0.9, 0.99]).Select(d => (JsonNode)d).ToArray()) },
    };

    public static async Task<JsonElement> CreateAsync(HttpClient client, JsonObject body)
    {
        var response = await client.PostAsJsonAsync("/api/runs", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    public static async Task<JsonElement> GetAsync(HttpClient client, string url)
    {
        var response = await client.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {url}: {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>Polls the run until its status satisfies <paramref name="done"/>.</summary>
    public static async Task<JsonElement> WaitForAsync(HttpClient client, long id, Func<JsonElement, bool> done, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var run = await GetAsync(client, $"/api/runs/{id}");
            if (done(run)) return run;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {id} still {run.GetProperty("status")} at step {run.GetProperty("step")}");
            await Task.Delay(50);
        }
    }

    public static Task<JsonElement> WaitForFinishAsync(HttpClient client, long id) =>
        WaitForAsync(client, id, r => r.GetProperty("status").GetString() is not ("queued" or "running"));

    public static string Status(this JsonElement run) => run.GetProperty("status").GetString()!;
    public static long Id(this JsonElement run) => run.GetProperty("id").GetInt64();
}
