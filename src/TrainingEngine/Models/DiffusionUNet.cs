using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// A small U-Net for denoising diffusion (Ho et al.'s architecture, scaled down): a sinusoidal embedding of the timestep
/// through a two-layer MLP; a 3x3 stem; per resolution level <c>BlocksPerLevel</c> residual blocks (GroupNorm, SiLU,
/// 3x3 convolutions, the time embedding added between them) then a strided 3x3 convolution down; a middle of two
/// residual blocks with single-head self-attention between them (a setting); the way back up with one block more per
/// level, each taking the matching skip, and a nearest-neighbour upsampling to the skip's size (so odd sizes such as
/// 7x7 work) followed by a 3x3 convolution; GroupNorm, SiLU and a 3x3 convolution out to the image's channels. It
/// predicts the noise ε of <c>x_t</c> at timestep <c>t</c>: <c>forward(x [B, C, H, W], t [B] int64)</c>.
/// No implicit torch scalar is created in <c>forward</c> (see <see cref="TorchScalars"/>).
/// </summary>
public sealed class DiffusionUNet : Module<Tensor, Tensor, Tensor>
{
    /// <summary>The shape of the network: image channels, the width of each level (the first also the embedding's), blocks per level, attention in the middle.</summary>
    public sealed record Settings(int InputChannels, int[] Widths, int BlocksPerLevel = 1, bool MiddleAttention = true);

    readonly int _embedding;
    readonly Tensor _frequencies;
    readonly Module<Tensor, Tensor> _time1, _time2, _stem, _outNorm, _outConv;
    readonly TorchSharp.Modules.ModuleList<Module<Tensor, Tensor, Tensor>> _down, _up;
    readonly TorchSharp.Modules.ModuleList<Module<Tensor, Tensor>> _downsample, _upsample;
    readonly Module<Tensor, Tensor, Tensor> _middle1, _middle2;
    readonly Module<Tensor, Tensor>? _attention;
    readonly int _levels, _blocks;

    public DiffusionUNet(Settings settings) : base("DiffusionUNet")
    {
        if (settings.Widths.Length == 0 || settings.Widths.Any(w => w < 2 || w % 2 != 0))
            throw new ArgumentException("Each level's width must be an even number of at least 2.", nameof(settings));
        var widths = settings.Widths;
        (_levels, _blocks, _embedding) = (widths.Length, settings.BlocksPerLevel, widths[0]);
        var half = _embedding / 2;
        _frequencies = tensor(Enumerable.Range(0, half).Select(i => Math.Exp(-Math.Log(10_000) * i / half)).ToArray(), ScalarType.Float32);
        var timeWidth = 4 * _embedding;
        _time1 = Linear(_embedding, timeWidth);
        _time2 = Linear(timeWidth, timeWidth);
        _stem = Conv2d(settings.InputChannels, widths[0], kernel_size: 3, padding: 1);

        var skips = new Stack<long>();
        skips.Push(widths[0]);
        long channels = widths[0];
        var down = new List<Module<Tensor, Tensor, Tensor>>();
        var downsample = new List<Module<Tensor, Tensor>>();
        for (var level = 0; level < _levels; level++)
        {
            for (var b = 0; b < _blocks; b++)
            {
                down.Add(new ResidualBlock(channels, widths[level], timeWidth));
                channels = widths[level];
                skips.Push(channels);
            }
            if (level < _levels - 1)
            {
                downsample.Add(Conv2d(channels, channels, kernel_size: 3, stride: 2, padding: 1));
                skips.Push(channels);
            }
        }
        _middle1 = new ResidualBlock(channels, channels, timeWidth);
        _attention = settings.MiddleAttention ? new SelfAttention(channels) : null;
        _middle2 = new ResidualBlock(channels, channels, timeWidth);
        var up = new List<Module<Tensor, Tensor, Tensor>>();
        var upsample = new List<Module<Tensor, Tensor>>();
        for (var level = _levels - 1; level >= 0; level--)
        {
            for (var b = 0; b <= _blocks; b++)
            {
                up.Add(new ResidualBlock(channels + skips.Pop(), widths[level], timeWidth));
                channels = widths[level];
            }
            if (level > 0) upsample.Add(Conv2d(channels, channels, kernel_size: 3, padding: 1));
        }
        _outNorm = Norm(channels);
        _outConv = Conv2d(channels, settings.InputChannels, kernel_size: 3, padding: 1);
        (_down, _downsample, _up, _upsample) = (new(down.ToArray()), new(downsample.ToArray()), new(up.ToArray()), new(upsample.ToArray()));
        register_module("time1", _time1);
        register_module("time2", _time2);
        register_module("stem", _stem);
        register_module("down", _down);
        register_module("downsample", _downsample);
        register_module("middle1", _middle1);
        if (_attention is not null) register_module("attention", _attention);
        register_module("middle2", _middle2);
        register_module("up", _up);
        register_module("upsample", _upsample);
        register_module("out_norm", _outNorm);
        register_module("out_conv", _outConv);
    }

    /// <summary>
    /// Nothing more to register: every part is registered by its PyTorch name in the constructor. TorchSharp registers a
    /// module's fields by their .NET names (<c>_norm1</c>) when a parent registers it, which gave each block its parts
    /// twice in the state_dict — names PyTorch's class does not have, and tensors averaged twice by every EMA.
    /// </summary>
    protected override void RegisterComponents() { }

    /// <summary>GroupNorm's groups for a width: 8 where they divide it, else the largest divisor of 8 that does.</summary>
    internal static long Groups(long channels) => new[] { 8L, 4, 2, 1 }.First(g => channels % g == 0);

