using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Runs;
using Microsoft.AspNetCore.Components;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>The pages for experimenting — group form, group page, runs list filters, notes and tags — with bUnit against a real app (real runs, real SQLite).</summary>
public sealed class ExperimentPageTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    void UseAppServices() => PageServices.Use(this, factory.Services);

    [Fact]
    public async Task The_group_form_previews_the_cross_product_refuses_bad_lists_by_field_and_launches_the_group()
    {
        UseAppServices();
        var before = (await Api.GetAsync(_client, "/api/runs?pageSize=1")).GetProperty("total").GetInt32();
        var navigation = Services.GetRequiredService<NavigationManager>();
        navigation.NavigateTo("runs/new?group=true");
        var cut = Render<NewRun>();
        Assert.Equal("New group", cut.Find("h1").TextContent);
        cut.Find("#name").Change("form grid");
        cut.Find("#dataset").Change("digits-8x8");
        cut.Find("#steps").Change("40");
        cut.Find("#evalInterval").Change("20");
        cut.Find("#learningRateWarmup").Change("0");
        cut.Find("#checkpointEvery").Change("");
        cut.Find("#postHoc").Change(false);
        cut.Find("#seed").Change("1-3");
        Assert.StartsWith("3 runs, 120 steps in all (3 seed)", cut.Find("[data-testid=group-preview]").TextContent.Trim());

        cut.Find("#learningRate").Change("0.001, 0.003");
        Assert.StartsWith("6 runs, 240 steps in all (2 learningRate × 3 seed)", cut.Find("[data-testid=group-preview]").TextContent.Trim());
        Assert.Equal("Start 6 runs", cut.Find("#start").TextContent);

        cut.Find("#seed").Change("1-x");
        cut.Find("form").Submit();
        Assert.Equal("'1-x' is not a seed or a range such as 1-5.", cut.Find("#seed").ParentElement!.QuerySelector(".field-error")!.TextContent);
        cut.Find("#seed").Change("1, 2");
        cut.Find("[data-testid=optimizers] input[value=adam]").Change(false);
        cut.Find("form").Submit();
        Assert.Contains("'optimizer' lists no values", cut.Find("[data-testid=optimizers]").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.Equal(before, (await Api.GetAsync(_client, "/api/runs?pageSize=1")).GetProperty("total").GetInt32());

        cut.Find("[data-testid=optimizers] input[value=sgd]").Change(true);
        cut.Find("[data-testid=models] input[value=mlp]").Change(true);
        cut.Find("[data-testid=models] input[value=resnet]").Change(false);
        Assert.StartsWith("4 runs", cut.Find("[data-testid=group-preview]").TextContent.Trim());
        cut.Find("form").Submit();
        cut.WaitForAssertion(() => Assert.EndsWith("groups/form%20grid?experiment=0", navigation.Uri));
        var group = await Api.GetAsync(_client, "/api/groups/form%20grid");
        var runs = group.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(4, runs.Count);
        var spec = (await Api.GetAsync(_client, $"/api/runs/{runs[3].GetProperty("id").GetInt64()}")).GetProperty("spec");
        Assert.Equal(("mlp", "sgd", 0.003, 2), (spec.GetProperty("model").GetString(), spec.GetProperty("optimizer").GetString(), spec.GetProperty("learningRate").GetDouble(), spec.GetProperty("seed").GetInt32()));
    }

    [Fact]
    public async Task The_group_page_shows_each_configuration_with_the_verdicts_and_statistics_of_the_api()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 40, evalInterval: 20);
        body["name"] = "page seeds";
        body["seed"] = new JsonArray(1, 2, 3);
        var created = await (await _client.PostAsJsonAsync("/api/groups", body)).Content.ReadFromJsonAsync<JsonElement>();
        foreach (var id in created.GetProperty("runIds").EnumerateArray()) await Api.WaitForFinishAsync(_client, id.GetInt64());
        var api = (await Api.GetAsync(_client, "/api/groups/page%20seeds")).GetProperty("configurations")[0];

        var cut = Render<GroupDetail>(p => p.Add(c => c.Name, "page seeds"));
        cut.WaitForAssertion(() => Assert.Single(cut.FindAll("[data-testid=configuration]")));
        Assert.Contains("3 runs · 1 configuration · 3 completed", cut.Find("[data-testid=group-summary]").TextContent);
        var verdicts = cut.FindAll("[data-testid=verdicts] li");
        Assert.Equal(["ema-0.9", "ema-0.99"], verdicts.Select(v => v.GetAttribute("data-track")));
        var apiVerdicts = api.GetProperty("tracks").EnumerateArray().Skip(1).Select(t => t.GetProperty("verdict").GetString()).ToList();
        Assert.Equal(apiVerdicts, verdicts.Select(v => v.TextContent.Trim()));
        Assert.Contains(api.GetProperty("bestTrack").GetString()!, cut.Find("[data-testid=best-track]").TextContent);
        var rows = cut.FindAll("[data-testid=group-table] tbody tr");
        Assert.Equal(3, rows.Count);
        var rawFinal = api.GetProperty("tracks")[0].GetProperty("final");
        Assert.Contains($"{rawFinal.GetProperty("mean").GetDouble() * 100:0.00} % ± {rawFinal.GetProperty("confidenceHalfWidth").GetDouble() * 100:0.00}", rows[0].TextContent);
        Assert.Equal(3, cut.FindAll("[data-testid=group-runs] tbody tr").Count);
        Assert.Empty(cut.FindAll("[data-testid=group-posthoc]")); // the runs took no post-hoc snapshots

        // Judged on the loss instead, lower is better and the gaps read in loss units.
        cut.Find("#metric").Change("loss");
        Assert.All(cut.FindAll("[data-testid=verdicts] li"), v => Assert.DoesNotContain(" pt ", v.TextContent));
    }

    [Fact]
    public async Task The_runs_list_filters_by_name_and_tag_keeps_them_in_the_address_and_compares_the_runs_checked()
    {
        UseAppServices();
        var marker = Guid.NewGuid().ToString("N")[..8];
        var body = Api.DigitsRun(steps: 10, evalInterval: 5);
        body["name"] = $"list-{marker} a";
        var a = (await Api.CreateAsync(_client, body)).Id();
        body["name"] = $"list-{marker} b";
        var b = (await Api.CreateAsync(_client, body)).Id();
        await _client.PatchAsync($"/api/runs/{b}", Api.JsonBody("""{"tags": {"keeper": ""}}"""));
        // Finished first: a status change reloads the list live, and a reload between finding a checkbox and ticking it would lose the tick.
        foreach (var id in new[] { a, b }) await Api.WaitForFinishAsync(_client, id);

        var navigation = Services.GetRequiredService<NavigationManager>();
        var cut = Render<RunsList>();
        cut.Find("#search").Change($"LIST-{marker}");
        cut.WaitForAssertion(() => Assert.Equal([b, a], cut.FindAll("tr[data-run-id]").Select(r => long.Parse(r.GetAttribute("data-run-id")!))));
        Assert.Contains($"q=LIST-{marker}", navigation.Uri);
        Assert.Equal("2 runs", cut.Find("[data-testid=run-count]").TextContent);
        Assert.Contains("keeper", cut.Find($"tr[data-run-id='{b}']").TextContent);

        cut.Find("#filter-tag").Change("keeper");
        cut.WaitForAssertion(() => Assert.Equal([b], cut.FindAll("tr[data-run-id]").Select(r => long.Parse(r.GetAttribute("data-run-id")!))));
        cut.Find("#filter-tag").Change("");
        cut.WaitForAssertion(() => Assert.Equal(2, cut.FindAll("tr[data-run-id]").Count));

        Assert.Empty(cut.FindAll("#compare-selected"));
        cut.Find($"tr[data-run-id='{a}'] td.select input").Change(true);
        cut.WaitForAssertion(() => Assert.Equal($"compare?runs={a}", cut.Find("#compare-selected").GetAttribute("href")));
        cut.Find($"tr[data-run-id='{b}'] td.select input").Change(true);
        cut.WaitForAssertion(() => Assert.Equal($"compare?runs={a},{b}", cut.Find("#compare-selected").GetAttribute("href")));
        Assert.Equal("Compare 2", cut.Find("#compare-selected").TextContent);
    }

    [Fact]
    public async Task A_run_is_renamed_annotated_and_tagged_on_its_page_and_bad_tags_are_named_by_the_field()
    {
        UseAppServices();
        var id = (await Api.CreateAsync(_client, Api.DigitsRun(steps: 10, evalInterval: 5))).Id();
        await Api.WaitForFinishAsync(_client, id);
        var cut = Render<RunDetail>(p => p.Add(c => c.Id, id));
        cut.WaitForAssertion(() => cut.Find("[data-testid=annotations]"));

        cut.Find("#rename-run").Click();
        cut.Find("#rename").Change("renamed on the page");
        cut.Find("#save-name").Click();
        cut.Find("#notes").Input("EMA 0.99 looks best here");
        cut.Find("#save-notes").Click();
        cut.Find("#new-tag").Change("owner=ana");
        cut.Find("#add-tag").Click();
        cut.Find("#new-tag").Change("mlflow.user=x");
        cut.Find("#add-tag").Click();
        Assert.Contains("is the system's", cut.Find("[data-field='tags.mlflow.user']").TextContent);

        var run = await Api.GetAsync(_client, $"/api/runs/{id}");
        Assert.Equal("renamed on the page", run.GetProperty("name").GetString());
        Assert.Equal("EMA 0.99 looks best here", run.GetProperty("notes").GetString());
        Assert.Equal("""{"owner":"ana"}""", run.GetProperty("tags").GetRawText());

        cut.Find("[data-tag=owner] button.remove").Click();
        Assert.Equal("{}", (await Api.GetAsync(_client, $"/api/runs/{id}")).GetProperty("tags").GetRawText());
    }

    [Fact]
    public async Task A_clients_logged_models_are_listed_on_its_page_beside_their_tracks_with_weights_to_download()
    {
        UseAppServices();
        async Task<JsonElement> Post(string path, string json)
        {
            var response = await _client.PostAsync("/api/2.0/mlflow/" + path, Api.JsonBody(json));
            var body = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.True(response.IsSuccessStatusCode, body.ToString());
            return body;
        }
        // A script that logs val_acc and val_acc_ema (one EMA track), then log_model of the raw and the EMA model.
        var run = (await Post("runs/create", """{"experiment_id": "0", "run_name": "logged-models", "tags": [{"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]}"""))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        await Post("runs/log-batch", $$"""{"run_id": "{{run}}", "metrics": [{"key": "val_acc", "value": 0.9, "timestamp": 1, "step": 10}, {"key": "val_acc_ema", "value": 0.93, "timestamp": 1, "step": 10}]}""");
        var weights = new Dictionary<string, byte[]>();
        foreach (var name in new[] { "model", "ema" })
        {
            var id = (await Post("logged-models", $$"""{"experiment_id": "0", "name": "{{name}}", "source_run_id": "{{run}}", "model_type": "pytorch"}"""))
                .GetProperty("model").GetProperty("info").GetProperty("model_id").GetString()!;
            await Post("runs/outputs", $$"""{"run_id": "{{run}}", "models": [{"model_id": "{{id}}", "step": "10"}]}""");
            weights[name] = [.. Enumerable.Range(0, 2048).Select(i => (byte)(i * (name == "ema" ? 3 : 5)))];
            var root = $"/api/2.0/mlflow-artifacts/artifacts/0/models/{id}/artifacts";
            (await _client.PutAsync($"{root}/MLmodel", new ByteArrayContent("flavors: {}\n"u8.ToArray()))).EnsureSuccessStatusCode();
            (await _client.PutAsync($"{root}/data/model.pth", new ByteArrayContent(weights[name]))).EnsureSuccessStatusCode();
            var finalize = await _client.PatchAsync($"/api/2.0/mlflow/logged-models/{id}", Api.JsonBody($$"""{"model_id": "{{id}}", "status": "LOGGED_MODEL_READY"}"""));
            finalize.EnsureSuccessStatusCode();
        }
        var runId = (await Api.GetAsync(_client, "/api/runs?pageSize=100")).GetProperty("items").EnumerateArray()
            .Single(r => r.GetProperty("trackingId").GetString() == run).Id();

        var cut = Render<RunDetail>(p => p.Add(c => c.Id, runId));
        cut.WaitForAssertion(() => Assert.Equal(2, cut.FindAll("[data-testid=logged-models] tbody tr").Count));
        var rows = cut.FindAll("[data-testid=logged-models] tbody tr");
        Assert.Contains("model", rows[0].TextContent);
        Assert.Equal("—", rows[0].QuerySelector("[data-testid=model-track]")!.TextContent.Trim());
        Assert.Equal("ema-0.999", rows[1].QuerySelector("[data-testid=model-track]")!.TextContent.Trim());
        Assert.Contains("10", rows[1].TextContent);
        // The weights link goes through the artifact proxy and returns the file the client uploaded.
        var link = rows[1].QuerySelector("a[download][data-track='ema-0.999']")!.GetAttribute("href")!;
        Assert.Equal(weights["ema"], await _client.GetByteArrayAsync("/" + link));
    }

    [Fact]
    public void A_dataset_uploads_from_the_page_is_listed_and_a_bad_file_is_named_by_its_field()
    {
        UseAppServices();
        using var gz = typeof(EmaLab.TrainingEngine.Data.DatasetCatalog).Assembly.GetManifestResourceStream("EmaLab.Datasets.digits-8x8/digits.csv.gz")!;
        using var copy = new MemoryStream();
        gz.CopyTo(copy);
        var name = $"page-digits-{Guid.NewGuid().ToString("N")[..6]}";

        var cut = Render<DatasetList>();
        Assert.Equal(["digits-8x8", "mnist-10k"], cut.FindAll("[data-testid=datasets] tr[data-dataset]").Select(r => r.GetAttribute("data-dataset")).Take(2));
        cut.Find("#dataset-format").Change("Csv");
        cut.Find("#dataset-name").Change(name);
        cut.FindComponents<Microsoft.AspNetCore.Components.Forms.InputFile>()[0].UploadFiles(InputFileContent.CreateFromBinary("1,2,3\n"u8.ToArray(), "bad.csv"));
        cut.Find("form[data-testid=upload]").Submit();
        cut.WaitForAssertion(() => Assert.Contains("bad.csv: 2 pixels a line is not a square image", cut.Find("[data-field=train]").TextContent));

        cut.FindComponents<Microsoft.AspNetCore.Components.Forms.InputFile>()[0].UploadFiles(InputFileContent.CreateFromBinary(copy.ToArray(), "digits.csv.gz"));
        cut.Find("form[data-testid=upload]").Submit();
        cut.WaitForAssertion(() => Assert.Contains($"Uploaded {name}", cut.Find("[data-testid=uploaded]").TextContent));
        Assert.Contains("8×8", cut.Find($"tr[data-dataset='{name}']").TextContent);
        Assert.Contains(name, EmaLab.TrainingEngine.Data.DatasetCatalog.Names);
    }
}
