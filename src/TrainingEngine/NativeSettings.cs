using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace EmaLab.TrainingEngine;

/// <summary>
/// Settings of the native libraries that must be in place before libtorch first runs, applied when this assembly loads.
/// </summary>
static partial class NativeSettings
{
    /// <summary>The environment variable oneDNN reads (once, at its first convolution) to cap the instruction set it uses.</summary>
    public const string OneDnnMaxIsa = "ONEDNN_MAX_CPU_ISA";

    /// <summary>
    /// oneDNN 3.7.1 (inside TorchSharp 0.107's libtorch) computes a convolution's input gradient wrongly on AVX-512 CPUs
    /// when the channel count is not a multiple of 16: a 3x3 convolution from 24 to 24 channels on 28x28 images returns
    /// NaN in about one backward pass in four on two threads (8 or 24 channels; 16 never; once seen on one thread),
    /// which ends a ResNet's run as "diverged" within a few steps. Its AVX2 kernels are right, so oneDNN is capped at AVX2 unless
    /// the user set the variable (the cost is measured in the README's benchmarks). The variable must be in the native
    /// environment (setenv): .NET's Environment.SetEnvironmentVariable does not reach native code on Linux.
    /// </summary>
#pragma warning disable CA2255 // A library's module initializer: it must run before any of the engine's code calls libtorch.
    [ModuleInitializer]
    internal static void CapOneDnnIsa()
#pragma warning restore CA2255
    {
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64)
            _ = SetEnvironment(OneDnnMaxIsa, "AVX2", overwrite: 0);
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnvironment(string name, string value, int overwrite);
}
