using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// <c>nn.BatchNorm2d</c> with the same parameters, buffers, names and arithmetic as TorchSharp's, except that
/// the training-mode counter update <c>num_batches_tracked += 1</c> uses scalars that live for the whole
/// process (<see cref="TorchScalars"/>). TorchSharp's module writes <c>add_(1)</c>: implicit <c>Scalar</c>s
/// (the value and the alpha) that nothing keeps alive during the native call, so a collection on another
/// thread can free one mid-call and fail the step.
/// </summary>
public sealed class ScalarFreeBatchNorm2d(long features)
    : BatchNorm(features, eps: 1e-5, momentum: 0.1, affine: true, track_running_stats: true, device: null, dtype: null, name: "BatchNorm2d")
{
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
            // add_(scalar) alone would pass an implicit alpha of 1 that nothing keeps alive.
            count.add_(TorchScalars.One, TorchScalars.One);
            // momentum = null means a cumulative average (as swa_utils.update_bn sets it).
            if (momentum is null) factor = 1.0 / count.item<long>();
        }
        return nn.functional.batch_norm(input, running_mean, running_var, weight, bias, training, factor, eps);
    }
}
