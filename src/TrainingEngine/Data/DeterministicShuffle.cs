namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Seeded permutations that do not depend on the .NET runtime's <see cref="Random"/> implementation,
/// so a run's data order is the same on every machine and version (SplitMix64 + Fisher-Yates).
/// </summary>
public static class DeterministicShuffle
{
    /// <summary>The permutation of 0..count-1 for one (seed, stream) pair, e.g. stream = epoch number.</summary>
    public static int[] Permutation(int count, long seed, long stream)
    {
        var order = new int[count];
        for (var i = 0; i < count; i++) order[i] = i;
        var state = Mix((ulong)seed ^ Mix((ulong)stream + 0x9E3779B97F4A7C15UL));
        for (var i = count - 1; i > 0; i--)
        {
            state += 0x9E3779B97F4A7C15UL;
            // Multiply-shift maps 64 random bits onto 0..i without modulo bias worth caring about at these sizes.
            var j = (int)(((UInt128)Mix(state) * (ulong)(i + 1)) >> 64);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>64 random bits that are a pure function of (seed, stream, index): a draw per sample of a step, say.</summary>
    public static ulong Draw(long seed, long stream, long index) =>
        Mix((ulong)seed ^ Mix((ulong)stream + 0x9E3779B97F4A7C15UL ^ Mix((ulong)index + 0x632BE59BD9B4E019UL)));

    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
