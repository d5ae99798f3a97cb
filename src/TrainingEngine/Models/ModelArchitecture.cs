using System.Text.Json;
using System.Text.Json.Serialization;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// Everything needed to rebuild a model: its kind, sizes, input shape and class count. Stored as
/// JSON in every exported checkpoint; docs/training.md shows the equivalent PyTorch modules.
/// </summary>
public sealed record ModelArchitecture
{
    public const string Mlp = "mlp";
    public const string Cnn = "cnn";
    public const string ResNet = "resnet";
    /// <summary>The denoising diffusion U-Net (<see cref="DiffusionUNet"/>): a generative model, trained and scored as such.</summary>
    public const string UNet = "unet";

    public required string Kind { get; init; }
    public int InputChannels { get; init; } = 1;
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required int Classes { get; init; }
    /// <summary>Hidden layer widths of the MLP.</summary>
    public int[] Hidden { get; init; } = [];
    /// <summary>Output channels of each conv block of the CNN (each block halves the spatial size), of each stage of the ResNet, or of each resolution level of the U-Net.</summary>
    public int[] Channels { get; init; } = [];
    /// <summary>Basic blocks per stage of the ResNet (3 makes ResNet-20 with three stages), residual blocks per level of the U-Net; 0 for the other kinds.</summary>
    public int Blocks { get; init; }
    /// <summary>The U-Net's self-attention between its two middle blocks; false for the other kinds.</summary>
    public bool Attention { get; init; }

    /// <summary>A generative model: trained to denoise, scored by its samples (no classes are predicted).</summary>
    [JsonIgnore] public bool IsDiffusion => Kind == UNet;

    public static readonly int[] DefaultHidden = [256, 256];
    public static readonly int[] DefaultChannels = [16, 32];
    public static readonly int[] DefaultResNetChannels = [16, 32, 64];
    public const int DefaultBlocks = 3;
    public const int MaxBlocks = 32;
    /// <summary>The measured default: about 0.23 s a step at batch 64 on 2 cores, so a 1,200-step run with its evaluations takes about 8 minutes.</summary>
    public static readonly int[] DefaultUNetChannels = [16, 32];
    public const int DefaultUNetBlocks = 1;
    /// <summary>Resolution levels of the U-Net at most (each halves the size, rounding up).</summary>
    public const int MaxUNetLevels = 5;
    public const int MaxUNetBlocks = 8;

    public static IReadOnlyList<string> Kinds { get; } = [Mlp, Cnn, ResNet, UNet];

    /// <summary>The channel counts a kind takes when none are given (none for the MLP).</summary>
    public static int[] DefaultChannelsOf(string kind) => kind switch
    {
        Cnn => DefaultChannels, ResNet => DefaultResNetChannels, UNet => DefaultUNetChannels, _ => [],
    };

    /// <summary>The blocks a kind takes when none are given (0 where the kind has no such setting).</summary>
    public static int DefaultBlocksOf(string kind) => kind switch { ResNet => DefaultBlocks, UNet => DefaultUNetBlocks, _ => 0 };

    /// <summary>The U-Net's settings (<see cref="DiffusionUNet"/>).</summary>
    public DiffusionUNet.Settings UNetSettings() => new(InputChannels, Channels, Blocks, Attention);

    /// <summary>Hidden layers of an MLP and conv stages of a CNN at most (each CNN stage also halves the input).</summary>
    public const int MaxLayers = 16;
    /// <summary>The largest model the engine builds: 100 M parameters are 400 MB per copy, and a run holds several (EMA shadows, optimizer moments).</summary>
    public const long MaxParameters = 100_000_000;

    /// <summary>Trainable parameters of the model this describes (what <c>ModelFactory.Build</c> makes), computed without building it.</summary>
    public long ParameterCount()
    {
        long total = 0;
        if (Kind == Mlp)
        {
            long inputs = (long)InputChannels * Height * Width;
            foreach (var width in Hidden)
            {
                total += inputs * width + width;
                inputs = width;
            }
            return total + inputs * Classes + Classes;
        }
        if (Kind == ResNet)
        {
            // Stem conv + BatchNorm; per block two convs with their norms and, where the shape changes, a 1x1 shortcut with its norm.
            long c = Channels[0];
            total = InputChannels * c * 9 + 2 * c;
            for (var stage = 0; stage < Channels.Length; stage++)
                for (var b = 0; b < Blocks; b++)
                {
                    long o = Channels[stage];
                    total += c * o * 9 + 2 * o + o * o * 9 + 2 * o;
                    if (c != o || (stage > 0 && b == 0)) total += c * o + 2 * o;
                    c = o;
                }
            return total + c * Classes + Classes;
        }
        if (Kind == UNet) return UNetParameterCount();
        long channels = InputChannels, height = Height, width2 = Width;
        foreach (var outChannels in Channels)
        {
            total += channels * outChannels * 9 + 2L * outChannels; // conv without bias, BatchNorm's γ and β
            channels = outChannels;
            height /= 2;
            width2 /= 2;
        }
        return total + channels * height * width2 * Classes + Classes;
    }

