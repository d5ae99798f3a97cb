using System.Globalization;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// Post-hoc EMA (EDM2): power-function EMAs tracked during training and snapshotted every
/// <see cref="SnapshotEvery"/> steps, so that any EMA length can be reconstructed after training.
/// </summary>
public sealed record PostHocSettings
{
    public const int MaxProfiles = 4;
    /// <summary>About this many snapshots per run when <see cref="SnapshotEvery"/> is not set.</summary>
    public const int DefaultSnapshots = 30;
    /// <summary>
    /// Snapshots a run may write: a reconstruction solves a dense system of (snapshots × profiles)² and reads
    /// every snapshot file, so this bounds both its time and the run's disk use.
    /// </summary>
    public const int MaxSnapshots = 500;

    public IReadOnlyList<double> SigmaRels { get; init; } = [0.05, 0.10];
    public long? SnapshotEvery { get; init; }

    public long SnapshotInterval(long totalSteps) => SnapshotEvery ?? Math.Max(1, totalSteps / DefaultSnapshots);

    /// <summary>Snapshots a run of <paramref name="totalSteps"/> writes (every interval, and the last step).</summary>
    public long SnapshotCount(long totalSteps) => totalSteps / SnapshotInterval(totalSteps) + 1;

    public void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem) throw problem;
    }

    /// <summary>Every rule broken, at most one per setting.</summary>
    public IEnumerable<InvalidSettingException> Problems(long? totalSteps = null)
    {
        const string sigmas = "postHoc.sigmaRels";
        if (SigmaRels is null) { yield return new InvalidSettingException(sigmas, "'postHoc.sigmaRels' must be a list of numbers."); yield break; }
        var outside = SigmaRels.Where(s => !PowerFunctionProfile.IsSupported(s)).ToList();
        if (SigmaRels.Count is 0 or > MaxProfiles) yield return new InvalidSettingException(sigmas, $"Track 1 to {MaxProfiles} power-function profiles.");
        else if (outside.Count > 0)
            yield return new InvalidSettingException(sigmas, $"σ_rel {outside[0].ToString(CultureInfo.InvariantCulture)}: {PowerFunctionProfile.SupportedRange}");
        else if (SigmaRels.Distinct().Count() != SigmaRels.Count) yield return new InvalidSettingException(sigmas, "The σ_rel values must be distinct.");
        if (SnapshotEvery is < 1) yield return new InvalidSettingException("postHoc.snapshotEvery", "Snapshots need at least 1 step between them.");
        else if (totalSteps is { } total && SnapshotCount(total) > MaxSnapshots)
            yield return new InvalidSettingException("postHoc.snapshotEvery",
                $"Every {SnapshotInterval(total):N0} steps makes {SnapshotCount(total):N0} snapshots over {total:N0} steps; at most {MaxSnapshots} are allowed (snapshot every {total / (MaxSnapshots - 1) + 1:N0} steps or more).");
    }
}
