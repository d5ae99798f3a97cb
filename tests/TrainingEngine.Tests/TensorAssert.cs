using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

static class TensorAssert
{
    /// <summary>Same shape, dtype and every element bit for bit (as values; no NaNs expected).</summary>
    public static bool Identical(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    public static void Identical(IEnumerable<(string Name, Tensor Tensor)> expected, IEnumerable<(string Name, Tensor Tensor)> actual)
    {
        var actualByName = actual.ToDictionary(a => a.Name, a => a.Tensor);
        var count = 0;
        foreach (var (name, tensor) in expected)
        {
            Assert.True(actualByName.TryGetValue(name, out var other), $"missing {name}");
            Assert.True(Identical(tensor, other!), $"{name} differs");
            count++;
        }
        Assert.Equal(count, actualByName.Count);
    }
}
