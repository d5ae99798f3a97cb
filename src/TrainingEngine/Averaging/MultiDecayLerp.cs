using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>How a shadow's update is rounded: each library writes the same average with different float32 arithmetic.</summary>
public enum UpdateForm : byte
{
    /// <summary><c>s − α(s − w)</c>, two roundings (TF's <c>assign_sub</c>, diffusers' <c>sub_</c>; bit-identical to <c>s + α(w − s)</c>).</summary>
    Subtract,
    /// <summary>libtorch's <c>lerp_</c> on an AVX2 CPU: <c>fma(α, w − s, s)</c> for α &lt; 0.5, else <c>fma(α − 1, w − s, w)</c> (timm, ema-pytorch, <c>AveragedModel</c>).</summary>
    Lerp,
    /// <summary><c>a·s + b·w</c>, three roundings (Keras, PyTorch's <c>get_ema_avg_fn</c> in Lightning).</summary>
    Blend,
    /// <summary><c>s.mul_(a).add_(w, alpha=b)</c>: <c>fma(b, w, a·s)</c>, libtorch's vectorized add with alpha (BEMA).</summary>
    ScaleAdd,
    /// <summary>
    /// <c>w.lerp(s, β)</c>, libtorch's lerp from the weights towards the shadow (EDM): <c>fma(−β, w − s, w)</c> for β &lt; 0.5,
    /// else <c>fma(1 − β, w − s, s)</c> (its <c>fma(β − 1, s − w, s)</c>; β − 1 is exact there).
    /// </summary>
    ReverseLerp,
}

/// <summary>One shadow's update: its form and coefficients (α for subtract and lerp; a and b for blend).</summary>
public readonly record struct ShadowUpdate(UpdateForm Form, float A, float B = 0)
{
    public static ShadowUpdate Subtract(float alpha) => new(UpdateForm.Subtract, alpha);
    public static ShadowUpdate Lerp(float alpha) => new(UpdateForm.Lerp, alpha);
    public static ShadowUpdate Blend(float onShadow, float onWeights) => new(UpdateForm.Blend, onShadow, onWeights);
    public static ShadowUpdate ScaleAdd(float onShadow, float onWeights) => new(UpdateForm.ScaleAdd, onShadow, onWeights);
    public static ShadowUpdate ReverseLerp(float beta) => new(UpdateForm.ReverseLerp, beta);
}

/// <summary>
/// The EMA update of K shadows of one float32 tensor in a single pass over memory: each block of <c>w</c>
/// is read from memory once and applied to every shadow, so the pass moves 2K + 1 words per element
/// instead of the 3K of K separate <c>lerp_</c> calls (stock libtorch has no fused multi-output lerp).
/// Each shadow has its own <see cref="UpdateForm"/>. Large tensors are split across <c>parallelism</c> threads.
/// </summary>
public static unsafe class MultiDecayLerp
{
    /// <summary>Below this many elements a second thread costs more than it saves.</summary>
    const long ParallelThreshold = 1 << 17;

    public const int MaxShadows = EmaSettings.MaxDecays;

    /// <summary>Updates <paramref name="shadows"/> towards <paramref name="weights"/> (<c>s ← s + α(w − s)</c>, the subtract form).</summary>
    public static void Apply(Tensor weights, ReadOnlySpan<Tensor> shadows, ReadOnlySpan<float> alphas, int parallelism)
    {
        Span<ShadowUpdate> updates = stackalloc ShadowUpdate[alphas.Length];
        for (var k = 0; k < alphas.Length; k++) updates[k] = ShadowUpdate.Subtract(alphas[k]);
        Apply(weights, shadows, updates, parallelism);
    }

    /// <summary>Updates <paramref name="shadows"/> towards <paramref name="weights"/>; all must be contiguous float32 CPU tensors of one size.</summary>
    public static void Apply(Tensor weights, ReadOnlySpan<Tensor> shadows, ReadOnlySpan<ShadowUpdate> updates, int parallelism)
    {
        if (!Supports(weights)) throw new ArgumentException("The weights must be a contiguous float32 CPU tensor.", nameof(weights));
        foreach (var s in shadows)
            if (!Supports(s) || s.NumberOfElements != weights.NumberOfElements)
                throw new ArgumentException("Every shadow must be a contiguous float32 CPU tensor the size of the weights.", nameof(shadows));
        ApplyUnchecked(weights, shadows, updates, parallelism);
    }