    /// <summary>
    /// A GroupNorm with its affine parameters set to γ = 1, β = 0 here: TorchSharp 0.107 leaves them as allocated (a
    /// bias read NaN from uninitialised memory in a test), where PyTorch's reset_parameters sets them.
    /// </summary>
    internal static Module<Tensor, Tensor> Norm(long channels)
    {
        var norm = GroupNorm(Groups(channels), channels);
        using var _ = no_grad();
        foreach (var (name, parameter) in norm.named_parameters())
            if (name == "weight") init.ones_(parameter); else init.zeros_(parameter);
        return norm;
    }

    /// <summary>The sinusoidal embedding of timesteps [B]: sin then cos of t·10000^(−i/half), i &lt; half (Ho et al.'s, as in diffusers with no shift).</summary>
    public Tensor TimeEmbedding(Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var angles = timesteps.to(ScalarType.Float32).unsqueeze(1).mul(_frequencies.to(timesteps.device).unsqueeze(0));
        return cat([angles.sin(), angles.cos()], 1).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var time = _time2.forward(functional.silu(_time1.forward(TimeEmbedding(timesteps))));
        var h = _stem.forward(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        var block = 0;
        for (var level = 0; level < _levels; level++)
        {
            for (var b = 0; b < _blocks; b++)
            {
                h = _down[block++].forward(h, time);
                skips.Push(h);
            }
            if (level < _levels - 1)
            {
                h = _downsample[level].forward(h);
                skips.Push(h);
            }
        }
        h = _middle1.forward(h, time);
        if (_attention is not null) h = _attention.forward(h);
        h = _middle2.forward(h, time);
        block = 0;
        for (var level = _levels - 1; level >= 0; level--)
        {
            for (var b = 0; b <= _blocks; b++) h = _up[block++].forward(cat([h, skips.Pop()], 1), time);
            if (level > 0)
            {
                // Up to the size of the skip this level's blocks take next (odd sizes come back exactly).
                var size = skips.Peek().shape[2..];
                h = _upsample[_levels - 1 - level].forward(functional.interpolate(h, size: size, mode: InterpolationMode.Nearest));
            }
        }
        return _outConv.forward(functional.silu(_outNorm.forward(h))).MoveToOuterDisposeScope();
    }

    /// <summary>GroupNorm, SiLU, 3x3 convolution; the time embedding's projection added; GroupNorm, SiLU, 3x3 convolution; the input (through a 1x1 convolution when the width changes) added back.</summary>
    sealed class ResidualBlock : Module<Tensor, Tensor, Tensor>
    {
        readonly Module<Tensor, Tensor> _norm1, _conv1, _time, _norm2, _conv2;
        readonly Module<Tensor, Tensor>? _skip;

        public ResidualBlock(long inChannels, long outChannels, long timeWidth) : base("ResidualBlock")
        {
            _norm1 = Norm(inChannels);
            _conv1 = Conv2d(inChannels, outChannels, kernel_size: 3, padding: 1);
            _time = Linear(timeWidth, outChannels);
            _norm2 = Norm(outChannels);
            _conv2 = Conv2d(outChannels, outChannels, kernel_size: 3, padding: 1);
            register_module("norm1", _norm1);
            register_module("conv1", _conv1);
            register_module("time", _time);
            register_module("norm2", _norm2);
            register_module("conv2", _conv2);
            if (inChannels != outChannels)
            {
                _skip = Conv2d(inChannels, outChannels, kernel_size: 1);
                register_module("skip", _skip);
            }
        }

        protected override void RegisterComponents() { } // registered by name above (see DiffusionUNet.RegisterComponents)

        public override Tensor forward(Tensor x, Tensor time)
        {
            using var scope = NewDisposeScope();
            var h = _conv1.forward(functional.silu(_norm1.forward(x)));
            h = h.add(_time.forward(functional.silu(time)).unsqueeze(2).unsqueeze(3), TorchScalars.One);
            h = _conv2.forward(functional.silu(_norm2.forward(h)));
            return h.add(_skip is null ? x : _skip.forward(x), TorchScalars.One).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Single-head self-attention over the positions of a feature map: GroupNorm, q k v by 1x1 convolution, softmax(qᵀk/√C), a 1x1 projection, added back.</summary>
    sealed class SelfAttention : Module<Tensor, Tensor>
    {
        readonly Module<Tensor, Tensor> _norm, _qkv, _projection;
        readonly Tensor _scale;

        public SelfAttention(long channels) : base("SelfAttention")
        {
            _norm = Norm(channels);
            _qkv = Conv2d(channels, 3 * channels, kernel_size: 1);
            _projection = Conv2d(channels, channels, kernel_size: 1);
            _scale = tensor(1 / Math.Sqrt(channels), ScalarType.Float32);
            register_module("norm", _norm);
            register_module("qkv", _qkv);
            register_module("projection", _projection);
        }

        protected override void RegisterComponents() { } // registered by name above (see DiffusionUNet.RegisterComponents)

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var (batch, channels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            var qkv = _qkv.forward(_norm.forward(x)).reshape(batch, 3, channels, height * width);
            var (q, k, v) = (qkv.select(1, 0), qkv.select(1, 1), qkv.select(1, 2));
            var weights = functional.softmax(q.transpose(1, 2).bmm(k).mul(_scale.to(x.dtype).to(x.device)), 2); // [B, HW (queries), HW (keys)]
            var attended = v.bmm(weights.transpose(1, 2)).reshape(batch, channels, height, width);
            return x.add(_projection.forward(attended), TorchScalars.One).MoveToOuterDisposeScope();
        }
    }
}
