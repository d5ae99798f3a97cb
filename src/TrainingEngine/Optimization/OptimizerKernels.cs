using System.Numerics;
using System.Runtime.CompilerServices;

namespace EmaLab.TrainingEngine.Optimization;

/// <summary>
/// One pass over a parameter's memory per optimizer step, with the arithmetic of TorchSharp's (and
/// PyTorch's single-tensor) optimizers op for op: the same float32 constants, the same operation order,
/// and a fused multiply-add exactly where libtorch's vectorized <c>add(other, alpha)</c> uses one. No
/// torch scalars and no temporaries are created, so nothing the garbage collector finalizes can be in use.
/// </summary>
static unsafe class OptimizerKernels
{
    /// <summary>Elements below which a second thread costs more than it saves.</summary>
    internal const long ParallelThreshold = 1 << 17;

    /// <summary>
    /// PyTorch SGD: <c>g ← g + wd·p</c>; with momentum <c>b ← b·μ + g</c> (the first step <c>b ← g</c>);
    /// <c>p ← p − lr·b</c> (or <c>− lr·g</c> without momentum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Sgd(float* p, float* g, float* buffer, long start, long end, in SgdConstants c)
    {
        var width = Vector<float>.Count;
        var wd = new Vector<float>(c.WeightDecay);
        var mu = new Vector<float>(c.Momentum);
        var minusLr = new Vector<float>(c.MinusLearningRate);
        var i = start;
        for (; i + width <= end; i += width)
        {
            var gv = Vector.Load(g + i);
            var pv = Vector.Load(p + i);
            if (c.HasWeightDecay) gv = Vector.FusedMultiplyAdd(pv, wd, gv);
            if (buffer != null)
            {
                gv = c.FirstStep ? gv : Vector.Load(buffer + i) * mu + gv;
                Vector.Store(gv, buffer + i);
            }
            Vector.Store(Vector.FusedMultiplyAdd(gv, minusLr, pv), p + i);
        }
        for (; i < end; i++)
        {
            var gi = g[i];
            if (c.HasWeightDecay) gi = MathF.FusedMultiplyAdd(p[i], c.WeightDecay, gi);
            if (buffer != null)
            {
                gi = c.FirstStep ? gi : buffer[i] * c.Momentum + gi;
                buffer[i] = gi;
            }
            p[i] = MathF.FusedMultiplyAdd(gi, c.MinusLearningRate, p[i]);
        }
    }

    /// <summary>
    /// PyTorch Adam / AdamW: (AdamW: <c>p ← p·(1 − lr·wd)</c>; Adam: <c>g ← g + wd·p</c>);
    /// <c>m ← m·β1 + (1 − β1)·g</c>; <c>v ← v·β2 + (1 − β2)·g·g</c>;
    /// <c>p ← p − (lr / bc1) · m / (√v / √bc2 + ε)</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Adam(float* p, float* g, float* m, float* v, long start, long end, in AdamConstants c)
    {
        var width = Vector<float>.Count;
        var decay = new Vector<float>(c.WeightDecay);
        var shrink = new Vector<float>(c.Shrink);
        var beta1 = new Vector<float>(c.Beta1);
        var oneMinusBeta1 = new Vector<float>(c.OneMinusBeta1);
        var beta2 = new Vector<float>(c.Beta2);
        var oneMinusBeta2 = new Vector<float>(c.OneMinusBeta2);
        var sqrtBc2 = new Vector<float>(c.SqrtBiasCorrection2);
        var eps = new Vector<float>(c.Epsilon);
        var minusStep = new Vector<float>(c.MinusStepSize);
        var i = start;
        for (; i + width <= end; i += width)
        {
            var pv = Vector.Load(p + i);
            var gv = Vector.Load(g + i);
            if (c.Decoupled) pv *= shrink;
            else if (c.HasWeightDecay) gv = Vector.FusedMultiplyAdd(pv, decay, gv);
            var mv = Vector.FusedMultiplyAdd(gv, oneMinusBeta1, Vector.Load(m + i) * beta1);
            var vv = Vector.FusedMultiplyAdd(oneMinusBeta2 * gv, gv, Vector.Load(v + i) * beta2);
            Vector.Store(mv, m + i);
            Vector.Store(vv, v + i);
            var denominator = Vector.SquareRoot(vv) / sqrtBc2 + eps;
            Vector.Store(pv + minusStep * mv / denominator, p + i);
        }
        for (; i < end; i++)
        {
            var pi = p[i];
            var gi = g[i];
            if (c.Decoupled) pi *= c.Shrink;
            else if (c.HasWeightDecay) gi = MathF.FusedMultiplyAdd(pi, c.WeightDecay, gi);
            var mi = MathF.FusedMultiplyAdd(gi, c.OneMinusBeta1, m[i] * c.Beta1);
            var vi = MathF.FusedMultiplyAdd(c.OneMinusBeta2 * gi, gi, v[i] * c.Beta2);
            m[i] = mi;
            v[i] = vi;
            var denominator = MathF.Sqrt(vi) / c.SqrtBiasCorrection2 + c.Epsilon;
            p[i] = pi + c.MinusStepSize * mi / denominator;
        }
    }
}

/// <summary>An SGD step's constants, rounded to float32 as libtorch rounds a double scalar for a float tensor.</summary>
readonly struct SgdConstants(double learningRate, double momentum, double weightDecay, bool firstStep)
{
    public readonly float MinusLearningRate = (float)-learningRate;
    public readonly float Momentum = (float)momentum;
    public readonly float WeightDecay = (float)weightDecay;
    public readonly bool HasWeightDecay = weightDecay != 0;
    public readonly bool FirstStep = firstStep;
}

/// <summary>An Adam(W) step's constants for the 1-based step <c>t</c>, computed in double and rounded to float32 as libtorch does.</summary>
readonly struct AdamConstants
{
    public AdamConstants(double learningRate, double beta1, double beta2, double epsilon, double weightDecay, bool decoupled, long t)
    {
        var biasCorrection1 = 1 - Math.Pow(beta1, t);
        var biasCorrection2 = 1 - Math.Pow(beta2, t);
        Decoupled = decoupled;
        HasWeightDecay = weightDecay != 0;
        WeightDecay = (float)weightDecay;
        Shrink = (float)(1 - learningRate * weightDecay);
        Beta1 = (float)beta1;
        OneMinusBeta1 = (float)(1 - beta1);
        Beta2 = (float)beta2;
        OneMinusBeta2 = (float)(1 - beta2);
        SqrtBiasCorrection2 = (float)Math.Sqrt(biasCorrection2);
        Epsilon = (float)epsilon;
        MinusStepSize = (float)-(learningRate / biasCorrection1);
    }

    public readonly bool Decoupled, HasWeightDecay;
    public readonly float WeightDecay, Shrink, Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, SqrtBiasCorrection2, Epsilon, MinusStepSize;
}
