using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// The EMA update <c>s_k ← s_k + α_k (w − s_k)</c> for K shadows of one float32 tensor in a single
/// pass over memory: each block of <c>w</c> is read from memory once and applied to every shadow, so
/// the pass moves 2K + 1 words per element instead of the 3K of K separate <c>lerp_</c> calls (stock
/// libtorch has no fused multi-output lerp). Large tensors are split across <c>parallelism</c> threads.
/// </summary>
public static unsafe class MultiDecayLerp
{
    /// <summary>Below this many elements a second thread costs more than it saves.</summary>
    const long ParallelThreshold = 1 << 17;

    public const int MaxShadows = EmaSettings.MaxDecays;

    /// <summary>Updates <paramref name="shadows"/> towards <paramref name="weights"/>; all must be contiguous float32 CPU tensors of one size.</summary>
    public static void Apply(Tensor weights, ReadOnlySpan<Tensor> shadows, ReadOnlySpan<float> alphas, int parallelism)
    {
        if (!Supports(weights)) throw new ArgumentException("The weights must be a contiguous float32 CPU tensor.", nameof(weights));
        foreach (var s in shadows)
            if (!Supports(s) || s.NumberOfElements != weights.NumberOfElements)
                throw new ArgumentException("Every shadow must be a contiguous float32 CPU tensor the size of the weights.", nameof(shadows));
        ApplyUnchecked(weights, shadows, alphas, parallelism);
    }

    public static bool Supports(Tensor t) => t.dtype == ScalarType.Float32 && t.is_contiguous() && t.device_type == TorchSharp.DeviceType.CPU;

    /// <summary>The hot path for callers that checked <see cref="Supports"/> once up front.</summary>
    internal static void ApplyUnchecked(Tensor weights, ReadOnlySpan<Tensor> shadows, ReadOnlySpan<float> alphas, int parallelism)
    {
        Span<IntPtr> pointers = stackalloc IntPtr[shadows.Length];
        for (var k = 0; k < shadows.Length; k++) pointers[k] = (IntPtr)DataPointer(shadows[k]);
        Apply((float*)DataPointer(weights), pointers, alphas, weights.NumberOfElements, parallelism);
    }

    static void* DataPointer(Tensor t) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <param name="weights">The live tensor's memory.</param>
    /// <param name="shadows">One pointer per shadow, each to memory of the same length.</param>
    /// <param name="alphas">1 − d_eff per shadow.</param>
    static void Apply(float* weights, ReadOnlySpan<IntPtr> shadows, ReadOnlySpan<float> alphas, long length, int parallelism)
    {
        if (shadows.Length != alphas.Length || shadows.Length > MaxShadows)
            throw new ArgumentException($"Need one alpha per shadow and at most {MaxShadows} shadows.");
        var k = shadows.Length;
        var s = stackalloc float*[k];
        var a = stackalloc float[k];
        for (var j = 0; j < k; j++) { s[j] = (float*)shadows[j]; a[j] = alphas[j]; }

        if (parallelism <= 1 || length < ParallelThreshold) Range(weights, s, a, k, 0, length);
        else Split(weights, s, a, k, length, parallelism);
    }

    /// <summary>
    /// Chunks aligned to the vector width so every thread runs the vector loop. A method of its own: the
    /// lambda's closure would otherwise be allocated on every call, parallel or not.
    /// </summary>
    static void Split(float* weights, float** s, float* a, int k, long length, int parts)
    {
        var chunk = (length / parts + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;
        // Pointers are passed as integers because a lambda cannot capture pointers.
        var w = (IntPtr)weights;
        var sp = (IntPtr)s;
        var ap = (IntPtr)a;
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p =>
        {
            var start = p * chunk;
            var end = Math.Min(length, start + chunk);
            if (start < end) Range((float*)w, (float**)sp, (float*)ap, k, start, end);
        });
    }

    /// <summary>
    /// Elements per block: the block of <c>w</c> (8 KiB) stays in L1 while each shadow in turn streams
    /// past it, so <c>w</c> is read from memory once. Walking all K shadows element by element instead
    /// keeps 2K + 1 streams in flight, which measured slower (prefetcher limits and 4 KiB aliasing
    /// between the identically aligned shadow allocations).
    /// </summary>
    const int Block = 2048;

    static void Range(float* w, float** s, float* a, int k, long start, long end)
    {
        for (var blockStart = start; blockStart < end; blockStart += Block)
        {
            var blockEnd = Math.Min(end, blockStart + Block);
            for (var j = 0; j < k; j++) Lerp(w, s[j], a[j], blockStart, blockEnd);
        }
    }

    /// <summary>s[i] += α (w[i] − s[i]); the same arithmetic for every element and any K, so results never depend on K or on the split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Lerp(float* w, float* s, float alpha, long start, long end)
    {
        var width = Vector<float>.Count;
        var av = new Vector<float>(alpha);
        var i = start;
        // Four independent vectors per iteration keep more loads in flight than the loop-carried single vector.
        for (; i + 4 * width <= end; i += 4 * width)
        {
            var s0 = Vector.Load(s + i);
            var s1 = Vector.Load(s + i + width);
            var s2 = Vector.Load(s + i + 2 * width);
            var s3 = Vector.Load(s + i + 3 * width);
            Vector.Store(s0 + av * (Vector.Load(w + i) - s0), s + i);
            Vector.Store(s1 + av * (Vector.Load(w + i + width) - s1), s + i + width);
            Vector.Store(s2 + av * (Vector.Load(w + i + 2 * width) - s2), s + i + 2 * width);
            Vector.Store(s3 + av * (Vector.Load(w + i + 3 * width) - s3), s + i + 3 * width);
        }
        for (; i + width <= end; i += width)
        {
            var sv = Vector.Load(s + i);
            Vector.Store(sv + av * (Vector.Load(w + i) - sv), s + i);
        }
        for (; i < end; i++) s[i] += alpha * (w[i] - s[i]);
    }
}
