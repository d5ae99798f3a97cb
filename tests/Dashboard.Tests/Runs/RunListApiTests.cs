using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

public sealed class RunListApiTests(EmaLabFactory factory) : RunListApiSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests on PostgreSQL (the search lower-cases and matches text: both databases must agree).</summary>
[Trait("Speed", "Postgres")]
public sealed class RunListApiOnPostgresTests(PostgresEmaLabFactory factory) : RunListApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

/// <summary>Runs renamed, tagged and annotated through <c>PATCH /api/runs/{id}</c>, and found again with the list's filters.</summary>
public abstract class RunListApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    async Task<HttpResponseMessage> PatchAsync(long id, string json) =>
        await _client.PatchAsync($"/api/runs/{id}", Api.JsonBody(json));

    async Task<List<long>> IdsAsync(string query) =>
        (await Api.GetAsync(_client, $"/api/runs?pageSize=500&{query}")).GetProperty("items").EnumerateArray().Select(r => r.Id()).ToList();

    [Fact]
    public async Task Runs_are_renamed_tagged_and_annotated_and_the_tracking_api_sees_the_same()
    {
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 10, evalInterval: 5));
        var id = run.Id();
        var response = await PatchAsync(id, """{"name": "  Baseline Adam  ", "notes": "lr from the paper", "tags": {"baseline": "", "owner": "ana"}}""");
        var updated = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("Baseline Adam", updated.GetProperty("name").GetString());
        Assert.Equal("lr from the paper", updated.GetProperty("notes").GetString());
        Assert.Equal("""{"baseline":"","owner":"ana"}""", updated.GetProperty("tags").GetRawText());

        // A field left out stays; tags replace the run's own tags, system tags stay.
        await PatchAsync(id, """{"tags": {"owner": "ben"}}""");
        var again = await Api.GetAsync(_client, $"/api/runs/{id}");
        Assert.Equal(("Baseline Adam", "lr from the paper"), (again.GetProperty("name").GetString(), again.GetProperty("notes").GetString()));
        Assert.Equal("""{"owner":"ben"}""", again.GetProperty("tags").GetRawText());

        var mlflow = await Api.GetAsync(_client, $"/api/2.0/mlflow/runs/get?run_id={run.GetProperty("trackingId").GetString()}");
        var tags = mlflow.GetProperty("run").GetProperty("data").GetProperty("tags").EnumerateArray()
            .ToDictionary(t => t.GetProperty("key").GetString()!, t => t.GetProperty("value").GetString());
        Assert.Equal("ben", tags["owner"]);
        Assert.Equal("lr from the paper", tags["mlflow.note.content"]); // MLflow's notes tag

        await PatchAsync(id, """{"notes": ""}""");
        Assert.Equal(JsonValueKind.Null, (await Api.GetAsync(_client, $"/api/runs/{id}")).GetProperty("notes").ValueKind);
    }

    [Theory]
    [InlineData("""{"name": "   "}""", "name")]
    [InlineData("""{"tags": {"mlflow.user": "x"}}""", "tags.mlflow.user")]
    [InlineData("""{"tags": {"emalab.group": "x"}}""", "tags.emalab.group")]
    [InlineData("""{"tags": {"bad*name": ""}}""", "tags.bad*name")]
    [InlineData("""{"colour": "red"}""", "colour")]
    [InlineData("""{"name": 3}""", "name")]
    public async Task A_bad_update_is_refused_by_field_and_changes_nothing(string json, string field)
    {
        var id = (await Api.CreateAsync(_client, Api.DigitsRun(steps: 10, evalInterval: 5))).Id();
        await PatchAsync(id, """{"tags": {"keep": "1"}}""");
        var response = await PatchAsync(id, json);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.True(JsonDocument.Parse(text).RootElement.GetProperty("errors").TryGetProperty(field, out _), text);
        var run = await Api.GetAsync(_client, $"/api/runs/{id}");
        Assert.Equal(("test", """{"keep":"1"}"""), (run.GetProperty("name").GetString(), run.GetProperty("tags").GetRawText()));
        Assert.Equal(HttpStatusCode.NotFound, (await PatchAsync(999_999, """{"name": "x"}""")).StatusCode);
    }

    [Fact]
    public async Task The_list_finds_runs_by_name_dataset_model_group_and_tag_and_pages_beyond_its_page_size()
    {
        var marker = Guid.NewGuid().ToString("N")[..8];
        var digits = Api.DigitsRun(steps: 10, evalInterval: 5);
        digits["name"] = $"Search-{marker} digits";
        var mnist = Api.DigitsRun(steps: 10, evalInterval: 5);
        mnist["name"] = $"search-{marker} mnist";
        mnist["dataset"] = "mnist-10k";
        mnist["model"] = "cnn";
        mnist.Remove("hidden");
        mnist["group"] = $"g-{marker}";
        var a = (await Api.CreateAsync(_client, digits)).Id();
        var b = (await Api.CreateAsync(_client, mnist)).Id();
        await PatchAsync(a, new JsonObject { ["tags"] = new JsonObject { [$"t-{marker}"] = "", ["owner"] = "ana" } }.ToJsonString());

        Assert.Equal([b, a], await IdsAsync($"search=SEARCH-{marker}")); // case does not matter
        Assert.Equal([b], await IdsAsync($"search={marker}&dataset=mnist-10k"));
        Assert.Equal([a], await IdsAsync($"search={marker}&model=mlp"));
        Assert.Equal([b], await IdsAsync($"group=g-{marker}"));
        Assert.Equal([a], await IdsAsync($"tag=t-{marker}"));
        Assert.Equal([a], await IdsAsync($"search={marker}&tag=owner=ana"));
        Assert.Empty(await IdsAsync($"search={marker}&tag=owner=ben"));

        var first = await Api.GetAsync(_client, $"/api/runs?search={marker}&pageSize=1&page=1");
        var second = await Api.GetAsync(_client, $"/api/runs?search={marker}&pageSize=1&page=2");
        Assert.Equal(2, first.GetProperty("total").GetInt32());
        Assert.Equal([b, a], new[] { first, second }.Select(p => p.GetProperty("items")[0].Id()));
    }
}
