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

    /// <summary>
    /// Why a snapshot file (its header, read before anything is kept) cannot join the snapshots of its folder, or null:
    /// the format, the step its name gives, one to four supported, distinct σ_rels with the same tensors for each, and
    /// the same σ_rels and tensors as a snapshot already there (<paramref name="earlier"/>). A client uploads them.
    /// </summary>
    public static string? Problem(SafeTensorsHeader header, long stepInName, SafeTensorsHeader? earlier)
    {
        var metadata = header.Metadata;
        if (metadata.GetValueOrDefault("format") != Format) return $"its metadata 'format' must be '{Format}'.";
        if (metadata.GetValueOrDefault("step") != stepInName.ToString(CultureInfo.InvariantCulture))
            return $"its metadata 'step' must be {stepInName}, the step its name gives.";
        if (SigmaRelsOf(header) is not { } sigmas) return "its metadata 'sigma_rels' must be a JSON list of numbers.";
        if (new PostHocSettings { SigmaRels = sigmas }.Problems().FirstOrDefault() is { } problem) return problem.Message;
        var byProfile = sigmas.Select(s => ProfileTensors(header, s)).ToList();
        if (byProfile[0].Count == 0) return $"it holds no tensor of profile {ExponentialMovingAverage.PowerFunctionTrack(sigmas[0])}.";
        for (var i = 1; i < sigmas.Count; i++)
            if (!byProfile[i].SequenceEqual(byProfile[0]))
                return $"profile {ExponentialMovingAverage.PowerFunctionTrack(sigmas[i])} holds other tensors than {ExponentialMovingAverage.PowerFunctionTrack(sigmas[0])}.";
        var strays = header.Tensors.Where(t => !t.Name.StartsWith(BuffersPrefix, StringComparison.Ordinal)
            && !sigmas.Any(s => t.Name.StartsWith(ExponentialMovingAverage.PowerFunctionTrack(s) + "/", StringComparison.Ordinal))).ToList();
        if (strays.Count > 0) return $"tensor '{strays[0].Name}' is neither a profile's (pf-<σ_rel>/…) nor a buffer (buffers/…).";
        if (earlier is null) return null;
        if (!SigmaRelsOf(earlier)!.SequenceEqual(sigmas)) return $"its σ_rels [{string.Join(", ", sigmas)}] differ from the earlier snapshots'.";
        if (!ProfileTensors(earlier, sigmas[0]).SequenceEqual(byProfile[0])) return "its tensors (names, types or shapes) differ from the earlier snapshots'.";
        return null;
    }

    /// <summary>The σ_rels a snapshot's metadata lists, or null when it lists none readable.</summary>
    public static IReadOnlyList<double>? SigmaRelsOf(SafeTensorsHeader header)
    {
        try { return header.Metadata.TryGetValue("sigma_rels", out var json) ? JsonSerializer.Deserialize<List<double>>(json) : null; }
        catch (JsonException) { return null; }
    }

    static List<string> ProfileTensors(SafeTensorsHeader header, double sigma)
    {
        var prefix = ExponentialMovingAverage.PowerFunctionTrack(sigma) + "/";
        return header.Tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal))
            .Select(t => $"{t.Name[prefix.Length..]}:{t.DType}:{string.Join('x', t.Shape)}").Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The steps that have a snapshot in <paramref name="directory"/>, in order.</summary>
    public static IReadOnlyList<long> Steps(string directory) =>
        !Directory.Exists(directory) ? [] :
        Directory.EnumerateFiles(directory, "snapshot-*.safetensors")
            .Select(f => long.Parse(Path.GetFileNameWithoutExtension(f)["snapshot-".Length..], CultureInfo.InvariantCulture))
            .Order().ToList();

    /// <summary>The header of the first snapshot in <paramref name="directory"/> other than <paramref name="except"/>, or null.</summary>
    public static SafeTensorsHeader? FirstHeader(string directory, string? except = null)
    {
        if (Steps(directory).Select(FileName).FirstOrDefault(f => f != except) is not { } name) return null;
        using var file = File.OpenRead(Path.Combine(directory, name));
        return SafeTensors.ReadHeader(file, name, file.Length);
    }

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