    /// <summary>The U-Net's parameters, module by module as <see cref="DiffusionUNet"/> builds them.</summary>
    long UNetParameterCount()
    {
        long Conv(long inputs, long outputs, long kernel) => inputs * outputs * kernel * kernel + outputs;
        long Linear(long inputs, long outputs) => inputs * outputs + outputs;
        long Block(long inputs, long outputs, long time) =>
            2 * inputs + Conv(inputs, outputs, 3) + Linear(time, outputs) + 2 * outputs + Conv(outputs, outputs, 3) + (inputs != outputs ? Conv(inputs, outputs, 1) : 0);
        long embedding = Channels[0], time = 4 * embedding;
        var total = Linear(embedding, time) + Linear(time, time) + Conv(InputChannels, Channels[0], 3);
        var skips = new Stack<long>();
        skips.Push(Channels[0]);
        long c = Channels[0];
        for (var level = 0; level < Channels.Length; level++)
        {
            for (var b = 0; b < Blocks; b++)
            {
                total += Block(c, Channels[level], time);
                skips.Push(c = Channels[level]);
            }
            if (level < Channels.Length - 1)
            {
                total += Conv(c, c, 3);
                skips.Push(c);
            }
        }
        total += 2 * Block(c, c, time) + (Attention ? 2 * c + Conv(c, 3 * c, 1) + Conv(c, c, 1) : 0);
        for (var level = Channels.Length - 1; level >= 0; level--)
        {
            for (var b = 0; b <= Blocks; b++)
            {
                total += Block(c + skips.Pop(), Channels[level], time);
                c = Channels[level];
            }
            if (level > 0) total += Conv(c, c, 3);
        }
        return total + 2 * c + Conv(c, InputChannels, 3);
    }

    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static ModelArchitecture FromJson(string json) =>
        JsonSerializer.Deserialize<ModelArchitecture>(json, Json) ?? throw new InvalidDataException("The model architecture JSON is empty.");

    /// <summary>Throws <see cref="InvalidSettingException"/> naming the first thing that cannot be built.</summary>
    public void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem) throw problem;
    }

    /// <summary>Everything that cannot be built, at most one problem per setting.</summary>
    public IEnumerable<InvalidSettingException> Problems()
    {
        if (!Kinds.Contains(Kind)) yield return new InvalidSettingException("model", $"Unknown model '{Kind}'; known models: {string.Join(", ", Kinds)}.");
        if (Height < 1 || Width < 1 || InputChannels < 1) yield return new InvalidSettingException("height", "The input shape must be positive.");
        if (Classes < 2 && Kind != UNet) yield return new InvalidSettingException("classes", "A classifier needs at least 2 classes.");
        var shapeOk = true;
        if (Kind == Mlp && (Hidden is null || Hidden.Length is 0 or > MaxLayers || Hidden.Any(h => h < 1 || h > 16384)))
        {
            shapeOk = false;
            yield return new InvalidSettingException("hidden", $"The MLP needs 1 to {MaxLayers} hidden sizes, each from 1 to 16384.");
        }
        if (Kind == UNet && (Channels is null || Channels.Length is 0 or > MaxUNetLevels || Channels.Any(c => c < 2 || c > 1024 || c % 2 != 0)))
        {
            shapeOk = false;
            yield return new InvalidSettingException("channels",
                $"The U-Net needs 1 to {MaxUNetLevels} widths (one per resolution level), each an even number from 2 to 1024 (the first is also the time embedding's).");
        }
        else if (Kind is Cnn or ResNet && (Channels is null || Channels.Length is 0 or > MaxLayers || Channels.Any(c => c < 1 || c > 1024)))
        {
            shapeOk = false;
            yield return new InvalidSettingException("channels",
                $"The {(Kind == Cnn ? "CNN" : "ResNet")} needs 1 to {MaxLayers} channel counts (one per {(Kind == Cnn ? "conv block" : "stage")}), each from 1 to 1024.");
        }
        else if (Kind == Cnn && (Height % (1L << Channels.Length) != 0 || Width % (1L << Channels.Length) != 0))
        {
            shapeOk = false;
            yield return new InvalidSettingException("channels",
                $"The CNN's {Channels.Length} pooling stages need the input size to be a multiple of {1L << Channels.Length}; it is {Height}x{Width}.");
        }
        if (Kind == ResNet && Blocks is < 1 or > MaxBlocks)
        {
            shapeOk = false;
            yield return new InvalidSettingException("blocks", $"The ResNet needs 1 to {MaxBlocks} blocks per stage.");
        }
        if (Kind == UNet && Blocks is < 1 or > MaxUNetBlocks)
        {
            shapeOk = false;
            yield return new InvalidSettingException("blocks", $"The U-Net needs 1 to {MaxUNetBlocks} residual blocks per level.");
        }
        if (shapeOk && Kinds.Contains(Kind) && ParameterCount() is var parameters and > MaxParameters)
            yield return new InvalidSettingException(Kind == Mlp ? "hidden" : "channels",
                $"This model would have {parameters:N0} parameters; at most {MaxParameters:N0} are allowed.");
    }
}
