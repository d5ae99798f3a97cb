using System.Diagnostics;

namespace EmaLab.Companion.Tests;

/// <summary>The Python that has torch (Debian's python3-torch: /usr/bin/python3, or EMALAB_PYTHON) and the companion's folder.</summary>
static class Python
{
    public static string Executable => Environment.GetEnvironmentVariable("EMALAB_PYTHON") is { Length: > 0 } given ? given : "/usr/bin/python3";

    public static string RepositoryRoot { get; } = FindRoot();

    public static string Companion => Path.Combine(RepositoryRoot, "clients", "python");

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Dashboard.sln"))) return dir.FullName;
        throw new InvalidOperationException("Dashboard.sln not found above the test's folder.");
    }

    /// <summary>Runs a script of the companion's tests folder with the companion importable; returns exit code and output.</summary>
    public static Task<(int ExitCode, string Output)> RunAsync(string script, params string[] arguments) =>
        StartAsync([Path.Combine(Companion, "tests", script), .. arguments]);

    /// <summary>Runs <c>python3 -m <paramref name="module"/></c> in the companion's folder, as a user runs its CLI there.</summary>
    public static Task<(int ExitCode, string Output)> RunModuleAsync(string module, params string[] arguments) =>
        StartAsync(["-m", module, .. arguments]);

    /// <summary>Runs a script file from the repository's root (where the README's relative paths start).</summary>
    public static Task<(int ExitCode, string Output)> RunFromRootAsync(string scriptPath) => StartAsync([scriptPath], RepositoryRoot);

    static async Task<(int ExitCode, string Output)> StartAsync(IEnumerable<string> arguments, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Companion,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["PYTHONPATH"] = Companion;
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output + await error);
    }
}
