using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace EmaLab.Dashboard.Tests;

/// <summary>The dashboard as a separate process (<c>dotnet EmaLab.Dashboard.dll</c>) on a free loopback port.</summary>
public sealed class ChildServer : IDisposable
{
    readonly Process _process;
    public HttpClient Client { get; }

    readonly System.Collections.Concurrent.ConcurrentQueue<string> _output;

    ChildServer(Process process, HttpClient client, System.Collections.Concurrent.ConcurrentQueue<string> output)
    {
        _process = process;
        Client = client;
        _output = output;
    }

    public string Output => string.Join('\n', _output);

    public static async Task<ChildServer> StartAsync(string dataDirectory, IReadOnlyDictionary<string, string>? settings = null, string host = "127.0.0.1")
    {
        var port = FreePort();
        var start = new ProcessStartInfo("dotnet", [DashboardAssembly()])
        {
            WorkingDirectory = Path.GetDirectoryName(DashboardAssembly())!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["ASPNETCORE_URLS"] = $"http://{host}:{port}",
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["EmaLab__DataDirectory"] = dataDirectory,
            },
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var process = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                if ((await client.GetAsync("/health")).IsSuccessStatusCode) return new ChildServer(process, client, output);
            }
            catch (HttpRequestException) { }
            if (process.HasExited)
            {
                process.WaitForExit();
                throw new ChildServerExitedException(process.ExitCode, string.Join('\n', output));
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the server did not become healthy");
            await Task.Delay(100);
        }
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: false);
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as a service manager stops a process: it shuts down gracefully; waits until it has exited.</summary>
    public void Terminate()
    {
        if (kill(_process.Id, 15) != 0) throw new InvalidOperationException($"kill failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        if (!_process.WaitForExit(TimeSpan.FromSeconds(60))) throw new TimeoutException($"the server did not stop within a minute:\n{Output}");
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
        Client.Dispose();
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The app as built next to its project (bin/&lt;configuration&gt;/net10.0), the same configuration as these tests.</summary>
    internal static string DashboardAssembly()
    {
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var path = Path.GetFullPath(Path.Combine(testBin.FullName, "../../../../../src/Dashboard/bin", configuration, testBin.Name, "EmaLab.Dashboard.dll"));
        return File.Exists(path) ? path : throw new FileNotFoundException("Build the solution first: the dashboard assembly is missing.", path);
    }
}

/// <summary>Tests that start child servers run alone, after the others: their timing checks need the cores.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ChildServerCollection
{
    public const string Name = "child servers";
}

public sealed class ChildServerExitedException(int exitCode, string output) : Exception($"the server exited with {exitCode}:\n{output}")
{
    public int ExitCode { get; } = exitCode;
    public string Output { get; } = output;
}
