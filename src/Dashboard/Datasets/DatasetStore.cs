using System.Text.RegularExpressions;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Datasets;

/// <summary>The fields of an upload besides its files (the page's form and the API's multipart fields alike).</summary>
public sealed record DatasetUpload(string? Name, double EvalFraction = DatasetFolder.DefaultEvalFraction, long SplitSeed = 1, int? Width = null);

/// <summary>A file is too large for the upload limit (answered 413).</summary>
public sealed class UploadTooLargeException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>
/// Uploaded datasets: each import is written into a folder of its own under <c>datasets/.incoming-…</c> while its files
/// stream in (never held in memory), validated by the engine's readers, and only then moved to <c>datasets/&lt;name&gt;</c>;
/// anything refused is deleted, so nothing half-written is ever listed. A dataset is deletable while no run uses it.
/// </summary>
public sealed partial class DatasetStore(DataPaths paths, IDbContextFactory<EmaLabDbContext> dbFactory, IOptions<EmaLabOptions> options,
    IAuditTrail audit)
{
    /// <summary>The file fields, by format: IDX pairs (train, optional test) or CSV files.</summary>
    public static readonly string[] IdxFields = ["trainImages", "trainLabels", "testImages", "testLabels"];
    public static readonly string[] CsvFields = ["train", "test"];
    public const int MaxNameLength = 40;

    public long MaxBytes => options.Value.Limits.MaxDatasetMegabytes * 1024L * 1024L;

    /// <summary>An import in progress: its folder and the files written so far (field → file name).</summary>
    public sealed class Import : IDisposable
    {
        internal Import(string folder) => Folder = folder;
        public string Folder { get; }
        public Dictionary<string, string> Files { get; } = [];
        public long Bytes { get; internal set; }
        internal bool Kept { get; set; }

        /// <summary>An import not finished is removed with everything written into it.</summary>
        public void Dispose()
        {
            if (!Kept && Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
        }
    }

    public Import Begin() =>
        new(Directory.CreateDirectory(Path.Combine(paths.DatasetsDirectory, ".incoming-" + Guid.NewGuid().ToString("N"))).FullName);

    /// <summary>Streams one file into the import, counting against the upload limit (over it: <see cref="UploadTooLargeException"/>).</summary>
    public async Task SaveFileAsync(Import import, string field, string? fileName, Stream content, CancellationToken cancellationToken)
    {
        if (!IdxFields.Contains(field) && !CsvFields.Contains(field))
            throw new RequestValidationException(field,
                $"Unknown file field '{field}'; an IDX dataset sends {string.Join(", ", IdxFields)}, a CSV one {string.Join(", ", CsvFields)}.");
        if (import.Files.ContainsKey(field)) throw new RequestValidationException(field, $"'{field}' was sent twice.");
        var name = SafeFileName(fileName, field);
        if (import.Files.ContainsValue(name))
            throw new RequestValidationException(field, $"Two files are named '{name}'; give each file its own name.");
        import.Files[field] = name;
        await using var file = File.Create(Path.Combine(import.Folder, name));
        var buffer = new byte[81920];
        int read;
        while ((read = await content.ReadAsync(buffer, cancellationToken)) > 0)
        {
            import.Bytes += read;
            if (import.Bytes > MaxBytes)
                throw new UploadTooLargeException(field,
                    $"{name}: the upload is over the limit of {options.Value.Limits.MaxDatasetMegabytes:N0} MB (EmaLab:MaxDatasetMegabytes).");
            await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }
    }

    /// <summary>
    /// Validates the name and the files (by reading them: a problem names its field and file), writes the manifest and
    /// moves the folder into place. Throws <see cref="RequestValidationException"/>; the import is then removed by its Dispose.
    /// The uploader's account (a server with accounts) may delete it with the admins; the audit log keeps who uploaded it.
    /// </summary>
    public async Task<DatasetInfo> FinishAsync(Import import, DatasetUpload upload, Caller uploader)
    {
        var info = Finish(import, upload, uploader.Account);
        await audit.RecordAsync(uploader, "dataset.upload", $"dataset {info.Name}", info.Description);
        return info;
    }

    DatasetInfo Finish(Import import, DatasetUpload upload, string? uploadedBy)
    {
        var name = upload.Name?.Trim() ?? "";
        if (NameProblem(name) is { } problem) throw new RequestValidationException("name", problem);
        var idx = import.Files.Keys.Any(IdxFields.Contains);
        var csv = import.Files.Keys.Any(CsvFields.Contains);
        if (idx && csv) throw new RequestValidationException("$",
            "Send either IDX files (trainImages, trainLabels …) or CSV files (train, test), not both.");
        if (!idx && !csv) throw new RequestValidationException("trainImages",
            "No file was sent: an IDX dataset needs trainImages and trainLabels, a CSV one a train file.");
        string[] Required(params string[] fields) =>
            fields.Select(f => import.Files.TryGetValue(f, out var file) ? file : throw new RequestValidationException(f, $"'{f}' is missing."))
                .ToArray();
        var format = idx ? DatasetFormat.Idx : DatasetFormat.Csv;
        var train = idx ? Required("trainImages", "trainLabels") : Required("train");
        var hasTest = idx ? import.Files.ContainsKey("testImages") || import.Files.ContainsKey("testLabels") : import.Files.ContainsKey("test");
        var test = !hasTest ? null : idx ? Required("testImages", "testLabels") : Required("test");
        if (!hasTest && upload.EvalFraction is < DatasetFolder.MinEvalFraction or > DatasetFolder.MaxEvalFraction)
            throw new RequestValidationException("evalFraction",
                $"evalFraction must be from {DatasetFolder.MinEvalFraction} to {DatasetFolder.MaxEvalFraction} (the share held out when no test files are sent).");
        try
        {
            var manifest = DatasetFolder.Import(import.Folder, name, format, train, test, upload.EvalFraction, upload.SplitSeed, upload.Width,
                uploadedBy);
            var target = Path.Combine(paths.DatasetsDirectory, name);
            if (Directory.Exists(target)) throw new RequestValidationException("name", $"A dataset named '{name}' exists already.");
            Directory.Move(import.Folder, target);
            import.Kept = true;
            return DatasetCatalog.Describe(manifest.Name);
        }
        catch (InvalidDataException e)
        {
            // The readers start their messages with the file's name: the problem is reported under that file's field.
            var field = import.Files.FirstOrDefault(f => e.Message.StartsWith(f.Value + ":", StringComparison.Ordinal)).Key ?? "$";
            throw new RequestValidationException(field, e.Message);
        }
    }

    public static string? NameProblem(string name)
    {
        if (name.Length == 0) return "Give the dataset a name.";
        if (name.Length > MaxNameLength || !DatasetName().IsMatch(name))
            return $"A dataset name has 1 to {MaxNameLength} lower-case letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. kmnist-10k).";
        if (DatasetCatalog.IsBuiltIn(name) || DatasetCatalog.Contains(name)) return $"A dataset named '{name}' exists already.";
        return null;
    }

    /// <summary>The runs that train on <paramref name="name"/> (by their spec), newest first.</summary>
    public async Task<List<long>> RunsUsingAsync(string name, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        return await new RunFilter(Dataset: name).Apply(db.Runs.AsNoTracking(), db).Where(r => r.SpecJson != null)
            .OrderByDescending(r => r.Id).Select(r => r.Id).ToListAsync(cancellationToken);
    }

    public enum DeleteOutcome { Deleted, NotFound, BuiltIn, InUse, NotYours }

    /// <summary>
    /// Who may delete an uploaded dataset: its uploader and the admins. Every signed-in user may see and train on every
    /// dataset (a server's datasets are its team's); one uploaded before accounts existed has no uploader: admins only.
    /// </summary>
    public static bool MayDelete(Caller caller, DatasetInfo dataset) =>
        !dataset.BuiltIn && (caller.IsAdmin || caller.Account is { } account && account == dataset.UploadedBy);

    /// <summary>Deletes an uploaded dataset no run uses (runs keep their spec: a run on a deleted dataset could not resume),
    /// if <paramref name="caller"/> may (<see cref="MayDelete"/>); the audit log keeps who did.</summary>
    public async Task<(DeleteOutcome Outcome, string? Message)> DeleteAsync(string name, Caller caller, CancellationToken cancellationToken = default)
    {
        if (DatasetCatalog.IsBuiltIn(name)) return (DeleteOutcome.BuiltIn, $"'{name}' is built in; only uploaded datasets can be deleted.");
        if (DatasetCatalog.Find(name) is not { } found) return (DeleteOutcome.NotFound, null);
        if (!MayDelete(caller, DatasetCatalog.Describe(name)))
            return (DeleteOutcome.NotYours, $"Only its uploader{(found.Manifest.UploadedBy is { } owner ? $" ({owner})" : "")} or an admin may delete '{name}'.");
        var runs = await RunsUsingAsync(name, cancellationToken);
        if (runs.Count > 0)
            return (DeleteOutcome.InUse,
                $"'{name}' is used by {runs.Count} run{(runs.Count == 1 ? "" : "s")} ({string.Join(", ", runs.Take(5).Select(id => $"#{id}"))}{(runs.Count > 5 ? ", …" : "")}); delete those first.");
        Directory.Delete(found.Directory, recursive: true);
        DatasetCatalog.Forget(name);
        await audit.RecordAsync(caller, "dataset.delete", $"dataset {name}");
        return (DeleteOutcome.Deleted, null);
    }

    /// <summary>The file's own name when it is plain (letters, digits, . _ -), else one made from the field: stored
    /// names never leave the folder.</summary>
    static string SafeFileName(string? fileName, string field)
    {
        var name = Path.GetFileName(fileName ?? "");
        return name.Length is > 0 and <= 100 && FileName()
            .IsMatch(name) && !name.StartsWith('.') && name != DatasetFolder.ManifestFile ? name : field;
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]*$")]
    private static partial Regex DatasetName();

    [GeneratedRegex(@"^[A-Za-z0-9._\-]+$")]
    private static partial Regex FileName();
}
