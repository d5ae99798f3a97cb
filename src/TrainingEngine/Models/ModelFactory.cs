using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using Sequential = TorchSharp.Modules.Sequential;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// Builds the models: the MLP as a plain <c>nn.Sequential</c>, the CNN as <see cref="ConvolutionalNetwork"/> (whose
/// names are a Sequential's), the ResNet as <see cref="ResidualNetwork"/>, so parameter and buffer names are those of
/// docs/training.md's PyTorch definitions (<c>1.weight</c>, <c>blocks.0.bn1.running_mean</c>, ...).
/// </summary>
public static class ModelFactory
{
    /// <summary>
    /// Builds the model and initialises it like PyTorch's defaults (uniform ±1/√fan_in for linear and
    /// conv weights and biases; BatchNorm γ=1, β=0), drawing from <paramref name="generator"/> so that
    /// concurrent runs in one process stay reproducible (the global torch seed is process-wide).
    /// </summary>
    public static Module<Tensor, Tensor> Build(ModelArchitecture architecture, Generator? generator = null)
    {
        if (architecture.IsDiffusion)
            throw new ArgumentException($"A {architecture.Kind} is not a classifier: build it with {nameof(Create)}.", nameof(architecture));
        architecture.Validate();
        Module<Tensor, Tensor> model = architecture.Kind switch
        {
            ModelArchitecture.ResNet => new ResidualNetwork(architecture),
            ModelArchitecture.Mlp => Numbered(MlpLayers(architecture)),
            _ => new ConvolutionalNetwork(CnnLayers(architecture)),
        };
        if (generator is not null) Initialise(model, generator);
        return model;
    }

    /// <summary>
    /// Builds a model of any kind — a classifier (<see cref="Build"/>) or the diffusion U-Net, whose forward also takes the
    /// timesteps — initialised as <see cref="Build"/> does when <paramref name="generator"/> is given.
    /// </summary>
    public static Module Create(ModelArchitecture architecture, Generator? generator = null)
    {
        if (!architecture.IsDiffusion) return Build(architecture, generator);
        architecture.Validate();
        var model = new DiffusionUNet(architecture.UNetSettings());
        if (generator is not null) Initialise(model, generator);
        return model;
    }

    static Sequential Numbered(List<Module<Tensor, Tensor>> layers) =>
        Sequential(layers.Select((m, i) => (i.ToString(System.Globalization.CultureInfo.InvariantCulture), m)).ToArray());

    static List<Module<Tensor, Tensor>> MlpLayers(ModelArchitecture a)
    {
        var layers = new List<Module<Tensor, Tensor>> { Flatten() };
        long inputs = a.InputChannels * a.Height * a.Width;
        foreach (var width in a.Hidden)
        {
            layers.Add(Linear(inputs, width));
            layers.Add(ReLU());
            inputs = width;
        }
        layers.Add(Linear(inputs, a.Classes));
        return layers;
    }

    static List<Module<Tensor, Tensor>> CnnLayers(ModelArchitecture a)
    {
        var layers = new List<Module<Tensor, Tensor>>();
        long channels = a.InputChannels, height = a.Height, width = a.Width;
        foreach (var outChannels in a.Channels)
        {
            // No conv bias: the BatchNorm that follows has its own shift.
            layers.Add(Conv2d(channels, outChannels, kernel_size: 3, padding: 1, bias: false));
            layers.Add(new ScalarFreeBatchNorm2d(outChannels));
            layers.Add(ReLU());
            layers.Add(MaxPool2d(2));
            channels = outChannels;
            height /= 2;
            width /= 2;
        }
        layers.Add(Flatten());
        layers.Add(Linear(channels * height * width, a.Classes));
        return layers;
    }

    public static void Initialise(Module model, Generator generator)
    {
        using var _ = no_grad();
        // In the order of named_modules (PyTorch's registration order), so a model's draws follow its definition.
        foreach (var module in model.modules())
        {
            if (module is not (TorchSharp.Modules.Linear or TorchSharp.Modules.Conv2d)) continue;
            foreach (var parameter in module.parameters())
            {
                var weight = module.get_parameter("weight")!;
                var fanIn = weight.shape.Skip(1).Aggregate(1L, (x, y) => x * y);
                var bound = 1.0 / Math.Sqrt(fanIn);
                using var u = rand(parameter.shape, parameter.dtype, generator: generator);
                // Scalars held until the calls return (an implicit one can be finalized mid-call).
                using var width = (2 * bound).ToScalar();
                using var shift = bound.ToScalar();
                parameter.copy_(u.mul_(width).sub_(shift));
            }
        }
    }

    public static long ParameterCount(Module model) => model.parameters().Sum(p => p.numel());
}
