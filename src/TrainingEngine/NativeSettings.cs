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
    /// oneDNN 3.7.1 (inside TorchSharp 0.107's libtorch) is wrong on AVX-512 CPUs for channel counts that are not a multiple
    /// of 16: in its blocked layout a 3x3 convolution's input gradient from 24 to 24 channels on 28x28 images was NaN in
    /// most passes on two threads (a ResNet's run "diverged" within a few steps), and its channels-last kernels, which
    /// the models use (<see cref="Models.ChannelsLast"/>), returned gradients 99 % off for a ResNet of 24 and 40 channels
    /// and crashed the process for 8, 24 and 40. Capped at AVX2, channels-last gradients match a float64 reference for
    /// every width tried (the engine's tests hold it), so oneDNN is capped at AVX2 unless the user set the variable (the
    /// cost is measured in docs/benchmarks.md). The variable must be in the native environment (setenv): .NET's
    /// Environment.SetEnvironmentVariable does not reach native code on Linux.
    /// </summary>
#pragma warning disable CA2255 // A library's module initializer: it must run before any of the engine's code calls libtorch.
    [ModuleInitializer]
    internal static void CapOneDnnIsa()
#pragma warning restore CA2255
    {
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64)
            _ = SetEnvironment(OneDnnMaxIsa, "AVX2", overwrite: 0);
    }

    /// <summary>
    /// glibc's malloc serves libtorch's activations. Left to itself it maps a large block (a 512-image batch's 25 MB
    /// feature map) and unmaps it when freed, or trims the freed heap back to the system, so every forward pass faults
    /// its pages in again: a ResNet-8's evaluation of 3 tracks spent 43 s, mostly in the kernel (34 s of system time),
    /// where it takes 6.6 s with blocks up to 32 MB served from the heap and up to 256 MB of freed heap kept (the numbers
    /// are the same: only where the memory comes from changes). Applied unless the user tuned malloc (GLIBC_TUNABLES or
    /// the MALLOC_*_ variables). Both are set: a fixed trim threshold alone stops glibc raising its mmap threshold, which
    /// maps every block above 128 kB (4× slower still).
    /// A thread other than the process's first gets a malloc arena of its own, made of heaps of at most 64 MB, where
    /// large blocks fit badly and are mapped again and again whatever these settings say; a run trains on such a thread
    /// in the dashboard. Only <c>MALLOC_ARENA_MAX=1</c> in the environment before the process starts helps there (glibc
    /// fixes its arena limit early): the dashboard's launch profile, the Dockerfile and the tests' run settings set it.
    /// </summary>
#pragma warning disable CA2255 // as above: before libtorch allocates
    [ModuleInitializer]
    internal static void KeepActivationMemory()
#pragma warning restore CA2255
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is { } tunables && tunables.Contains("malloc", StringComparison.Ordinal)
            || Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is not null || Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_") is not null)
            return;
        try
        {
            _ = MallocOption(MmapThreshold, MallocMmapThreshold);
            _ = MallocOption(TrimThreshold, MallocTrimThreshold);
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc (musl has no mallopt settings): nothing to tune.
        }
    }

    /// <summary>The largest block malloc serves from its heap (glibc's own ceiling for this setting on 64-bit).</summary>
    public const int MallocMmapThreshold = 32 << 20;
    /// <summary>How much freed heap malloc keeps before returning memory to the system.</summary>
    public const int MallocTrimThreshold = 256 << 20;
    const int TrimThreshold = -1, MmapThreshold = -3; // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallocOption(int parameter, int value);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnvironment(string name, string value, int overwrite);
}
