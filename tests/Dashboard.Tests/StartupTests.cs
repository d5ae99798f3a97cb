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
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_data, recursive: true);
    }
}
