using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using Sequential = TorchSharp.Modules.Sequential;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// A ResNet for small images in the style of He et al.'s CIFAR networks (ResNet-20 = three stages of three blocks):
/// a 3x3 stem, stages of <see cref="BasicBlock"/>s whose first block halves the size from the second stage on, global
/// average pooling and a linear head. Submodules are registered under the names of docs/training.md's PyTorch class
/// (<c>stem.0.weight</c>, <c>blocks.3.shortcut.1.running_mean</c>, <c>head.bias</c>), so an exported checkpoint loads
/// into it with <c>load_state_dict</c>.
/// </summary>
public sealed class ResidualNetwork : Module<Tensor, Tensor>
{
    readonly Sequential _stem;
    readonly Sequential _blocks;
    readonly Module<Tensor, Tensor> _head;

    public ResidualNetwork(ModelArchitecture a) : base("ResNet")
    {
        var widths = a.Channels;
        _stem = Sequential(
            ("0", Conv2d(a.InputChannels, widths[0], kernel_size: 3, padding: 1, bias: false)),
            ("1", new ScalarFreeBatchNorm2d(widths[0])),
            ("2", ReLU()));
        var blocks = new List<(string, Module<Tensor, Tensor>)>();
        long channels = widths[0];
        for (var stage = 0; stage < widths.Length; stage++)
            for (var b = 0; b < a.Blocks; b++)
            {
                var stride = stage > 0 && b == 0 ? 2 : 1;
                blocks.Add((blocks.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), new BasicBlock(channels, widths[stage], stride)));
                channels = widths[stage];
            }
        _blocks = Sequential(blocks);
        _head = Linear(channels, a.Classes);
        register_module("stem", _stem);
        register_module("blocks", _blocks);
        register_module("head", _head);
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return _head.forward(Features(input)).MoveToOuterDisposeScope();
    }

    /// <summary>The penultimate features: the last stage's maps averaged over their positions, [B, last width] (what the head reads).</summary>
    public Tensor Features(Tensor input)
    {
        using var scope = NewDisposeScope();
        // Channels-last from the stem on (the input's single channel has no layout to choose): see ChannelsLast.
        var maps = _blocks.forward(ChannelsLast.Of(_stem.forward(input)));
        return maps.mean([2, 3]).MoveToOuterDisposeScope();
    }

    /// <summary>Two 3x3 convolutions with batch norm; the input is added back (through a strided 1x1 convolution and batch norm when the shape changes).</summary>
    sealed class BasicBlock : Module<Tensor, Tensor>
    {
        readonly Module<Tensor, Tensor> _conv1, _bn1, _conv2, _bn2;
        readonly Sequential? _shortcut;

        public BasicBlock(long inChannels, long outChannels, int stride) : base("BasicBlock")
        {
            _conv1 = Conv2d(inChannels, outChannels, kernel_size: 3, stride: stride, padding: 1, bias: false);
            _bn1 = new ScalarFreeBatchNorm2d(outChannels);
            _conv2 = Conv2d(outChannels, outChannels, kernel_size: 3, padding: 1, bias: false);
            _bn2 = new ScalarFreeBatchNorm2d(outChannels);
            register_module("conv1", _conv1);
            register_module("bn1", _bn1);
            register_module("conv2", _conv2);
            register_module("bn2", _bn2);
            if (stride != 1 || inChannels != outChannels)
            {
                _shortcut = Sequential(
                    ("0", Conv2d(inChannels, outChannels, kernel_size: 1, stride: stride, bias: false)),
                    ("1", new ScalarFreeBatchNorm2d(outChannels)));
                register_module("shortcut", _shortcut);
            }
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var residual = _bn2.forward(_conv2.forward(functional.relu(_bn1.forward(_conv1.forward(input)))));
            var shortcut = _shortcut is null ? input : _shortcut.forward(input);
            // add_(t) alone would pass an implicit alpha nothing keeps alive (TorchScalars).
            return functional.relu(residual.add_(shortcut, TorchScalars.One)).MoveToOuterDisposeScope();
        }
    }
}
