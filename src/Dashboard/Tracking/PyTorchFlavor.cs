using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// An EMA Lab checkpoint as an MLflow model with the <c>pytorch</c> flavor, so <c>mlflow.pytorch.load_model("models:/name@alias")</c>
/// (and <c>mlflow.pyfunc.load_model</c>) return the network with the track's weights. MLflow's loader reads <c>MLmodel</c>,
/// puts <c>code/</c> on <c>sys.path</c> and <c>torch.load</c>s <c>data/model.pth</c> with the pickle module
/// <c>data/pickle_module_info.txt</c> names. The <c>model.pth</c> written here is PyTorch's zip format holding a pickle of
/// one call — <c>emalab_model.from_safetensors(&lt;the checkpoint's bytes&gt;)</c> — and <c>code/emalab_model.py</c> holds
/// docs/training.md's classes and that loader; the checkpoint itself is beside them as <c>model.safetensors</c>.
/// </summary>
public static class PyTorchFlavor
{
    public const string WeightsFile = "model.safetensors";
    /// <summary>The libtorch the engine trains with (its weights' provenance; MLflow only warns when the loader's differs).</summary>
    public const string PyTorchVersion = "2.10.0";
    const string CodeModule = "emalab_model";

    /// <summary>Writes the model's files into <paramref name="folder"/> (its artifact root).</summary>
    public static void Write(string folder, byte[] checkpoint, string modelId, string? runUuid, string artifactPath, DateTimeOffset now)
    {
        Directory.CreateDirectory(Path.Combine(folder, "data"));
        Directory.CreateDirectory(Path.Combine(folder, "code"));
        File.WriteAllBytes(Path.Combine(folder, WeightsFile), checkpoint);
        using (var code = typeof(PyTorchFlavor).Assembly.GetManifestResourceStream(CodeModule + ".py")!)
        using (var file = File.Create(Path.Combine(folder, "code", CodeModule + ".py")))
            code.CopyTo(file);
        using (var pth = File.Create(Path.Combine(folder, "data", "model.pth")))
            WriteTorchFile(pth, Pickle(checkpoint));
        // The standard library's pickle reads the file; nothing beyond torch and mlflow is needed to load it.
        File.WriteAllText(Path.Combine(folder, "data", "pickle_module_info.txt"), "pickle");
        File.WriteAllText(Path.Combine(folder, "requirements.txt"), "torch\n");
        File.WriteAllText(Path.Combine(folder, "MLmodel"), MLmodel(modelId, runUuid, artifactPath, now, checkpoint.LongLength));
    }

    static string MLmodel(string modelId, string? runUuid, string artifactPath, DateTimeOffset now, long bytes) => string.Join('\n',
        $"artifact_path: {artifactPath}",
        "flavors:",
        "  python_function:",
        "    code: code",
        "    data: data",
        "    loader_module: mlflow.pytorch",
        "    pickle_module_name: pickle",
        "    python_version: 3.11.2",
        "  pytorch:",
        "    code: code",
        "    model_data: data",
        $"    pytorch_version: {PyTorchVersion}",
        $"model_id: {modelId}",
        $"model_size_bytes: {bytes.ToString(CultureInfo.InvariantCulture)}",
        runUuid is null ? "run_id: null" : $"run_id: {runUuid}",
        $"utc_time_created: '{now.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture)}'",
        "");

    /// <summary>
    /// Pickle protocol 3: <c>emalab_model.from_safetensors(bytes)</c> — GLOBAL, BINBYTES, TUPLE1, REDUCE, STOP.
    /// </summary>
    internal static byte[] Pickle(byte[] checkpoint)
    {
        using var pickle = new MemoryStream();
        pickle.Write([0x80, 3]);
        pickle.Write(Encoding.ASCII.GetBytes($"c{CodeModule}\nfrom_safetensors\n"));
        pickle.WriteByte((byte)'B');
        pickle.Write(BitConverter.GetBytes(checkpoint.Length)); // little-endian on every platform .NET runs EMA Lab on
        pickle.Write(checkpoint);
        pickle.Write([0x85, (byte)'R', (byte)'.']);
        return pickle.ToArray();
    }

    /// <summary>PyTorch's serialization container: a zip of stored (uncompressed) records under one folder —
    /// <c>data.pkl</c>, the format <c>version</c>, the <c>byteorder</c> — as <c>torch.save</c> writes it.</summary>
    internal static void WriteTorchFile(Stream stream, byte[] dataPickle)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        void Record(string name, byte[] content)
        {
            using var entry = zip.CreateEntry($"model/{name}", CompressionLevel.NoCompression).Open();
            entry.Write(content);
        }
        Record("data.pkl", dataPickle);
        Record("byteorder", "little"u8.ToArray());
        Record("version", "3\n"u8.ToArray());
    }
}
