using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// The EMA update <c>s_k ← s_k + α_k (w − s_k)</c> for K shadows of one float32 tensor in a single
/// pass over memory: each vector of <c>w</c> is loaded once and applied to every shadow, so the pass
/// moves 2K + 1 words per element instead of the 3K of K separate <c>lerp_</c> calls (stock libtorch
/// has no fused multi-output lerp). Large tensors are split across <c>parallelism</c> threads.
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

        if (parallelism <= 1 || length < ParallelThreshold)
        {
            Range(weights, s, a, k, 0, length);
            return;
        }
        // Chunks aligned to the vector width so every thread runs the vector loop; pointers are passed as
        // integers because a lambda cannot capture pointers.
        var parts = parallelism;
        var chunk = (length / parts + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Range(float* w, float** s, float* a, int k, long start, long end)
    {
        var width = Vector<float>.Count;
        var i = start;
        if (k == 1)
        {
            // The common case without the inner loop over shadows.
            var a0 = new Vector<float>(a[0]);
            var s0 = s[0];
            for (; i + width <= end; i += width)
            {
                var sv = Vector.Load(s0 + i);
                Vector.Store(sv + a0 * (Vector.Load(w + i) - sv), s0 + i);
            }
        }
        else
        {
            var av = stackalloc Vector<float>[k];
            for (var j = 0; j < k; j++) av[j] = new Vector<float>(a[j]);
            for (; i + width <= end; i += width)
            {
                var wv = Vector.Load(w + i);
                for (var j = 0; j < k; j++)
                {
                    var p = s[j] + i;
                    var sv = Vector.Load(p);
                    Vector.Store(sv + av[j] * (wv - sv), p);
                }
            }
        }
        for (; i < end; i++)
        {
            var wi = w[i];
            for (var j = 0; j < k; j++) s[j][i] += a[j] * (wi - s[j][i]);
        }
    }
}
