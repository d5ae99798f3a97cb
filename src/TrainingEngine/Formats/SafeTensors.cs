using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Formats;

/// <summary>
/// Reads and writes the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
/// little-endian header length, a UTF-8 JSON header mapping each tensor name to its dtype, shape and
/// data_offsets (relative to the end of the header) plus an optional <c>__metadata__</c> map of string
/// to string, then the raw little-endian data. The header is padded with spaces to a multiple of 8.
/// </summary>
public static class SafeTensors
{
    const string MetadataKey = "__metadata__";
    const long MaxHeaderBytes = 100L << 20;

    static readonly Dictionary<ScalarType, string> DTypeNames = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16", [ScalarType.BFloat16] = "BF16",
        [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32", [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8",
        [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };
    static readonly Dictionary<string, ScalarType> DTypes = DTypeNames.ToDictionary(p => p.Value, p => p.Key);

    /// <summary>About the size of the file <see cref="Write(Stream, IEnumerable{ValueTuple{string, Tensor}}, IReadOnlyDictionary{string, string}?)"/> makes of these tensors (data plus a header allowance).</summary>
    public static long ApproximateBytes(IEnumerable<(string Name, Tensor Tensor)> tensors) =>
        64 * 1024 + tensors.Sum(t => t.Tensor.NumberOfElements * t.Tensor.ElementSize);

    public static void Write(Stream stream, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        // Contiguous CPU views or copies; their bytes are written in the order of the header's offsets. Each
        // intermediate is held by a variable until the call that reads it returns (a temporary could be finalized mid-call).
        var items = new List<(string Name, Tensor Tensor)>();
        try
        {
            foreach (var (name, tensor) in tensors)
            {
                using var detached = tensor.detach();
                using var cpu = detached.cpu();
                items.Add((name, cpu.contiguous()));
            }
            var header = new JsonObject();
            if (metadata is { Count: > 0 })
                header[MetadataKey] = new JsonObject(metadata.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)JsonValue.Create(m.Value))));
            long offset = 0;
            foreach (var (name, tensor) in items)
            {
                if (name == MetadataKey) throw new ArgumentException($"'{MetadataKey}' cannot name a tensor.");
                if (!DTypeNames.TryGetValue(tensor.dtype, out var dtype)) throw new NotSupportedException($"Tensor {name} has dtype {tensor.dtype}, which safetensors export does not support.");
                var size = tensor.NumberOfElements * tensor.ElementSize;
                header[name] = new JsonObject
                {
                    ["dtype"] = dtype,
                    ["shape"] = new JsonArray(tensor.shape.Select(d => (JsonNode?)JsonValue.Create(d)).ToArray()),
                    ["data_offsets"] = new JsonArray(offset, offset + size),
                };
                offset += size;
            }

