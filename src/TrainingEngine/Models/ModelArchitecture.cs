using System.Text.Json;
using System.Text.Json.Serialization;
using EmaLab.TrainingEngine.Training;

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
        if (Kind == Mlp && (Hidden.Length == 0 || Hidden.Any(h => h < 1 || h > 16384)))
            yield return new InvalidSettingException("hidden", "The MLP needs 1 or more hidden sizes, each from 1 to 16384.");
        if (Kind == Cnn && (Channels.Length == 0 || Channels.Any(c => c < 1 || c > 1024)))
            yield return new InvalidSettingException("channels", "The CNN needs 1 or more channel counts, each from 1 to 1024.");
        else if (Kind == Cnn && (Height % (1 << Channels.Length) != 0 || Width % (1 << Channels.Length) != 0))
            yield return new InvalidSettingException("channels",
                $"The CNN's {Channels.Length} pooling stages need the input size to be a multiple of {1 << Channels.Length}; it is {Height}x{Width}.");
    }
}
