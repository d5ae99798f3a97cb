using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A throwaway PostgreSQL server for the tests: <c>initdb</c> in a temporary folder, a free loopback port, its socket in
/// that folder; no system service. One per test process (started on first use, ~2 s), each test gets a database of its
/// own; stopped and removed when the process exits. Debian's binaries (<c>eng/install-prereqs.sh postgres</c>, which the
/// test project's build runs). As root, the server runs as the <c>postgres</c> user: initdb refuses root.
/// </summary>
public sealed class PostgresCluster : IDisposable
{
    static readonly Lazy<PostgresCluster> Shared = new(() => new PostgresCluster(durable: false), LazyThreadSafetyMode.ExecutionAndPublication);
    static int _databases;

    readonly string _folder;
    readonly string _bin;
    readonly int _port;

    /// <summary>The tests' server: fsync off (a test database need not survive a power cut, and the tests run several times faster).</summary>
    public static PostgresCluster Instance => Shared.Value;

    /// <summary>A server of its own that commits as a production one does (fsync, synchronous commit): for benchmarks.</summary>
    public static PostgresCluster StartDurable() => new(durable: true);

    PostgresCluster(bool durable)
    {
        _bin = Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
            .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0).FirstOrDefault()
            ?? throw new InvalidOperationException("PostgreSQL's initdb was not found under /usr/lib/postgresql: run 'sudo eng/install-prereqs.sh postgres'.");
        SweepOrphans(_bin);
        _folder = Directory.CreateTempSubdirectory(FolderPrefix).FullName;
        File.WriteAllText(Path.Combine(_folder, OwnerFile), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _port = FreePort();
        if (IsRoot) Run("chown", "postgres", _folder);
        try
        {
            RunServerTool(_bin, "initdb", ["-D", Data, "-A", "trust", "-U", "emalab", "-E", "UTF8", .. durable ? Array.Empty<string>() : ["--no-sync"]]);
            var fast = durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
            RunServerTool(_bin, "pg_ctl", "-D", Data, "-l", Path.Combine(_folder, "log"), "-w", "-t", "60", "-o",
                $"-p {_port} -k {_folder} -c listen_addresses=127.0.0.1 -c max_connections=300{fast}", "start");
        }
        catch
        {
            Directory.Delete(_folder, recursive: true);
            throw;
        }
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Dispose();
    }

    string Data => Path.Combine(_folder, "data");

    const string FolderPrefix = "emalab-pg-";
    const string OwnerFile = "owner.pid";

    /// <summary>
    /// Clusters of test processes that are gone (killed, or stopped before their exit handler finished): stopped if still
    /// running, and removed, so that nothing is left behind for long.
    /// </summary>
    static void SweepOrphans(string bin)
    {
        foreach (var folder in Directory.GetDirectories(Path.GetTempPath(), FolderPrefix + "*"))
        {
            var owner = Path.Combine(folder, OwnerFile);
            if (File.Exists(owner) && int.TryParse(File.ReadAllText(owner), out var pid) && IsAlive(pid)) continue;
            try
            {
                var data = Path.Combine(folder, "data");
                if (File.Exists(Path.Combine(data, "postmaster.pid"))) RunServerTool(bin, "pg_ctl", StopArguments(data));
            }
            catch (InvalidOperationException)
            {
                // Not running any more.
            }
            try { Directory.Delete(folder, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    static bool IsAlive(int pid)
    {
        try { return !Process.GetProcessById(pid).HasExited; }
        catch (ArgumentException) { return false; }
    }

    public string ConnectionString(string database) => $"Host=127.0.0.1;Port={_port};Username=emalab;Database={database};Maximum Pool Size=50";

    /// <summary>The server log's last <paramref name="count"/> lines (a test's evidence when the app seems stuck).</summary>
    public string LogTail(int count)
    {
        try { return string.Join('\n', File.ReadLines(Path.Combine(_folder, "log")).TakeLast(count)); }
        catch (IOException e) { return $"(no log: {e.Message})"; }
    }

    /// <summary>A new, empty database; its connection string.</summary>
    public string CreateDatabase()
    {
        var name = $"emalab_test_{Environment.ProcessId}_{Interlocked.Increment(ref _databases)}";
        using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        connection.Open();
        using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
        command.ExecuteNonQuery();
        return ConnectionString(name);
    }

    /// <summary>Drops a database made by <see cref="CreateDatabase"/> (its connections are closed first).</summary>
    public void DropDatabase(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        NpgsqlConnection.ClearAllPools();
        using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        connection.Open();
        using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        if (!Directory.Exists(_folder)) return;
        // The test host is ended moments after its exit handlers start: stopping and removing run in a session of their
        // own that outlives it (a folder left anyway is swept by the next test run).
        var script = $"{string.Join(' ', ServerToolCommand(_bin, "pg_ctl", StopArguments(Data)))} >/dev/null 2>&1; rm -rf {_folder}";
        Process.Start(new ProcessStartInfo("setsid", ["sh", "-c", script]) { UseShellExecute = false })?.Dispose();
    }

    static bool IsRoot => Environment.UserName == "root";

    static string[] StopArguments(string data) => ["-D", data, "-m", "immediate", "-w", "stop"];

    /// <summary>A server tool's command line: as the <c>postgres</c> user when this process is root (PostgreSQL refuses root).</summary>
    static string[] ServerToolCommand(string bin, string tool, string[] arguments) =>
        IsRoot ? ["runuser", "-u", "postgres", "--", Path.Combine(bin, tool), .. arguments] : [Path.Combine(bin, tool), .. arguments];

    static void RunServerTool(string bin, string tool, params string[] arguments)
    {
        var command = ServerToolCommand(bin, tool, arguments);
        Run(command[0], command[1..]);
    }

    static void Run(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000)) { process.Kill(); throw new InvalidOperationException($"{file} did not finish"); }
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {error.Result}{output.Result}");
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