            var json = Encoding.UTF8.GetBytes(header.ToJsonString());
            var padded = (json.Length + 7) / 8 * 8;
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            // torch stores CPU tensors little-endian on the platforms TorchSharp supports.
            foreach (var (_, tensor) in items) stream.Write(tensor.bytes);
        }
        finally
        {
            foreach (var (_, tensor) in items) tensor.Dispose();
        }
    }

    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var stream = File.Create(path);
        Write(stream, tensors, metadata);
    }

    /// <summary>Bytes per element of every dtype the format defines (a header may use dtypes torch here cannot hold).</summary>
    static readonly Dictionary<string, int> ElementBytes = new()
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>
    /// Reads and checks the header alone, as the format's own loader would before trusting a file: a plausible length,
    /// a JSON object, string metadata, for each tensor a known dtype, a shape of non-negative sizes, and data_offsets
    /// that match dtype × shape, stay inside the data and together cover it without gaps or overlaps.
    /// <paramref name="dataLength"/> (the file's length minus the header, when known) is checked too.
    /// </summary>
    public static SafeTensorsHeader ReadHeader(Stream stream, string name, long? fileLength = null)
    {
        Span<byte> lengthBytes = stackalloc byte[8];
        if (stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8) throw new InvalidDataException($"{name}: too short for a safetensors header.");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength is 0 or > MaxHeaderBytes || fileLength is { } total && headerLength > (ulong)(total - 8))
            throw new InvalidDataException($"{name}: header length {headerLength} is not plausible.");
        var headerBytes = new byte[headerLength];
        if (stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false) < headerBytes.Length)
            throw new InvalidDataException($"{name}: truncated inside the header.");

        JsonObject header;
        try { header = JsonNode.Parse(headerBytes) as JsonObject ?? throw new InvalidDataException($"{name}: the header is not a JSON object."); }
        catch (JsonException e) { throw new InvalidDataException($"{name}: the header is not valid JSON ({e.Message}).", e); }

        var metadata = new Dictionary<string, string>();
        var entries = new List<SafeTensorsEntry>();
        foreach (var (key, value) in header)
        {
            if (key == MetadataKey)
            {
                foreach (var (mk, mv) in value as JsonObject ?? throw new InvalidDataException($"{name}: __metadata__ is not an object."))
                    metadata[mk] = mv is JsonValue v && v.TryGetValue<string>(out var text) ? text : throw new InvalidDataException($"{name}: metadata '{mk}' is not a string.");
                continue;
            }
            try
            {
                var o = value as JsonObject ?? throw new InvalidDataException($"{name}: tensor {key} has no description.");
                var dtype = o["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{name}: tensor {key} has no dtype.");
                if (!ElementBytes.TryGetValue(dtype, out var size)) throw new InvalidDataException($"{name}: tensor {key} has unknown dtype {dtype}.");
                var shape = (o["shape"] as JsonArray ?? throw new InvalidDataException($"{name}: tensor {key} has no shape.")).Select(d => d!.GetValue<long>()).ToArray();
                var offsets = (o["data_offsets"] as JsonArray ?? throw new InvalidDataException($"{name}: tensor {key} has no data_offsets.")).Select(d => d!.GetValue<long>()).ToArray();
                if (shape.Any(d => d < 0)) throw new InvalidDataException($"{name}: tensor {key} has a negative size in its shape.");
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0]) throw new InvalidDataException($"{name}: tensor {key}'s data_offsets are not [begin, end].");
                var bytes = checked(shape.Aggregate(1L, (a, d) => a * d) * size);
                if (offsets[1] - offsets[0] != bytes) throw new InvalidDataException($"{name}: tensor {key}'s data_offsets do not match its shape and dtype.");
                entries.Add(new SafeTensorsEntry(key, dtype, shape, offsets[0], offsets[1]));
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
            {
                throw new InvalidDataException($"{name}: tensor {key} is described wrongly ({e.Message}).", e);
            }
        }
        // The tensors tile the data exactly: each begins where the previous one ends.
        var at = 0L;
        foreach (var entry in entries.OrderBy(e => e.Begin))
        {
            if (entry.Begin != at) throw new InvalidDataException($"{name}: tensor {entry.Name} begins at byte {entry.Begin} of the data, not {at} (gap or overlap).");
            at = entry.End;
        }
        if (fileLength is { } length && length - 8 - (long)headerLength != at)
            throw new InvalidDataException($"{name}: the header describes {at} bytes of tensor data, the file holds {length - 8 - (long)headerLength}.");
        return new SafeTensorsHeader(entries, metadata, at);
    }

    /// <summary>Reads every tensor (as new CPU tensors the caller owns) and the metadata.</summary>
    public static SafeTensorsContent Read(Stream stream, string name = "safetensors data")
    {
        var header = ReadHeader(stream, name);
        var data = new byte[header.DataBytes];
        if (stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false) < data.Length)
            throw new InvalidDataException($"{name}: truncated: the header describes {header.DataBytes} bytes of tensor data.");

        var result = new Dictionary<string, Tensor>();
        foreach (var entry in header.Tensors)
        {
            if (!DTypes.TryGetValue(entry.DType, out var dtype))
            {
                foreach (var t in result.Values) t.Dispose();
                throw new InvalidDataException($"{name}: tensor {entry.Name} has unsupported dtype {entry.DType}.");
            }
            var tensor = empty(entry.Shape, dtype);
            data.AsSpan((int)entry.Begin, (int)(entry.End - entry.Begin)).CopyTo(tensor.bytes);
            result[entry.Name] = tensor;
        }
        return new SafeTensorsContent(result, header.Metadata);
    }

    public static SafeTensorsContent Read(string path)
    {
        using var stream = File.OpenRead(path);
        return Read(stream, path);
    }
}

/// <summary>One tensor of a safetensors header: its dtype name, shape and byte range in the data.</summary>
public sealed record SafeTensorsEntry(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>A checked safetensors header: its tensors (in header order), metadata, and the length of the data it describes.</summary>
public sealed record SafeTensorsHeader(IReadOnlyList<SafeTensorsEntry> Tensors, IReadOnlyDictionary<string, string> Metadata, long DataBytes);

/// <summary>Tensors read from a safetensors file (owned by the caller) and its metadata.</summary>
public sealed record SafeTensorsContent(IReadOnlyDictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) : IDisposable
{
    /// <summary>Copies the tensors into every entry of <paramref name="model"/>'s state_dict; each must be present with the entry's shape.</summary>
    public void LoadInto(nn.Module model, string name)
    {
        using var _ = no_grad();
        foreach (var (key, target) in model.state_dict())
        {
            if (!Tensors.TryGetValue(key, out var saved)) throw new InvalidDataException($"{name}: missing tensor {key}.");
            if (!saved.shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{name}: tensor {key} has shape [{string.Join(", ", saved.shape)}], the model needs [{string.Join(", ", target.shape)}].");
            target.copy_(saved);
        }
    }

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}