    public static bool Supports(Tensor t) => t.dtype == ScalarType.Float32 && t.is_contiguous() && t.device_type == TorchSharp.DeviceType.CPU;

    /// <summary>The hot path for callers that checked <see cref="Supports"/> once up front.</summary>
    internal static void ApplyUnchecked(Tensor weights, ReadOnlySpan<Tensor> shadows, ReadOnlySpan<ShadowUpdate> updates, int parallelism)
    {
        Span<IntPtr> pointers = stackalloc IntPtr[shadows.Length];
        for (var k = 0; k < shadows.Length; k++) pointers[k] = (IntPtr)DataPointer(shadows[k]);
        Apply((float*)DataPointer(weights), pointers, updates, weights.NumberOfElements, parallelism);
    }

    static void* DataPointer(Tensor t) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <param name="weights">The live tensor's memory.</param>
    /// <param name="shadows">One pointer per shadow, each to memory of the same length.</param>
    /// <param name="updates">The form and coefficients per shadow.</param>
    static void Apply(float* weights, ReadOnlySpan<IntPtr> shadows, ReadOnlySpan<ShadowUpdate> updates, long length, int parallelism)
    {
        if (shadows.Length != updates.Length || shadows.Length > MaxShadows)
            throw new ArgumentException($"Need one update per shadow and at most {MaxShadows} shadows.");
        var k = shadows.Length;
        var s = stackalloc float*[k];
        var a = stackalloc ShadowUpdate[k];
        for (var j = 0; j < k; j++) { s[j] = (float*)shadows[j]; a[j] = updates[j]; }

        if (parallelism <= 1 || length < ParallelThreshold) Range(weights, s, a, k, 0, length);
        else Split(weights, s, a, k, length, parallelism);
    }

