using System.Buffers.Binary;

namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Reads the IDX format of MNIST and Fashion-MNIST (gzip-compressed or plain): a big-endian
/// header (magic 0x0000_08_0N, where N is the number of dimensions and 0x08 means unsigned bytes),
/// then N big-endian int32 dimension sizes, then the bytes.
/// </summary>
public static class IdxReader
{
    const int UnsignedByteType = 0x08;

    /// <summary>Reads an image file (3 dimensions: count, rows, columns).</summary>
    public static (int Count, int Rows, int Columns, byte[] Pixels) ReadImages(Stream stream, string name)
    {
        var (dims, data) = Read(stream, name, expectedDimensions: 3);
        return (dims[0], dims[1], dims[2], data);
    }

    /// <summary>Reads a label file (1 dimension: count).</summary>
    public static byte[] ReadLabels(Stream stream, string name) => Read(stream, name, expectedDimensions: 1).Data;

    public static (int Count, int Rows, int Columns, byte[] Pixels) ReadImages(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadImages(stream, path);
    }

    public static byte[] ReadLabels(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadLabels(stream, path);
    }

    static (int[] Dims, byte[] Data) Read(Stream raw, string name, int expectedDimensions)
    {
        using var stream = MaybeGzip.Open(raw);
        Span<byte> header = stackalloc byte[4];
        ReadExactly(stream, header, name, "the 4-byte magic number");
        if (header[0] != 0 || header[1] != 0 || header[2] != UnsignedByteType || header[3] != expectedDimensions)
            throw new InvalidDataException(
                $"{name}: wrong magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(header):X8}; an IDX file of unsigned bytes with " +
                $"{expectedDimensions} dimension(s) starts with 0x{UnsignedByteType << 8 | expectedDimensions:X8}");

        var dims = new int[expectedDimensions];
        long total = 1;
        for (var i = 0; i < dims.Length; i++)
        {
            ReadExactly(stream, header, name, $"dimension {i} of the header");
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(header);
            if (dims[i] <= 0) throw new InvalidDataException($"{name}: dimension {i} is {dims[i]}; sizes must be positive");
            total *= dims[i];
        }
        if (total > Array.MaxLength) throw new InvalidDataException($"{name}: {total} bytes of data is more than this reader supports");

        var data = new byte[total];
        var read = ReadUpTo(stream, data);
        if (read < total)
            throw new InvalidDataException($"{name}: truncated: the header promises {total} bytes of data ({string.Join(" x ", dims)}) but the file holds {read}");
        return (dims, data);
    }

    static void ReadExactly(Stream stream, Span<byte> buffer, string name, string what)
    {
        var read = ReadUpTo(stream, buffer);
        if (read < buffer.Length) throw new InvalidDataException($"{name}: truncated: the file ends inside {what}");
    }

    static int ReadUpTo(Stream stream, Span<byte> buffer)
    {
        var total = 0;
        try
        {
            while (total < buffer.Length)
            {
                var n = stream.Read(buffer[total..]);
                if (n == 0) break;
                total += n;
            }
        }
        catch (InvalidDataException)
        {
            // A cut-off gzip member surfaces as a decompression error: report it as what it is.
            return total;
        }
        return total;
    }
}
