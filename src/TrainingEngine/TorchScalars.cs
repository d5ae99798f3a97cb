using TorchSharp;

namespace EmaLab.TrainingEngine;

/// <summary>
/// Torch scalars that live for the whole process. TorchSharp frees a <see cref="Scalar"/> when its .NET object is
/// finalized, and several of its methods create one implicitly (<c>add_(t)</c> is <c>add_(t, alpha: 1)</c>) that
/// nothing keeps alive during the native call: a collection on another thread can free it mid-call. Pass these
/// (static roots, never finalized) wherever a constant scalar is needed.
/// </summary>
public static class TorchScalars
{
    public static readonly Scalar One = 1L.ToScalar();
}