    /// <summary>
    /// Chunks aligned to the vector width so every thread runs the vector loop. A method of its own: the
    /// lambda's closure would otherwise be allocated on every call, parallel or not.
    /// </summary>
    static void Split(float* weights, float** s, ShadowUpdate* a, int k, long length, int parts)
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
            if (start < end) Range((float*)w, (float**)sp, (ShadowUpdate*)ap, k, start, end);
        });
    }

    /// <summary>
    /// Elements per block: the block of <c>w</c> (8 KiB) stays in L1 while each shadow in turn streams
    /// past it, so <c>w</c> is read from memory once. Walking all K shadows element by element instead
    /// keeps 2K + 1 streams in flight, which measured slower (prefetcher limits and 4 KiB aliasing
    /// between the identically aligned shadow allocations).
    /// </summary>
    const int Block = 2048;

    static void Range(float* w, float** s, ShadowUpdate* a, int k, long start, long end)
    {
        for (var blockStart = start; blockStart < end; blockStart += Block)
        {
            var blockEnd = Math.Min(end, blockStart + Block);
            for (var j = 0; j < k; j++)
            {
                switch (a[j].Form)
                {
                    case UpdateForm.Subtract: Subtract(w, s[j], a[j].A, blockStart, blockEnd); break;
                    // libtorch picks the formula by the weight: near 0 it moves from s, near 1 from w.
                    case UpdateForm.Lerp when a[j].A < 0.5f: FusedLerp(s[j], w, s[j], a[j].A, blockStart, blockEnd); break;
                    case UpdateForm.Lerp: FusedLerp(w, w, s[j], a[j].A - 1f, blockStart, blockEnd); break;
                    case UpdateForm.ReverseLerp when a[j].A < 0.5f: FusedLerp(w, w, s[j], -a[j].A, blockStart, blockEnd); break;
                    case UpdateForm.ReverseLerp: FusedLerp(s[j], w, s[j], 1f - a[j].A, blockStart, blockEnd); break;
                    case UpdateForm.ScaleAdd: ScaleAdd(w, s[j], a[j].A, a[j].B, blockStart, blockEnd); break;
                    default: Blend(w, s[j], a[j].A, a[j].B, blockStart, blockEnd); break;
                }
            }
        }
    }

    /// <summary>s[i] += α (w[i] − s[i]); the same arithmetic for every element and any K, so results never depend on K or on the split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Subtract(float* w, float* s, float alpha, long start, long end)
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

    /// <summary>s[i] = fma(c, w[i] − s[i], base[i]), one rounding for the multiply-add, as libtorch's vectorized lerp.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FusedLerp(float* baseValues, float* w, float* s, float c, long start, long end)
    {
        var width = Vector<float>.Count;
        var cv = new Vector<float>(c);
        var i = start;
        for (; i + width <= end; i += width)
        {
            var sv = Vector.Load(s + i);
            Vector.Store(Vector.FusedMultiplyAdd(cv, Vector.Load(w + i) - sv, Vector.Load(baseValues + i)), s + i);
        }
        for (; i < end; i++) s[i] = MathF.FusedMultiplyAdd(c, w[i] - s[i], baseValues[i]);
    }

    /// <summary>s[i] = a·s[i] + b·w[i], each product rounded, then the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Blend(float* w, float* s, float a, float b, long start, long end)
    {
        var width = Vector<float>.Count;
        var av = new Vector<float>(a);
        var bv = new Vector<float>(b);
        var i = start;
        for (; i + width <= end; i += width)
            Vector.Store(av * Vector.Load(s + i) + bv * Vector.Load(w + i), s + i);
        for (; i < end; i++) s[i] = a * s[i] + b * w[i];
    }

    /// <summary>s[i] = fma(b, w[i], a·s[i]): the product a·s rounded, then one rounding for the multiply-add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ScaleAdd(float* w, float* s, float a, float b, long start, long end)
    {
        var width = Vector<float>.Count;
        var av = new Vector<float>(a);
        var bv = new Vector<float>(b);
        var i = start;
        for (; i + width <= end; i += width)
            Vector.Store(Vector.FusedMultiplyAdd(bv, Vector.Load(w + i), av * Vector.Load(s + i)), s + i);
        for (; i < end; i++) s[i] = MathF.FusedMultiplyAdd(b, w[i], a * s[i]);
    }

    /// <summary>
    /// BEMA's weights read: out[i] = e[i] + α·(w[i] − θ₀[i]), each operation rounded (<c>ema + alpha * (θ − θ₀)</c>).
    /// All four must be contiguous float32 CPU tensors of one size.
    /// </summary>
    public static void BiasCorrected(Tensor ema, Tensor weights, Tensor anchor, float alpha, Tensor output)
    {
        float* e = (float*)DataPointer(ema), w = (float*)DataPointer(weights), z = (float*)DataPointer(anchor), o = (float*)DataPointer(output);
        var length = weights.NumberOfElements;
        var width = Vector<float>.Count;
        var av = new Vector<float>(alpha);
        long i = 0;
        for (; i + width <= length; i += width)
            Vector.Store(Vector.Load(e + i) + av * (Vector.Load(w + i) - Vector.Load(z + i)), o + i);
        for (; i < length; i++) o[i] = e[i] + alpha * (w[i] - z[i]);
    }

    /// <summary>
    /// LAWA's weights read: the mean of <paramref name="copies"/> (oldest first) as Sanyal et al.'s <c>lawa.py</c> folds
    /// them in: m = c₀, then m ← m + (c_n − m) / (n + 1), each operation rounded.
    /// </summary>
    public static void RunningMean(ReadOnlySpan<Tensor> copies, Tensor output)
    {
        var o = (float*)DataPointer(output);
        var length = output.NumberOfElements;
        var first = (float*)DataPointer(copies[0]);
        new Span<float>(first, checked((int)length)).CopyTo(new Span<float>(o, (int)length));
        var width = Vector<float>.Count;
        for (var n = 1; n < copies.Length; n++)
        {
            var c = (float*)DataPointer(copies[n]);
            var count = (float)(n + 1);
            var countV = new Vector<float>(count);
            long i = 0;
            for (; i + width <= length; i += width)
            {
                var m = Vector.Load(o + i);
                Vector.Store(m + (Vector.Load(c + i) - m) / countV, o + i);
            }
            for (; i < length; i++) o[i] += (c[i] - o[i]) / count;
        }
    }
}
