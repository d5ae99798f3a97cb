using System.IO.Compression;

namespace EmaLab.TrainingEngine.Data;

/// <summary>Opens a stream that may or may not be gzip-compressed, by sniffing the gzip magic (1f 8b).</summary>
internal static class MaybeGzip
{
    public static Stream Open(Stream raw)
    {
        var buffered = new BufferedStream(raw, 1 << 16);
        Span<byte> magic = stackalloc byte[2];
        var n = buffered.Read(magic);
        var isGzip = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        var prefix = magic[..n].ToArray();
        var rest = new PrefixedStream(prefix, buffered);
        return isGzip ? new GZipStream(rest, CompressionMode.Decompress) : rest;
    }


    /// <summary>A read-only stream that first returns a few sniffed bytes, then the rest of the inner stream.</summary>
    sealed class PrefixedStream(byte[] prefix, Stream inner) : Stream
    {
        int _position;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            if (_position < prefix.Length)
            {
                var n = Math.Min(buffer.Length, prefix.Length - _position);
                prefix.AsSpan(_position, n).CopyTo(buffer);
                _position += n;
                return n;
            }
            return inner.Read(buffer);
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }
}
