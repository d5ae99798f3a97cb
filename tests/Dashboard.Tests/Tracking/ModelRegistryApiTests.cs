using System.Net;
using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// MLflow's model registry API with the bodies its client sends and the answers MLflow's server gives (each checked
/// against MLflow 3.11's own server first: shapes, messages, error codes), on SQLite and PostgreSQL.
/// </summary>
public sealed class ModelRegistryApiTests(EmaLabFactory factory) : ModelRegistryApiSuite(factory), IClassFixture<EmaLabFactory>;

[Trait("Speed", "Postgres")]
public sealed class ModelRegistryApiOnPostgresTests(PostgresEmaLabFactory factory) : ModelRegistryApiSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class ModelRegistryApiSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();
    const string Base = "/api/2.0/mlflow/";

    async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, string? json = null)
    {
        var request = new HttpRequestMessage(method, Base + path) { Content = json is null ? null : Api.JsonBody(json) };
        var response = await _client.SendAsync(request);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    Task<(HttpStatusCode, JsonElement)> PostAsync(string path, string json) => SendAsync(HttpMethod.Post, path, json);
    Task<(HttpStatusCode, JsonElement)> GetAsync(string path) => SendAsync(HttpMethod.Get, path);
    Task<(HttpStatusCode, JsonElement)> PatchAsync(string path, string json) => SendAsync(HttpMethod.Patch, path, json);
    Task<(HttpStatusCode, JsonElement)> DeleteAsync(string path, string json) => SendAsync(HttpMethod.Delete, path, json);

    static async Task<JsonElement> OkAsync(Task<(HttpStatusCode Status, JsonElement Body)> call)
    {
        var (status, body) = await call;
        Assert.True(status == HttpStatusCode.OK, $"{(int)status}: {body}");
        return body;
    }

    static async Task ErrorAsync(HttpStatusCode status, string code, Task<(HttpStatusCode Status, JsonElement Body)> call, string? message = null)
    {
        var answer = await call;
        Assert.True(answer.Status == status, $"{(int)answer.Status}: {answer.Body}");
        Assert.Equal(code, answer.Body.GetProperty("error_code").GetString());
        if (message is not null) Assert.Equal(message, answer.Body.GetProperty("message").GetString());
    }

    static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 9)];

    async Task<string> NewModelAsync(string? name = null)
    {
        name ??= Unique("model");
        await OkAsync(PostAsync("registered-models/create", $$"""{"name": "{{name}}"}"""));
        return name;
    }

    async Task<string> NewVersionAsync(string name, string source = "s3://bucket/model", string extra = "")
    {
        var created = await OkAsync(PostAsync("model-versions/create", $$"""{"name": "{{name}}", "source": "{{source}}"{{extra}}}"""));
        return created.GetProperty("model_version").GetProperty("version").GetString()!;
    }

    [Fact]
    public async Task A_registered_model_is_created_read_updated_renamed_and_deleted_with_MLflows_answers()
    {
        var name = Unique("fashion");
        var created = (await OkAsync(PostAsync("registered-models/create",
            $$"""{"name": "{{name}}", "tags": [{"key": "team", "value": "vision"}], "description": "the EMA we ship"}""")))
            .GetProperty("registered_model");
        Assert.Equal(name, created.GetProperty("name").GetString());
        Assert.Equal("the EMA we ship", created.GetProperty("description").GetString());
        Assert.Equal("vision", created.GetProperty("tags")[0].GetProperty("value").GetString());
        Assert.False(created.TryGetProperty("latest_versions", out _)); // empty lists are left out, as protobuf JSON does
        Assert.False(created.TryGetProperty("aliases", out _));
        Assert.Equal(created.GetProperty("creation_timestamp").GetInt64(), created.GetProperty("last_updated_timestamp").GetInt64());

        // MLflow's client creates the model before each log_model(registered_model_name=…) and reads this code as "exists".
        await ErrorAsync(HttpStatusCode.BadRequest, "RESOURCE_ALREADY_EXISTS", PostAsync("registered-models/create", $$"""{"name": "{{name}}"}"""),
            $"Registered Model (name={name}) already exists.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("registered-models/create", "{}"),
            "Missing value for required parameter 'name'. See the API docs for more information about request parameters.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("registered-models/create", """{"name": "a/b"}"""),
            "Invalid model name 'a/b'. Names cannot contain '/' or ':'.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("registered-models/create", """{"name": "  "}"""),
            "Missing value for required parameter 'name'.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("registered-models/create", """{"name": "x-bad-tag", "tags": [{"key": "", "value": "v"}]}"""));
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", GetAsync("registered-models/get?name=nope-" + name),
            $"Registered Model with name=nope-{name} not found");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync("registered-models/get"));
        // Nothing half-written: the refused models are not there.
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", GetAsync("registered-models/get?name=x-bad-tag"));

        var updated = (await OkAsync(PatchAsync("registered-models/update", $$"""{"name": "{{name}}", "description": "new words"}""")))
            .GetProperty("registered_model");
        Assert.Equal("new words", updated.GetProperty("description").GetString());
        await OkAsync(PostAsync("registered-models/set-tag", $$"""{"name": "{{name}}", "key": "stage", "value": "beta"}"""));
        await OkAsync(DeleteAsync("registered-models/delete-tag", $$"""{"name": "{{name}}", "key": "team"}"""));
        await OkAsync(DeleteAsync("registered-models/delete-tag", $$"""{"name": "{{name}}", "key": "absent"}""")); // MLflow ignores it
        var read = (await OkAsync(GetAsync($"registered-models/get?name={name}"))).GetProperty("registered_model");
        Assert.Equal(["stage"], read.GetProperty("tags").EnumerateArray().Select(t => t.GetProperty("key").GetString()));

        var version = await NewVersionAsync(name);
        await OkAsync(PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "champion", "version": "{{version}}"}"""));
        var other = await NewModelAsync();
        await ErrorAsync(HttpStatusCode.BadRequest, "RESOURCE_ALREADY_EXISTS",
            PostAsync("registered-models/rename", $$"""{"name": "{{other}}", "new_name": "{{name}}"}"""));
        var renamed = name + "-v2";
        var answer = (await OkAsync(PostAsync("registered-models/rename", $$"""{"name": "{{name}}", "new_name": "{{renamed}}"}""")))
            .GetProperty("registered_model");
        Assert.Equal(renamed, answer.GetProperty("latest_versions")[0].GetProperty("name").GetString());
        // The versions and aliases follow the new name; the old one is free.
        var byAlias = (await OkAsync(GetAsync($"registered-models/alias?name={renamed}&alias=champion"))).GetProperty("model_version");
        Assert.Equal(new[] { renamed, "1" }, new[] { byAlias.GetProperty("name").GetString(), byAlias.GetProperty("version").GetString() });
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", GetAsync($"registered-models/get?name={name}"));

        await OkAsync(DeleteAsync("registered-models/delete", $$"""{"name": "{{renamed}}"}"""));
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", DeleteAsync("registered-models/delete", $$"""{"name": "{{renamed}}"}"""),
            $"Registered Model with name={renamed} not found");
        // The name can be registered again, from version 1.
        await NewModelAsync(renamed);
        Assert.Equal("1", await NewVersionAsync(renamed));
    }

    [Fact]
    public async Task Versions_number_from_one_per_name_and_a_deleted_number_is_never_given_again()
    {
        var name = await NewModelAsync();
        var run = (await OkAsync(PostAsync("runs/create", """{"experiment_id": "0", "start_time": "1700000000000"}""")))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var first = (await OkAsync(PostAsync("model-versions/create", $$"""
            {"name": "{{name}}", "source": "runs:/{{run}}/model", "run_id": "{{run}}", "tags": [{"key": "k", "value": "1"}], "description": "first"}
            """))).GetProperty("model_version");
        Assert.Equal("1", first.GetProperty("version").GetString());
        Assert.Equal("None", first.GetProperty("current_stage").GetString());
        Assert.Equal("READY", first.GetProperty("status").GetString());
        Assert.Equal(run, first.GetProperty("run_id").GetString());
        Assert.Equal("", first.GetProperty("run_link").GetString()); // unset strings are "", as MLflow's server writes them

        var second = (await OkAsync(PostAsync("model-versions/create", $$"""{"name": "{{name}}", "source": "s3://b/k"}"""))).GetProperty("model_version");
        Assert.Equal(new[] { "2", "", "" }, new[] { second.GetProperty("version").GetString(), second.GetProperty("run_id").GetString(),
            second.GetProperty("description").GetString() });
        Assert.Equal("3", await NewVersionAsync(name));

        await OkAsync(DeleteAsync("model-versions/delete", $$"""{"name": "{{name}}", "version": "3"}"""));
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", GetAsync($"model-versions/get?name={name}&version=3"),
            $"Model Version (name={name}, version=3) not found");
        Assert.Equal("4", await NewVersionAsync(name));
        var versions = (await OkAsync(GetAsync($"model-versions/search?filter=name%3D%27{name}%27"))).GetProperty("model_versions");
        Assert.Equal(["4", "2", "1"], versions.EnumerateArray().Select(v => v.GetProperty("version").GetString()));

        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync($"model-versions/get?name={name}&version=x"),
            "Parameter 'version' must be an integer, got 'x'.");
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", PostAsync("model-versions/create", """{"name": "no-such-model", "source": "s3://b"}"""));
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("model-versions/create", $$"""{"name": "{{name}}"}"""),
            "Missing value for required parameter 'source'. See the API docs for more information about request parameters.");
        // A server whose artifacts are proxied takes no local path and no relative reference as a source (MLflow's check).
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("model-versions/create", $$"""{"name": "{{name}}", "source": "/etc/passwd"}"""));
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("model-versions/create", $$"""{"name": "{{name}}", "source": "mlflow-artifacts:/%2e%2e/%2e%2e/x"}"""));
        Assert.Equal("5", await NewVersionAsync(name)); // the refusals took no number

        var edited = (await OkAsync(PatchAsync("model-versions/update", $$"""{"name": "{{name}}", "version": "2", "description": "second"}""")))
            .GetProperty("model_version");
        Assert.Equal("second", edited.GetProperty("description").GetString());
        await OkAsync(PostAsync("model-versions/set-tag", $$"""{"name": "{{name}}", "version": "2", "key": "quality", "value": "good"}"""));
        var tagged = (await OkAsync(GetAsync($"model-versions/get?name={name}&version=2"))).GetProperty("model_version");
        Assert.Equal("good", tagged.GetProperty("tags")[0].GetProperty("value").GetString());
        await OkAsync(DeleteAsync("model-versions/delete-tag", $$"""{"name": "{{name}}", "version": "2", "key": "quality"}"""));
        Assert.False((await OkAsync(GetAsync($"model-versions/get?name={name}&version=2"))).GetProperty("model_version").TryGetProperty("tags", out _));
        Assert.Equal("s3://b/k", (await OkAsync(GetAsync($"model-versions/get-download-uri?name={name}&version=2"))).GetProperty("artifact_uri").GetString());
    }

    [Fact]
    public async Task Versions_registered_at_once_get_distinct_numbers()
    {
        var name = await NewModelAsync();
        var numbers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => NewVersionAsync(name)));
        Assert.Equal(Enumerable.Range(1, 8).Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)), numbers.Order());
    }

    [Fact]
    public async Task An_alias_moves_in_one_step_resolves_and_goes_with_its_version()
    {
        var name = await NewModelAsync();
        await NewVersionAsync(name, "s3://b/one");
        await NewVersionAsync(name, "s3://b/two");
        await OkAsync(PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "champion", "version": "1"}"""));
        await OkAsync(PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "champion", "version": "2"}"""));
        var champion = (await OkAsync(GetAsync($"registered-models/alias?name={name}&alias=champion"))).GetProperty("model_version");
        Assert.Equal("2", champion.GetProperty("version").GetString());
        Assert.Equal(["champion"], champion.GetProperty("aliases").EnumerateArray().Select(a => a.GetString()));
        var model = (await OkAsync(GetAsync($"registered-models/get?name={name}"))).GetProperty("registered_model");
        Assert.Equal("""[{"alias":"champion","version":"2"}]""", model.GetProperty("aliases").GetRawText().Replace(" ", ""));
        Assert.Equal("2", (await OkAsync(GetAsync($"registered-models/alias?name={name}&alias=latest"))).GetProperty("model_version")
            .GetProperty("version").GetString());

        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "Latest", "version": "1"}"""), "'latest' alias name (case insensitive) is reserved.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "v3", "version": "1"}"""), "Version alias name 'v3' is reserved.");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "a b", "version": "1"}"""),
            "Invalid alias name: 'a b'. Names may only contain alphanumerics, underscores (_), and dashes (-).");
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST",
            PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "ok", "version": "7"}"""), $"Model Version (name={name}, version=7) not found");
        // MLflow answers an unknown alias with INVALID_PARAMETER_VALUE (400), not 404.
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync($"registered-models/alias?name={name}&alias=none"),
            "Registered model alias none not found.");

        // Parallel moves leave exactly one row: the alias names one of the versions.
        await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            OkAsync(PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "racing", "version": "{{1 + i % 2}}"}"""))));
        var racing = (await OkAsync(GetAsync($"registered-models/get?name={name}"))).GetProperty("registered_model").GetProperty("aliases")
            .EnumerateArray().Where(a => a.GetProperty("alias").GetString() == "racing").ToList();
        Assert.Single(racing);

        // Deleting the version takes its aliases; deleting an alias twice is fine.
        await OkAsync(DeleteAsync("model-versions/delete", $$"""{"name": "{{name}}", "version": "2"}"""));
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync($"registered-models/alias?name={name}&alias=champion"));
        await OkAsync(DeleteAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "racing"}"""));
        await OkAsync(DeleteAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "racing"}"""));
    }

    [Fact]
    public async Task Stages_move_for_older_clients_and_the_latest_version_of_each_stage_is_listed()
    {
        var name = await NewModelAsync();
        await NewVersionAsync(name);
        await NewVersionAsync(name);
        await NewVersionAsync(name);
        var moved = (await OkAsync(PostAsync("model-versions/transition-stage",
            $$"""{"name": "{{name}}", "version": "1", "stage": "production", "archive_existing_versions": false}"""))).GetProperty("model_version");
        Assert.Equal("Production", moved.GetProperty("current_stage").GetString());
        await OkAsync(PostAsync("model-versions/transition-stage",
            $$"""{"name": "{{name}}", "version": "2", "stage": "Production", "archive_existing_versions": true}"""));
        Assert.Equal("Archived", (await OkAsync(GetAsync($"model-versions/get?name={name}&version=1"))).GetProperty("model_version")
            .GetProperty("current_stage").GetString());
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("model-versions/transition-stage",
            $$"""{"name": "{{name}}", "version": "2", "stage": "bogus", "archive_existing_versions": false}"""),
            "Invalid Model Version stage: bogus. Value must be one of None, Staging, Production, Archived.");
        // MLflow's server answers this one with a 500, which its client retries for minutes: a client's mistake gets a 400.
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", PostAsync("model-versions/transition-stage",
            $$"""{"name": "{{name}}", "version": "2", "stage": "None", "archive_existing_versions": true}"""));

        var latest = (await OkAsync(PostAsync("registered-models/get-latest-versions", $$"""{"name": "{{name}}"}"""))).GetProperty("model_versions");
        Assert.Equal(["1:Archived", "2:Production", "3:None"], latest.EnumerateArray()
            .Select(v => $"{v.GetProperty("version").GetString()}:{v.GetProperty("current_stage").GetString()}"));
        var production = (await OkAsync(GetAsync($"registered-models/get-latest-versions?name={name}&stages=production"))).GetProperty("model_versions");
        Assert.Equal(["2"], production.EnumerateArray().Select(v => v.GetProperty("version").GetString()));
    }

    [Fact]
    public async Task Searches_filter_order_and_page_as_MLflows_do()
    {
        var prefix = Unique("srch");
        foreach (var suffix in new[] { "b", "a", "c" })
        {
            var name = await NewModelAsync($"{prefix}-{suffix}");
            await OkAsync(PostAsync("registered-models/set-tag", $$"""{"name": "{{name}}", "key": "team", "value": "{{(suffix == "c" ? "audio" : "vision")}}"}"""));
            await NewVersionAsync(name, $"s3://b/{suffix}");
        }
        // MLflow 3's client adds the prompt filter to every registered-model search: models without the tag match it.
        var filter = Uri.EscapeDataString($"name LIKE '{prefix}-%' AND tags.`mlflow.prompt.is_prompt` != 'true'");
        var all = (await OkAsync(GetAsync($"registered-models/search?filter={filter}"))).GetProperty("registered_models");
        Assert.Equal([$"{prefix}-a", $"{prefix}-b", $"{prefix}-c"], all.EnumerateArray().Select(m => m.GetProperty("name").GetString()));
        var vision = (await OkAsync(GetAsync($"registered-models/search?filter={Uri.EscapeDataString($"name ILIKE '{prefix.ToUpperInvariant()}%' AND tags.team = 'vision'")}&order_by=name%20DESC")))
            .GetProperty("registered_models");
        Assert.Equal([$"{prefix}-b", $"{prefix}-a"], vision.EnumerateArray().Select(m => m.GetProperty("name").GetString()));

        var pages = new List<string>();
        string? token = null;
        do
        {
            var page = await OkAsync(GetAsync($"registered-models/search?filter={filter}&max_results=2" + (token is null ? "" : $"&page_token={token}")));
            pages.Add(string.Join(",", page.GetProperty("registered_models").EnumerateArray().Select(m => m.GetProperty("name").GetString()![^1..])));
            token = page.TryGetProperty("next_page_token", out var next) ? next.GetString() : null;
        } while (token is not null);
        Assert.Equal(["a,b", "c"], pages);

        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync("registered-models/search?max_results=1001"));
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync("registered-models/search?order_by=bogus"),
            "Invalid order by key 'bogus' specified. Valid keys are '{'timestamp', 'name'}'");
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync("registered-models/search?filter=version_number%3D1"),
            "Invalid attribute key 'version_number' specified. Valid keys are '{'name'}'");

        var versions = (await OkAsync(GetAsync($"model-versions/search?filter={Uri.EscapeDataString($"name LIKE '{prefix}-%' AND source_path != 's3://b/c'")}&order_by=name%20ASC")))
            .GetProperty("model_versions");
        Assert.Equal([$"{prefix}-a", $"{prefix}-b"], versions.EnumerateArray().Select(v => v.GetProperty("name").GetString()));
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE", GetAsync("model-versions/search?filter=description%3D%27x%27"));
    }

    [Fact]
    public async Task A_logged_model_is_promoted_by_its_models_uri_and_its_metrics_are_kept()
    {
        var experiment = (await OkAsync(PostAsync("experiments/create", $$"""{"name": "{{Unique("promote")}}"}"""))).GetProperty("experiment_id").GetString()!;
        var run = (await OkAsync(PostAsync("runs/create", $$"""{"experiment_id": "{{experiment}}", "start_time": "1700000000000"}""")))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var model = (await OkAsync(PostAsync("logged-models", $$"""{"experiment_id": "{{experiment}}", "name": "ema_model", "source_run_id": "{{run}}"}""")))
            .GetProperty("model");
        var modelId = model.GetProperty("info").GetProperty("model_id").GetString()!;
        var artifactUri = model.GetProperty("info").GetProperty("artifact_uri").GetString()!;

        // MLflow 3 links an evaluation metric to the model it scored (log-metric and log-batch alike).
        await OkAsync(PostAsync("runs/log-metric", $$"""
            {"run_id": "{{run}}", "key": "eval_acc", "value": 0.91, "timestamp": "1700000000001", "step": "3", "model_id": "{{modelId}}",
             "dataset_name": "digits", "dataset_digest": "abc123"}
            """));
        var metrics = (await OkAsync(GetAsync($"logged-models/{modelId}"))).GetProperty("model").GetProperty("data").GetProperty("metrics");
        var metric = Assert.Single(metrics.EnumerateArray());
        Assert.Equal(new[] { "eval_acc", "digits", "abc123", run }, new[] { metric.GetProperty("key").GetString(), metric.GetProperty("dataset_name").GetString(),
            metric.GetProperty("dataset_digest").GetString(), metric.GetProperty("run_id").GetString() });
        var found = (await OkAsync(PostAsync("logged-models/search", $$"""{"experiment_ids": ["{{experiment}}"], "filter": "metrics.eval_acc > 0.9"}""")))
            .GetProperty("models");
        Assert.Equal([modelId], found.EnumerateArray().Select(m => m.GetProperty("info").GetProperty("model_id").GetString()));

        var name = await NewModelAsync();
        var version = (await OkAsync(PostAsync("model-versions/create", $$"""{"name": "{{name}}", "source": "models:/{{modelId}}", "model_id": "{{modelId}}"}""")))
            .GetProperty("model_version");
        Assert.Equal(run, version.GetProperty("run_id").GetString()); // the logged model's run
        Assert.Equal(modelId, version.GetProperty("model_id").GetString());
        Assert.Equal(artifactUri, (await OkAsync(GetAsync($"model-versions/get-download-uri?name={name}&version=1"))).GetProperty("artifact_uri").GetString());
        // The logged model lists the versions that promote it (MLflow's server writes the tag).
        var tags = (await OkAsync(GetAsync($"logged-models/{modelId}"))).GetProperty("model").GetProperty("info").GetProperty("tags");
        var versionsTag = tags.EnumerateArray().Single(t => t.GetProperty("key").GetString() == "mlflow.modelVersions").GetProperty("value").GetString();
        Assert.Equal($$"""[{"name": "{{name}}", "version": 1}]""", versionsTag);

        // models:/name/1 and models:/name@alias point at that version's files.
        await OkAsync(PostAsync("registered-models/alias", $$"""{"name": "{{name}}", "alias": "champion", "version": "1"}"""));
        var copy = await NewModelAsync();
        await NewVersionAsync(copy, $"models:/{name}@champion");
        Assert.Equal(artifactUri, (await OkAsync(GetAsync($"model-versions/get-download-uri?name={copy}&version=1"))).GetProperty("artifact_uri").GetString());
        await ErrorAsync(HttpStatusCode.BadRequest, "INVALID_PARAMETER_VALUE",
            PostAsync("model-versions/create", $$"""{"name": "{{copy}}", "source": "models:/{{name}}/9"}"""));
        // A metric naming a model that does not exist is refused whole.
        await ErrorAsync(HttpStatusCode.NotFound, "RESOURCE_DOES_NOT_EXIST", PostAsync("runs/log-metric", $$"""
            {"run_id": "{{run}}", "key": "eval_acc", "value": 0.5, "timestamp": "1700000000002", "model_id": "m-00000000000000000000000000000000"}
            """));
    }
}
