namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Which samples form the batch of a given training step. Each epoch is a fresh seeded permutation
/// and the last incomplete batch is dropped, so the data position is a pure function of
/// (seed, step): a resumed run sees exactly the batches an uninterrupted one would.
/// </summary>
public sealed class BatchSchedule
{
    readonly int _count;
    readonly long _seed;
    long _cachedEpoch = -1;
    int[] _permutation = [];

    public BatchSchedule(int sampleCount, int batchSize, long seed)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be at least 1.");
        if (batchSize > sampleCount)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"The batch size must not exceed the {sampleCount} training samples.");
        _count = sampleCount;
        _seed = seed;
        BatchSize = batchSize;
        BatchesPerEpoch = sampleCount / batchSize;
    }

    public int BatchSize { get; }
    public int BatchesPerEpoch { get; }

    /// <summary>Epoch (0-based) and batch within it of the 1-based training step.</summary>
    public (long Epoch, int Batch) PositionOf(long step)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "Training steps are numbered from 1.");
        var index = step - 1;
        return (index / BatchesPerEpoch, (int)(index % BatchesPerEpoch));
    }

    /// <summary>The sample indices of the 1-based training step's batch.</summary>
    public ReadOnlySpan<int> IndicesOf(long step)
    {
        var (epoch, batch) = PositionOf(step);
        if (epoch != _cachedEpoch)
        {
            _permutation = DeterministicShuffle.Permutation(_count, _seed, epoch);
            _cachedEpoch = epoch;
        }
        return _permutation.AsSpan(batch * BatchSize, BatchSize);
    }
}
