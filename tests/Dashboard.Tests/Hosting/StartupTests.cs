namespace EmaLab.Dashboard.Tests;

/// <summary>What the server refuses to start with.</summary>
[Collection(ChildServerCollection.Name)]
[Trait("Speed", "Process")]
public sealed class StartupTests : IDisposable
{
    readonly string _data = Directory.CreateTempSubdirectory("emalab-start-").FullName;

    [Fact]
    public async Task Listening_beyond_loopback_needs_an_explicit_setting()
    {
        var e = await Assert.ThrowsAsync<ChildServerExitedException>(() => ChildServer.StartAsync(_data, host: "0.0.0.0"));
        Assert.Equal(1, e.ExitCode);
        Assert.Contains("listening beyond loopback needs EmaLab:AllowRemote=true", e.Output);
    }

    [Fact]
    public async Task An_address_that_only_looks_like_loopback_is_refused()
    {
        // Uri reads the host of "http://0.0.0.0@localhost:port" as localhost; Kestrel binds every interface.
        var e = await Assert.ThrowsAsync<ChildServerExitedException>(() => ChildServer.StartAsync(_data, host: "0.0.0.0@localhost"));
        Assert.Equal(1, e.ExitCode);
        Assert.Contains("listening beyond loopback needs", e.Output);
    }

    [Fact]
    public async Task Remote_access_without_an_admin_prints_a_one_time_setup_link_and_lets_no_one_in_without_credentials()
    {
        using var server = await ChildServer.StartAsync(_data, new Dictionary<string, string> { ["EmaLab__AllowRemote"] = "true" }, host: "0.0.0.0");
        Assert.Contains("No admin account yet. Create one, once, at /setup?token=", server.Output);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await server.Client.GetAsync("/api/runs")).StatusCode);
        Assert.Equal("Healthy", await server.Client.GetStringAsync("/health"));
    }

    [Theory]
    [InlineData("EmaLab__Role", "worker", "EmaLab:Role=worker needs EmaLab:Database=postgres")]
    [InlineData("EmaLab__Role", "trainer", "EmaLab:Role must be 'all', 'web' or 'worker', not 'trainer'")]
    [InlineData("EmaLab__Trainer", "Hangfire", "EmaLab:Trainer=hangfire needs EmaLab:Database=postgres")]
    [InlineData("EmaLab__Trainer", "1", "EmaLab:Trainer must be 'inprocess' or 'hangfire', not '1'")]
    [InlineData("EmaLab__Database", "mysql", "EmaLab:Database must be 'sqlite' or 'postgres', not 'mysql'")]
    [InlineData("EmaLab__Admin__UserName", "ana", "EmaLab:Admin:UserName and EmaLab:Admin:Password go together")]
    [InlineData("EmaLab__FlushRows", "100", "EmaLab:FlushRows is now EmaLab:Metrics:FlushRows.")]
    [InlineData("EmaLab__Metrics__FlushRows", "0", "EmaLab:Metrics: The field FlushRows must be between 1 and 100000.")]
    [InlineData("EmaLab__ArtifactDirectory", "{data}/a-file/artifacts", "the artifact directory '{data}/a-file/artifacts' cannot be created or reached")]
    public async Task A_role_or_artifact_directory_that_cannot_work_is_refused_with_the_reason(string setting, string value, string message)
    {
        File.WriteAllText(Path.Combine(_data, "a-file"), "not a folder");
        var e = await Assert.ThrowsAsync<ChildServerExitedException>(() =>
            ChildServer.StartAsync(_data, new Dictionary<string, string> { [setting] = value.Replace("{data}", _data) }));
        Assert.NotEqual(0, e.ExitCode);
        Assert.Contains(message.Replace("{data}", _data), e.Output);
    }

    [Fact]
    public async Task Remote_access_with_a_token_serves()
    {
        using var server = await ChildServer.StartAsync(_data, new Dictionary<string, string>
        {
            ["EmaLab__AllowRemote"] = "true",
            ["EmaLab__ApiToken"] = "t0ken",
        }, host: "0.0.0.0");
        Assert.Equal("Healthy", await server.Client.GetStringAsync("/health"));
        // Who trains is said once, at start.
        Assert.Contains("Runs are trained in this process, 1 run(s) at a time", server.Output);

        // The container's HEALTHCHECK: the app probes a running server's /health.
        Assert.Equal(0, await ProbeAsync(new Uri(server.Client.BaseAddress!, "/health").ToString()));
        Assert.Equal(1, await ProbeAsync("http://127.0.0.1:1/health"));
    }

    static async Task<int> ProbeAsync(string url)
    {
        using var probe = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("dotnet", [ChildServer.DashboardAssembly(), "--health-check", url])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        await probe.WaitForExitAsync();
        return probe.ExitCode;
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_data, recursive: true);
    }
}
