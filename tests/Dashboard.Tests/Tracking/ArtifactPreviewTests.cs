using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Tracking;
using EmaLab.TrainingEngine.Formats;
using static TorchSharp.torch;

namespace EmaLab.Dashboard.Tests;

/// <summary>Artifacts shown in place on the run page: each kind as itself, size-limited, and no script from a file ever runs.</summary>
public sealed class ArtifactPreviewTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>, IDisposable
{
    readonly string _folder = Directory.CreateTempSubdirectory("emalab-preview-").FullName;

    string Write(string name, string text)
    {
        var path = Path.Combine(_folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Markdown_renders_without_raw_html_or_script_links()
    {
        var preview = Assert.IsType<ArtifactPreview.Markdown>(ArtifactPreview.Of(Write("notes.md",
            "# Result\n\nEMA **wins**. <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n[ok](https://mlflow.org) [bad](javascript:alert(3)) [data](data:text/html,<b>x</b>) [rel](./other.md)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")));
        Assert.Contains("<h1", preview.Html);
        Assert.Contains("<strong>wins</strong>", preview.Html);
        Assert.DoesNotContain("<script", preview.Html);
        Assert.DoesNotContain("<img", preview.Html);
        Assert.Contains("&lt;script&gt;", preview.Html); // shown as text
        Assert.Contains("href=\"https://mlflow.org\"", preview.Html);
        Assert.Contains("href=\"./other.md\"", preview.Html);
        Assert.DoesNotContain("javascript:", preview.Html);
        Assert.DoesNotContain("data:text", preview.Html);
        Assert.Contains("<table>", preview.Html);
    }

    [Fact]
    public void A_logged_table_and_a_csv_read_as_tables_and_other_json_pretty_printed()
    {
        // mlflow.log_table writes pandas' "split" form without the index.
        var table = Assert.IsType<ArtifactPreview.Table>(ArtifactPreview.Of(Write("eval.json",
            """{"columns": ["track", "accuracy"], "data": [["raw", 0.91], ["ema-0.999", 0.93], ["x", null]]}""")));
        Assert.Equal(["track", "accuracy"], table.Columns);
        Assert.Equal(["ema-0.999", "0.93"], table.Rows[1]);
        Assert.Equal(["x", ""], table.Rows[2]);
        Assert.Equal((3, false), (table.TotalRows, table.Truncated));

        var csv = Assert.IsType<ArtifactPreview.Table>(ArtifactPreview.Of(Write("runs.csv",
            "name,notes\r\na,\"one, two\"\r\nb,\"say \"\"hi\"\"\nnext line\"\r\n" + string.Concat(Enumerable.Range(0, 150).Select(i => $"r{i},{i}\n")))));
        Assert.Equal(["name", "notes"], csv.Columns);
        Assert.Equal(["a", "one, two"], csv.Rows[0]);
        Assert.Equal(["b", "say \"hi\"\nnext line"], csv.Rows[1]);
        Assert.Equal((ArtifactPreview.MaxRows, 152, true), (csv.Rows.Count, csv.TotalRows, csv.Truncated));

        var json = Assert.IsType<ArtifactPreview.Json>(ArtifactPreview.Of(Write("config.json", """{"lr":0.003,"decays":[0.99,0.999]}""")));
        Assert.Contains("\n  \"lr\": 0.003", json.Pretty);
        Assert.IsType<ArtifactPreview.None>(ArtifactPreview.Of(Write("broken.json", "{nope")));
    }

    [Fact]
    public void Long_text_is_cut_binary_is_refused_and_a_safetensors_file_shows_its_header()
    {
        var text = Assert.IsType<ArtifactPreview.Text>(ArtifactPreview.Of(Write("train.log", new string('x', ArtifactPreview.MaxBytes + 10))));
        Assert.Equal((ArtifactPreview.MaxBytes, true), (text.Content.Length, text.Truncated));
        var binary = Path.Combine(_folder, "blob.txt");
        File.WriteAllBytes(binary, [1, 0, 2, 0]);
        Assert.IsType<ArtifactPreview.None>(ArtifactPreview.Of(binary));

        var weights = Path.Combine(_folder, "ema.safetensors");
        using (var w = zeros(3, 4, dtype: ScalarType.Float32))
        using (var b = zeros(4, dtype: ScalarType.BFloat16))
            SafeTensors.Write(weights, [("fc.weight", w), ("fc.bias", b)], new Dictionary<string, string> { ["track"] = "ema-0.999" });
        var tensors = Assert.IsType<ArtifactPreview.Tensors>(ArtifactPreview.Of(weights));
        Assert.Equal([("fc.weight", "F32", "3,4"), ("fc.bias", "BF16", "4")],
            tensors.Entries.Select(e => (e.Name, e.DType, string.Join(",", e.Shape))).OrderBy(e => e.Name != "fc.weight"));
        Assert.Equal("ema-0.999", tensors.Metadata["track"]);
        Assert.Equal(12 * 4 + 4 * 2, tensors.DataBytes);
        Assert.True(ArtifactPreview.Offered("a/b/notes.md") && !ArtifactPreview.Offered("model.pt"));
    }

    [Fact]
    public async Task The_run_page_previews_an_artifact_in_place_and_no_script_element_reaches_the_page()
    {
        PageServices.Use(this, factory.Services);
        var client = factory.CreateClient();
        var run = (await Api.MlflowAsync(client, "runs/create", """{"experiment_id": "0", "run_name": "previews"}""")).GetProperty("run").GetProperty("info");
        var uuid = run.GetProperty("run_id").GetString();
        var put = await client.PutAsync($"/api/2.0/mlflow-artifacts/artifacts/0/{uuid}/artifacts/report/notes.md",
            new StringContent("# EMA report\n<script>document.title='x'</script>\n[x](javascript:alert(1))"));
        Assert.True(put.IsSuccessStatusCode);
        var id = (await Api.GetAsync(client, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].Id();
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, id));
        cut.Find("[data-testid=artifacts] button.preview").Click();
        var panel = cut.Find("[data-testid=artifact-preview]");
        Assert.Equal("EMA report", panel.QuerySelector(".preview-markdown h1")!.TextContent);
        Assert.Empty(panel.QuerySelectorAll("script"));
        Assert.DoesNotContain("javascript:", panel.InnerHtml);
        Assert.Equal("true", cut.Find("[data-testid=artifacts] button.preview").GetAttribute("aria-expanded"));
        cut.Find("[data-testid=artifact-preview] button").Click();
        Assert.Empty(cut.FindAll("[data-testid=artifact-preview]"));
    }

    public new void Dispose()
    {
        Directory.Delete(_folder, recursive: true);
        base.Dispose();
    }
}
