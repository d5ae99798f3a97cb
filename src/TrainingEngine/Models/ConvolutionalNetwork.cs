using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// The CNN: its layers in order, registered as <c>nn.Sequential</c> registers them (<c>0</c>, <c>1</c>, ...), so its
/// parameter and buffer names are docs/training.md's PyTorch <c>nn.Sequential</c>'s; it differs from one only in putting the
/// feature maps in channels-last order after each convolution (<see cref="ChannelsLast"/>; a no-op after the first).
/// </summary>
sealed class ConvolutionalNetwork : Module<Tensor, Tensor>
{
    readonly Module<Tensor, Tensor>[] _layers;

    public ConvolutionalNetwork(IReadOnlyList<Module<Tensor, Tensor>> layers) : base("ConvolutionalNetwork")
    {
        _layers = [.. layers];
        for (var i = 0; i < _layers.Length; i++) register_module(i.ToString(System.Globalization.CultureInfo.InvariantCulture), _layers[i]);
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input;
        foreach (var layer in _layers)
        {
            x = layer.forward(x);
            if (layer is TorchSharp.Modules.Conv2d) x = ChannelsLast.Of(x);
        }
        return x.MoveToOuterDisposeScope();
    }
}
