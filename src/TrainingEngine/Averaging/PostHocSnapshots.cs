using System.Globalization;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// Snapshots of the power-function EMAs, one safetensors file per snapshot step
/// (<c>snapshot-000001200.safetensors</c>: <c>pf-&lt;σ&gt;/&lt;name&gt;</c> for every profile, <c>buffers/&lt;name&gt;</c>
/// for the live buffers that are not averaged), and the reconstruction of any σ_rel from them.
/// </summary>
public static class PostHocSnapshots
{
    public const string Format = "emalab-posthoc/1";
    const string BuffersPrefix = "buffers/";

    public static string FileName(long step) => $"snapshot-{step.ToString("D9", CultureInfo.InvariantCulture)}.safetensors";

    /// <summary>Writes the power-function EMAs <paramref name="ema"/> (of the profiles <paramref name="sigmaRels"/>) as the snapshot of <paramref name="step"/>.</summary>
    public static void Write(ExponentialMovingAverage ema, IReadOnlyList<double> sigmaRels, string directory, long step)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName(step));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["step"] = step.ToString(CultureInfo.InvariantCulture),
            ["sigma_rels"] = JsonSerializer.Serialize(sigmaRels),
        };
        var tensors = ema.StateTensors().Concat(ema.CopiedBuffers.Select(b => (BuffersPrefix + b.Name, b.Live))).ToList();
        AtomicFile.Write(path, SafeTensors.ApproximateBytes(tensors), stream => SafeTensors.Write(stream, tensors, metadata));
    }

    /// <summary>The steps that have a snapshot in <paramref name="directory"/>, in order.</summary>
    public static IReadOnlyList<long> Steps(string directory) =>
        !Directory.Exists(directory) ? [] :
        Directory.EnumerateFiles(directory, "snapshot-*.safetensors")
            .Select(f => long.Parse(Path.GetFileNameWithoutExtension(f)["snapshot-".Length..], CultureInfo.InvariantCulture))
            .Order().ToList();

    /// <summary>Bytes of all snapshots of a run.</summary>
    public static long SizeBytes(string directory) =>
        !Directory.Exists(directory) ? 0 : Directory.EnumerateFiles(directory, "snapshot-*.safetensors").Sum(f => new FileInfo(f).Length);

    /// <summary>
    /// The weights of the power-function EMA with <paramref name="targetSigmaRel"/> at the last snapshot step
    /// (at most <paramref name="atStep"/>), as the least-squares combination of every snapshot of every tracked
    /// profile up to that step. Averaged tensors are combined; the others come from the last snapshot.
    /// Keys are the model's state_dict names; the caller owns the tensors.
    /// </summary>
    public static Dictionary<string, Tensor> Reconstruct(string directory, IReadOnlyList<double> trackedSigmaRels, double targetSigmaRel, long? atStep = null)
    {
        var steps = Steps(directory).Where(s => atStep is null || s <= atStep).ToList();
        if (steps.Count == 0) throw new InvalidOperationException($"No post-hoc snapshots in {directory}.");
        var profiles = steps.SelectMany(s => trackedSigmaRels.Select(sigma => (Step: s, Sigma: sigma))).ToList();
        var coefficients = PowerFunctionProfile.SolveCoefficients(
            profiles.Select(p => (p.Step, PowerFunctionProfile.Gamma(p.Sigma))).ToList(), steps[^1], PowerFunctionProfile.Gamma(targetSigmaRel));

        var result = new Dictionary<string, Tensor>();
        var index = 0;
        using var _ = no_grad();
        foreach (var step in steps)
        {
            using var snapshot = SafeTensors.Read(Path.Combine(directory, FileName(step)));
            foreach (var sigma in trackedSigmaRels)
            {
                var prefix = ExponentialMovingAverage.PowerFunctionTrack(sigma) + "/";
                using var weight = coefficients[index++].ToScalar(); // held until every mul_ returns
                foreach (var (key, tensor) in snapshot.Tensors.Where(t => t.Key.StartsWith(prefix, StringComparison.Ordinal)))
                {
                    var name = key[prefix.Length..];
                    // Accumulate in float64: the coefficients alternate in sign and partly cancel.
                    using var scaled = tensor.to_type(ScalarType.Float64).mul_(weight);
                    if (result.TryGetValue(name, out var sum)) sum.add_(scaled, TorchScalars.One); // an explicit alpha: the implicit one is not kept alive
                    else result[name] = scaled.clone();
                }
            }
            if (step == steps[^1])
                foreach (var (key, tensor) in snapshot.Tensors.Where(t => t.Key.StartsWith(BuffersPrefix, StringComparison.Ordinal)))
                    result[key[BuffersPrefix.Length..]] = tensor.clone();
        }
        foreach (var name in result.Keys.ToList())
        {
            var value = result[name];
            if (value.dtype != ScalarType.Float64) continue;
            result[name] = value.to_type(ScalarType.Float32);
            value.Dispose();
        }
        return result;
    }
}
