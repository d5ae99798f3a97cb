using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// Puts a convolution network's feature maps in channels-last memory order (NHWC strides, the same logical NCHW
/// shape), which every following convolution, batch norm and ReLU keeps. Two reasons, both measured on this engine's
/// libtorch (TorchSharp 0.107, oneDNN 3.7.1):
/// <list type="bullet">
/// <item>oneDNN computes NHWC convolutions in place of reordering NCHW maps to its blocked layout and back on every
/// call: a ResNet-20 step of batch 128 took 169 ms instead of 208 on two threads, 294 instead of 365 on one (bench).</item>
/// <item>The blocked layout pads a channel count up to oneDNN's vector width (8 floats under the AVX2 cap of
/// <see cref="NativeSettings"/>, 16 on AVX-512), and its input-gradient pass over padded channels returned NaN or
/// wrong values (12 channels under AVX2: NaN in 2 of 20 passes, errors of 86 % in others). NHWC is never padded.</item>
/// </list>
/// The price: libtorch's channels-last batch norm sums each channel in float32, one row after another, which doubles
/// float32's rounding in the gradients (a ResNet-20 at batch 128: the worst tensor 1.1 % from float64 against 0.5 % in
/// NCHW, by the norm of the difference), as PyTorch's own channels-last training does (0.9 % against 0.4 % on 1.13).
/// Parameters and their gradients stay contiguous (autograd lays a gradient out like its parameter), so checkpoints
/// and the optimizers see no difference. A map with one channel (a grayscale input) is both layouts at once and stays
/// as it is: the first convolution's output is converted.
/// </summary>
static class ChannelsLast
{
    /// <summary>The same values in NHWC memory order; free when <paramref name="maps"/> already is.</summary>
    public static Tensor Of(Tensor maps) => maps.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
}
