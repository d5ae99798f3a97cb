namespace EmaLab.Dashboard.Tests;

/// <summary>What the server refuses to start with.</summary>
[Collection(ChildServerCollection.Name)]
public sealed class StartupTests : IDisposable
{
    readonly string _data = Directory.CreateTempSubdirectory("emalab-start-").FullName;

    [Fact]
    public async Task Listening_beyond_loopback_needs_an_explicit_setting()
    {
        var e = await Assert.ThrowsAsync<ChildServerExitedException>(() => ChildServer.StartAsync(_data, host: "0.0.0.0"));
        Assert.Equal(1, e.ExitCode);
        Assert.Contains("listening beyond loopback needs EmaLab:AllowRemote=true and an EmaLab:ApiToken", e.Output);
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
    public async Task Allowing_remote_access_without_a_token_is_refused()
    {
        var e = await Assert.ThrowsAsync<ChildServerExitedException>(() =>
            ChildServer.StartAsync(_data, new Dictionary<string, string> { ["EmaLab__AllowRemote"] = "true" }, host: "0.0.0.0"));
        Assert.NotEqual(0, e.ExitCode);
        Assert.Contains("EmaLab:AllowRemote needs EmaLab:ApiToken", e.Output);
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
