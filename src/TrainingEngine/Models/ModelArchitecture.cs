using System.Text.Json;
using System.Text.Json.Serialization;

namespace EmaLab.TrainingEngine.Models;

/// <summary>
/// Everything needed to rebuild a model: its kind, sizes, input shape and class count. Stored as
/// JSON in every exported checkpoint; the README shows the equivalent PyTorch <c>nn.Sequential</c>.
/// </summary>
public sealed record ModelArchitecture
{
    public const string Mlp = "mlp";
    public const string Cnn = "cnn";

    public required string Kind { get; init; }
    public int InputChannels { get; init; } = 1;
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required int Classes { get; init; }
    /// <summary>Hidden layer widths of the MLP.</summary>
    public int[] Hidden { get; init; } = [];
    /// <summary>Output channels of each conv block of the CNN (each block halves the spatial size).</summary>
    public int[] Channels { get; init; } = [];

    public static readonly int[] DefaultHidden = [256, 256];
    public static readonly int[] DefaultChannels = [16, 32];

    public static IReadOnlyList<string> Kinds { get; } = [Mlp, Cnn];

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
        if (Kind is not (Mlp or Cnn)) yield return new InvalidSettingException("model", $"Unknown model '{Kind}'; known models: {string.Join(", ", Kinds)}.");
        if (Height < 1 || Width < 1 || InputChannels < 1) yield return new InvalidSettingException("height", "The input shape must be positive.");
        if (Classes < 2) yield return new InvalidSettingException("classes", "A classifier needs at least 2 classes.");
        var shapeOk = true;
        if (Kind == Mlp && (Hidden is null || Hidden.Length is 0 or > MaxLayers || Hidden.Any(h => h < 1 || h > 16384)))
        {
            shapeOk = false;
            yield return new InvalidSettingException("hidden", $"The MLP needs 1 to {MaxLayers} hidden sizes, each from 1 to 16384.");
        }
        if (Kind == Cnn && (Channels is null || Channels.Length is 0 or > MaxLayers || Channels.Any(c => c < 1 || c > 1024)))
        {
            shapeOk = false;
            yield return new InvalidSettingException("channels", $"The CNN needs 1 to {MaxLayers} channel counts, each from 1 to 1024.");
        }
        else if (Kind == Cnn && (Height % (1L << Channels.Length) != 0 || Width % (1L << Channels.Length) != 0))
        {
            shapeOk = false;
            yield return new InvalidSettingException("channels",
                $"The CNN's {Channels.Length} pooling stages need the input size to be a multiple of {1L << Channels.Length}; it is {Height}x{Width}.");
        }
        if (shapeOk && Kind is Mlp or Cnn && ParameterCount() is var parameters and > MaxParameters)
            yield return new InvalidSettingException(Kind == Mlp ? "hidden" : "channels",
                $"This model would have {parameters:N0} parameters; at most {MaxParameters:N0} are allowed.");
    }
}
