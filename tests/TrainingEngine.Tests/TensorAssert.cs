using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>Tensor assertions; every helper asserts (none returns a bool that a test could forget to check).</summary>
static class TensorAssert
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    /// <summary>Same shape, dtype and every element bit for bit (as values; no NaNs expected).</summary>
    public static void Identical(Tensor expected, Tensor actual, string? because = null) =>
        Assert.True(Same(expected, actual), because ?? "the tensors differ");

    /// <summary>Not identical: differs in shape, dtype or at least one element.</summary>
    public static void Different(Tensor a, Tensor b, string? because = null) =>
        Assert.False(Same(a, b), because ?? "the tensors are identical");

    public static void Identical(IEnumerable<(string Name, Tensor Tensor)> expected, IEnumerable<(string Name, Tensor Tensor)> actual)
    {
        var actualByName = actual.ToDictionary(a => a.Name, a => a.Tensor);
        var count = 0;
        foreach (var (name, tensor) in expected)
        {
            Assert.True(actualByName.TryGetValue(name, out var other), $"missing {name}");
            Identical(tensor, other!, $"{name} differs");
            count++;
        }
        Assert.Equal(count, actualByName.Count);
    }
}
