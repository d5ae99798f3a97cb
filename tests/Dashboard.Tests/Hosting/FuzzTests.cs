using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// Seeded random mutations of valid requests to the run, clone, post-hoc, group preview, run update and query endpoints: whatever arrives,
/// the answer is never a 5xx, and a refused body is answered with problem details.
/// </summary>
public sealed class FuzzTests(EmaLabFactory factory) : IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    static readonly JsonNode?[] Oddities =
    [
        null, true, false, 0, -1, 1e308, -1e-320, 0.5, 1.5, long.MaxValue, "", "x", "NaN", "Infinity", "mlp", "cnn", "adam", "sgd",
        new JsonArray(), new JsonArray(0.9), new JsonArray(null, "a"), new JsonArray(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
        new JsonObject(), new JsonObject { ["decays"] = null }, new JsonObject { ["sigmaRels"] = new JsonArray(0.05) }, new string('a', 300),
    ];

    [Fact]
    public async Task Mutated_bodies_and_queries_never_get_a_5xx()
    {
        var random = new Random(20261125);
        var seed = Api.DigitsRun(steps: 3, evalInterval: 3);
        seed["postHoc"] = new JsonObject { ["sigmaRels"] = new JsonArray(0.05, 0.1), ["snapshotEvery"] = 1 };
        var finished = await Api.CreateAsync(_client, seed);
        await Api.WaitForFinishAsync(_client, finished.Id());

        var failures = new List<string>();
        for (var i = 0; i < 600; i++)
        {
            var (method, url, body) = (i % 6) switch
            {
                0 => (HttpMethod.Post, "/api/runs", Mutate(Api.DigitsRun(steps: 3, evalInterval: 3), random)),
                1 => (HttpMethod.Post, $"/api/runs/{finished.Id()}/clone", Mutate(new JsonObject { ["ema"] = new JsonObject { ["decays"] = new JsonArray(0.5) } }, random)),
                2 => (HttpMethod.Post, $"/api/runs/{finished.Id()}/posthoc", Mutate(new JsonObject { ["sigmaRel"] = 0.1 }, random)),
                3 => (HttpMethod.Post, "/api/groups/preview", Mutate(Grid(), random)),
                4 => (HttpMethod.Patch, $"/api/runs/{finished.Id()}", Mutate(new JsonObject { ["name"] = "fuzzed", ["notes"] = "n", ["tags"] = new JsonObject { ["a"] = "b" } }, random)),
                _ => (HttpMethod.Get, RandomQuery(finished.Id(), random), null),
            };
            var request = new HttpRequestMessage(method, url);
            if (body is not null) request.Content = new ByteArrayContent(body) { Headers = { ContentType = new("application/json") } };
            using var response = await _client.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            if ((int)response.StatusCode >= 500) failures.Add($"{method} {url} {(body is null ? "" : Encoding.UTF8.GetString(body))} → {(int)response.StatusCode} {text}");
            else if (response.StatusCode == HttpStatusCode.BadRequest && response.Content.Headers.ContentType?.MediaType != "application/problem+json")
                failures.Add($"{method} {url}: 400 without problem details: {text}");
            // Created runs are cancelled right away: the fuzz is about answers, not training.
            if (response.StatusCode == HttpStatusCode.Created && System.Text.Json.JsonDocument.Parse(text).RootElement.TryGetProperty("id", out var id))
                await _client.PostAsync($"/api/runs/{id.GetInt64()}/cancel", null);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    /// <summary>A small grid: two lists become axes (previewed, so the fuzz creates no group).</summary>
    static JsonObject Grid()
    {
        var body = Api.DigitsRun(steps: 3, evalInterval: 3);
        body["seed"] = new JsonArray(1, 2);
        body["learningRate"] = new JsonArray(0.001, 0.002);
        return body;
    }

    static byte[] Mutate(JsonObject body, Random random)
    {
        var mutations = random.Next(1, 4);
        for (var m = 0; m < mutations; m++)
        {
            var target = PickObject(body, random);
            var keys = target.Select(p => p.Key).ToList();
            switch (random.Next(4))
            {
                case 0 when keys.Count > 0: target.Remove(keys[random.Next(keys.Count)]); break;
                case 1 when keys.Count > 0: target[keys[random.Next(keys.Count)]] = Oddities[random.Next(Oddities.Length)]?.DeepClone(); break;
                case 2: target["f" + random.Next(100)] = Oddities[random.Next(Oddities.Length)]?.DeepClone(); break;
                default: break;
            }
        }
        var bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
        // Sometimes raw byte damage: not UTF-8, truncated, or garbage.
        switch (random.Next(8))
        {
            case 0: bytes[random.Next(bytes.Length)] = (byte)random.Next(0x80, 0x100); break;
            case 1: bytes = bytes[..random.Next(bytes.Length)]; break;
            case 2: random.NextBytes(bytes); break;
        }
        return bytes;
    }

    static JsonObject PickObject(JsonObject root, Random random)
    {
        var nested = root.Select(p => p.Value).OfType<JsonObject>().ToList();
        return nested.Count > 0 && random.Next(3) == 0 ? nested[random.Next(nested.Count)] : root;
    }

    static string RandomQuery(long id, Random random)
    {
        string[] values = ["", "0", "-1", "1", "10", "2147483647", "99999999999", "abc", "%00", "1e3", "NaN", "running", "RUNNING", "raw", "train/loss"];
        string V() => values[random.Next(values.Length)];
        return random.Next(7) switch
        {
            0 => $"/api/runs?page={V()}&pageSize={V()}&status={V()}",
            5 => $"/api/runs?search={V()}&dataset={V()}&model={V()}&group={V()}&tag={V()}=&experiment={V()}",
            6 => $"/api/groups/{Uri.EscapeDataString(V())}?experiment={V()}&metric={V()}",
            1 => $"/api/runs/{id}/metrics?key={V()}&track={V()}&maxPoints={V()}",
            2 => $"/api/runs/{Uri.EscapeDataString(values[random.Next(values.Length)].Replace("%00", "x"))}",
            3 => $"/api/runs/{id}/posthoc?x={V()}",
            _ => $"/api/runs/{id}/metrics?maxPoints={V()}",
        };
    }
}
