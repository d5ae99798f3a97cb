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

    /// <summary>Reads every tensor (as new CPU tensors the caller owns) and the metadata.</summary>
    public static SafeTensorsContent Read(Stream stream, string name = "safetensors data")
    {
        Span<byte> lengthBytes = stackalloc byte[8];
        if (stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8) throw new InvalidDataException($"{name}: too short for a safetensors header.");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength is 0 or > MaxHeaderBytes) throw new InvalidDataException($"{name}: header length {headerLength} is not plausible.");
        var headerBytes = new byte[headerLength];
        if (stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false) < headerBytes.Length)
            throw new InvalidDataException($"{name}: truncated inside the header.");

        JsonObject header;
        try { header = JsonNode.Parse(headerBytes)?.AsObject() ?? throw new InvalidDataException($"{name}: empty header."); }
        catch (JsonException e) { throw new InvalidDataException($"{name}: the header is not valid JSON ({e.Message}).", e); }

        var metadata = new Dictionary<string, string>();
        var entries = new List<(string Name, ScalarType DType, long[] Shape, long Begin, long End)>();
        foreach (var (key, value) in header)
        {
            if (key == MetadataKey)
            {
                foreach (var (mk, mv) in value!.AsObject())
                    metadata[mk] = mv is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw new InvalidDataException($"{name}: metadata '{mk}' is not a string.");
                continue;
            }
            var o = value?.AsObject() ?? throw new InvalidDataException($"{name}: tensor {key} has no description.");
            var dtypeName = o["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{name}: tensor {key} has no dtype.");
            if (!DTypes.TryGetValue(dtypeName, out var dtype)) throw new InvalidDataException($"{name}: tensor {key} has unsupported dtype {dtypeName}.");
            var shape = o["shape"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
            var offsets = o["data_offsets"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
            entries.Add((key, dtype, shape, offsets[0], offsets[1]));
        }

        var dataLength = entries.Count == 0 ? 0 : entries.Max(e => e.End);
        var data = new byte[dataLength];
        if (stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false) < data.Length)
            throw new InvalidDataException($"{name}: truncated: the header describes {dataLength} bytes of tensor data.");

        var result = new Dictionary<string, Tensor>();
        foreach (var (key, dtype, shape, begin, end) in entries)
        {
            var t = empty(shape, dtype);
            var size = t.NumberOfElements * t.ElementSize;
            if (end - begin != size || begin < 0) { t.Dispose(); throw new InvalidDataException($"{name}: tensor {key}'s data_offsets do not match its shape and dtype."); }
            data.AsSpan((int)begin, (int)size).CopyTo(t.bytes);
            result[key] = t;
        }
        return new SafeTensorsContent(result, metadata);
    }

    public static SafeTensorsContent Read(string path)
    {
        using var stream = File.OpenRead(path);
        return Read(stream, path);
    }
}

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
