using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// <c>nn.BatchNorm2d</c> with the same parameters, buffers, names and arithmetic as TorchSharp's, except that
/// the training-mode counter update <c>num_batches_tracked += 1</c> uses a scalar that lives for the whole
/// process. TorchSharp's module writes <c>add_(1)</c>: an implicit <c>Scalar</c> that nothing keeps alive
/// during the native call, so a collection on another thread can free it mid-call and fail the step.
/// </summary>
public sealed class ScalarFreeBatchNorm2d(long features)
    : BatchNorm(features, eps: 1e-5, momentum: 0.1, affine: true, track_running_stats: true, device: null, dtype: null, name: "BatchNorm2d")
{
    // A static root: never finalized, so safe to hand to any native call on any thread.
    static readonly Scalar One = 1L.ToScalar();

    protected override void ValidateInputDimensions(Tensor input)
    {
        if (input.ndim != 4) throw new ArgumentException($"expected 4D input, but got {input.ndim}D input.", nameof(input));
    }

    public override Tensor forward(Tensor input)
    {
        ValidateInputDimensions(input);
        var factor = momentum ?? 0.0;
        if (training && num_batches_tracked is { } count)
        {
            count.add_(One);
            // momentum = null means a cumulative average (as swa_utils.update_bn sets it).
            if (momentum is null) factor = 1.0 / count.item<long>();
        }
        return nn.functional.batch_norm(input, running_mean, running_var, weight, bias, training, factor, eps);
    }
}
