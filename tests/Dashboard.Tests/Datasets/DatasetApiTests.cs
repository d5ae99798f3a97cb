using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using EmaLab.TrainingEngine.Data;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// <c>POST /api/datasets</c> with real files: MNIST's IDX files exactly as published (gzip; Fashion-MNIST's have the same
/// format), the UCI digits as CSV, and every kind of bad file — each refused by field and file, with nothing stored.
/// </summary>
public sealed class DatasetApiTests(EmaLabFactory factory) : IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    static byte[] Resource(string path)
    {
        using var stream = typeof(DatasetCatalog).Assembly.GetManifestResourceStream("EmaLab.Datasets." + path)!;
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    static byte[] Gunzip(byte[] gz)
    {
        using var input = new GZipStream(new MemoryStream(gz), CompressionMode.Decompress);
        using var output = new MemoryStream();
        input.CopyTo(output);
        return output.ToArray();
    }

    static readonly byte[] TrainImages = Resource("mnist-10k/train-images-idx3-ubyte.gz");
    static readonly byte[] TrainLabels = Resource("mnist-10k/train-labels-idx1-ubyte.gz");
    static readonly byte[] TestImages = Resource("mnist-10k/t10k-images-idx3-ubyte.gz");
    static readonly byte[] TestLabels = Resource("mnist-10k/t10k-labels-idx1-ubyte.gz");
    static readonly string DigitsCsv = Encoding.ASCII.GetString(Gunzip(Resource("digits-8x8/digits.csv.gz")));

    static MultipartFormDataContent Form(string? name, params (string Field, string FileName, byte[] Content)[] files)
    {
        var form = new MultipartFormDataContent();
        if (name is not null) form.Add(new StringContent(name), "name");
        foreach (var (field, fileName, content) in files)
        {
            var part = new ByteArrayContent(content);
            part.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            form.Add(part, field, fileName);
        }
        return form;
    }

    static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    string DatasetsFolder => Path.Combine(factory.DataDirectory, "datasets");

    async Task<JsonElement> UploadAsync(MultipartFormDataContent form, HttpStatusCode expected)
    {
        var response = await _client.PostAsync("/api/datasets", form);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    [Fact]
    public async Task Mnist_idx_files_as_published_upload_train_and_delete_once_no_run_uses_them()
    {
        var name = Unique("mnist-upload");
        var info = await UploadAsync(Form(name, ("trainImages", "train-images-idx3-ubyte.gz", TrainImages), ("trainLabels", "train-labels-idx1-ubyte.gz", TrainLabels),
            ("testImages", "t10k-images-idx3-ubyte.gz", TestImages), ("testLabels", "t10k-labels-idx1-ubyte.gz", TestLabels)), HttpStatusCode.Created);
        Assert.Equal((8000, 2000, 28, 28, 10, false), (info.GetProperty("trainCount").GetInt32(), info.GetProperty("evalCount").GetInt32(),
            info.GetProperty("height").GetInt32(), info.GetProperty("width").GetInt32(), info.GetProperty("classCount").GetInt32(), info.GetProperty("builtIn").GetBoolean()));
        var listed = await Api.GetAsync(_client, "/api/datasets");
        Assert.Contains(listed.EnumerateArray(), d => d.GetProperty("name").GetString() == name);

        // The same pixels as the built-in copy of these files: the upload reads them exactly.
        var uploaded = DatasetCatalog.Load(name);
        Assert.Equal(DatasetCatalog.Load(DatasetCatalog.Mnist10k).Train.Pixels, uploaded.Train.Pixels);

        var spec = Api.DigitsRun(steps: 20, evalInterval: 10);
        spec["dataset"] = name;
        var run = await Api.CreateAsync(_client, spec);
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, run.Id())).Status());

        var refused = await _client.DeleteAsync($"/api/datasets/{name}");
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Assert.Contains($"#{run.Id()}", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync($"/api/runs/{run.Id()}")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync($"/api/datasets/{name}")).StatusCode);
        Assert.DoesNotContain((await Api.GetAsync(_client, "/api/datasets")).EnumerateArray(), d => d.GetProperty("name").GetString() == name);
        Assert.False(Directory.Exists(Path.Combine(DatasetsFolder, name)));
        Assert.Equal(HttpStatusCode.Conflict, (await _client.DeleteAsync("/api/datasets/digits-8x8")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.DeleteAsync($"/api/datasets/{name}")).StatusCode);
    }

    [Fact]
    public async Task A_plain_csv_of_pixels_then_labels_is_split_by_a_seeded_fraction_with_shape_and_scale_detected()
    {
        var name = Unique("digits-csv");
        var form = Form(name, ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv)));
        form.Add(new StringContent("0.25"), "evalFraction");
        form.Add(new StringContent("3"), "splitSeed");
        var info = await UploadAsync(form, HttpStatusCode.Created);
        Assert.Equal((1348, 449, 8, 8, 10), (info.GetProperty("trainCount").GetInt32(), info.GetProperty("evalCount").GetInt32(),
            info.GetProperty("height").GetInt32(), info.GetProperty("width").GetInt32(), info.GetProperty("classCount").GetInt32()));
        Assert.Equal(16, DatasetCatalog.Load(name).Train.PixelMax); // the UCI digits count 0–16
    }

    public static TheoryData<string, string, string> BadUploads() => new()
    {
        // case, field, what the message says
        { "truncated images", "trainImages", "train-images.gz: truncated" },
        { "labels sent as images", "trainImages", "wrong magic number" },
        { "label count differs", "trainLabels", "holds 2000 labels but train-images.gz holds 8000 images" },
        { "missing labels", "trainLabels", "'trainLabels' is missing" },
        { "csv bad value", "train", "bad.csv: line 3, value 5 is 'x'" },
        { "csv not square", "train", "bad.csv: 10 pixels a line is not a square image" },
        { "csv and idx", "$", "either IDX files" },
        { "no name", "name", "Give the dataset a name" },
        { "bad name", "name", "lower-case letters" },
        { "built-in name", "name", "exists already" },
        { "held out too much", "evalFraction", "evalFraction must be from" },
        { "unknown file field", "pictures", "Unknown file field" },
    };

    [Theory]
    [MemberData(nameof(BadUploads))]
    public async Task A_bad_upload_is_refused_naming_the_field_and_the_problem_and_stores_nothing(string kind, string field, string message)
    {
        var name = Unique("bad");
        var csvLines = DigitsCsv.Split('\n');
        MultipartFormDataContent form = kind switch
        {
            "truncated images" => Form(name, ("trainImages", "train-images.gz", Gzip(Gunzip(TrainImages)[..5000])), ("trainLabels", "train-labels.gz", TrainLabels)),
            "labels sent as images" => Form(name, ("trainImages", "train-images.gz", TrainLabels), ("trainLabels", "train-labels.gz", TrainLabels)),
            "label count differs" => Form(name, ("trainImages", "train-images.gz", TrainImages), ("trainLabels", "test-labels.gz", TestLabels)),
            "missing labels" => Form(name, ("trainImages", "train-images.gz", TrainImages)),
            "csv bad value" => Form(name, ("train", "bad.csv", Encoding.ASCII.GetBytes(string.Join('\n', csvLines[0], csvLines[1], ReplaceValue(csvLines[2], 4, "x"))))),
            "csv not square" => Form(name, ("train", "bad.csv", Encoding.ASCII.GetBytes("1,2,3,4,5,6,7,8,9,10,1\n1,2,3,4,5,6,7,8,9,10,0\n"))),
            "csv and idx" => Form(name, ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv)), ("trainImages", "train-images.gz", TrainImages)),
            "no name" => Form(null, ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv))),
            "bad name" => Form("Fashion MNIST", ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv))),
            "built-in name" => Form("digits-8x8", ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv))),
            "held out too much" => WithField(Form(name, ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv))), "evalFraction", "0.9"),
            "unknown file field" => Form(name, ("pictures", "a.gz", TrainImages)),
            _ => throw new ArgumentException(kind),
        };
        var problem = await UploadAsync(form, HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out var messages), problem.GetRawText());
        Assert.Contains(message, messages[0].GetString());
        Assert.Empty(Directory.GetDirectories(DatasetsFolder, ".incoming-*"));
        Assert.False(Directory.Exists(Path.Combine(DatasetsFolder, name)));
        Assert.DoesNotContain((await Api.GetAsync(_client, "/api/datasets")).EnumerateArray(), d => d.GetProperty("name").GetString() == name);
    }

    [Fact]
    public async Task An_upload_over_the_limit_is_refused_with_413_naming_the_file_and_a_body_that_is_not_multipart_with_415()
    {
        using var small = new EmaLabFactory();
        small.Settings["EmaLab:Limits:MaxDatasetMegabytes"] = "1";
        var client = small.CreateClient();
        var response = await client.PostAsync("/api/datasets", Form("too-big", ("trainImages", "train-images.gz", TrainImages), ("trainLabels", "train-labels.gz", TrainLabels)));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("train-images.gz: the upload is over the limit of 1 MB", JsonDocument.Parse(text).RootElement.GetProperty("errors").GetProperty("trainImages")[0].GetString());
        Assert.Empty(Directory.GetDirectories(Path.Combine(small.DataDirectory, "datasets")));

        var json = await client.PostAsync("/api/datasets", Api.JsonBody("""{"name": "x"}"""));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, json.StatusCode);
    }

    [Fact]
    public async Task An_upload_a_crash_cut_short_is_removed_at_the_next_start()
    {
        using var restarted = new EmaLabFactory();
        var datasets = Directory.CreateDirectory(Path.Combine(restarted.DataDirectory, "datasets")).FullName;
        var cut = Directory.CreateDirectory(Path.Combine(datasets, ".incoming-" + Guid.NewGuid().ToString("N"))).FullName;
        File.WriteAllBytes(Path.Combine(cut, "train-images.gz"), TrainImages[..1000]);
        var client = restarted.CreateClient();
        var name = Unique("kept");
        var form = Form(name, ("train", "digits.csv", Encoding.ASCII.GetBytes(DigitsCsv)));
        Assert.False(Directory.Exists(cut));
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/api/datasets", form)).StatusCode);
        Assert.True(Directory.Exists(Path.Combine(datasets, name)));
    }

    static byte[] Gzip(byte[] plain)
    {
        using var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Fastest)) gz.Write(plain);
        return output.ToArray();
    }

    static string ReplaceValue(string line, int index, string value)
    {
        var values = line.Split(',');
        values[index] = value;
        return string.Join(',', values);
    }

    static MultipartFormDataContent WithField(MultipartFormDataContent form, string field, string value)
    {
        form.Add(new StringContent(value), field);
        return form;
    }
}
