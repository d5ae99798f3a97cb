using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace EmaLab.Dashboard.E2E;

/// <summary>
/// The app on a real loopback port (Kestrel) with a temporary database, and Debian's chromium driven by
/// Playwright. Never a downloaded browser: the executable is /usr/bin/chromium.
/// </summary>
public class BrowserFixture : IAsyncLifetime
{
    /// <summary>Settings of the app under test beyond its data directory (none: the loopback default).</summary>
    protected virtual IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>();

    sealed class App(string dataDirectory, IReadOnlyDictionary<string, string> settings, ILoggerProvider log) : WebApplicationFactory<Program>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.ConfigureLogging(logging => logging.AddProvider(log));
            builder.UseSetting("EmaLab:DataDirectory", dataDirectory);
            foreach (var (key, value) in settings) builder.UseSetting(key, value);
            // Development (the factory's default) serves the static web assets from the build output; Production expects a publish.
            // Circuit exceptions reach the browser console, where the test collects them.
            builder.UseSetting("DetailedErrors", "true");
        }
    }

    readonly string _data = Directory.CreateTempSubdirectory("emalab-e2e-").FullName;
    App? _app;
    IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;
    public string BaseUrl { get; private set; } = "";
    public string ScreenshotDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "screenshots");

    public async Task InitializeAsync()
    {
        // `dotnet test` runs the test projects in parallel: on 2 cores a page round trip can take seconds.
        Assertions.SetDefaultExpectTimeout(30_000);
        _app = new App(_data, Settings, new EvidenceLog(this));
        _app.UseKestrel(0);
        _app.StartServer();
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        BaseUrl = addresses.First().TrimEnd('/') + "/";
        Directory.CreateDirectory(ScreenshotDirectory);

        // The package's own node driver works too; the system node avoids depending on its platform folder.
        if (File.Exists("/usr/bin/node")) Environment.SetEnvironmentVariable("PLAYWRIGHT_NODEJS_PATH", "/usr/bin/node");
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
    }

    /// <summary>
    /// The running test's output, where the app's warnings and the watched pages' errors go as they happen: a test that
    /// times out on a busy machine says what the server and the browser saw (xUnit prints a failed test's output).
    /// </summary>
    public void Attach(ITestOutputHelper output)
    {
        _output = output;
        while (_beforeAttach.TryDequeue(out var line)) output.WriteLine(line); // the start-up's warnings go to the first test
    }

    /// <summary>Reports the page's console errors, uncaught exceptions and closed sockets (the Blazor circuit's) to the test's output.</summary>
    public void Watch(IPage page)
    {
        page.Console += (_, m) => { if (m.Type is "error" or "warning") Report($"browser {m.Type}: {m.Text}"); };
        page.PageError += (_, error) => Report($"page error: {error}");
        page.WebSocket += (_, socket) => socket.Close += (_, _) => Report($"socket closed: {socket.Url}");
    }

    ITestOutputHelper? _output;
    readonly ConcurrentQueue<string> _beforeAttach = new();

    void Report(string line)
    {
        line = $"{DateTime.UtcNow:HH:mm:ss.fff} {line}";
        try
        {
            if (_output is { } output) output.WriteLine(line);
            else _beforeAttach.Enqueue(line);
        }
        catch (InvalidOperationException) { } // the test that attached has ended
    }

    /// <summary>The app's log at warning and above, to the running test's output.</summary>
    sealed class EvidenceLog(BrowserFixture fixture) : ILoggerProvider, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) fixture.Report($"server {logLevel}: {formatter(state, exception)}{(exception is null ? "" : $"\n{exception}")}");
        }
        public void Dispose() { }
    }

    public async Task DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright?.Dispose();
        if (_app is not null) await _app.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_data, recursive: true);
    }
}

/// <summary>The app with accounts: the admin <c>ana</c> from settings.</summary>
public sealed class AccountsBrowserFixture : BrowserFixture
{
    public const string AdminPassword = "correct horse battery";

    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["EmaLab:Admin:UserName"] = "ana",
        ["EmaLab:Admin:Password"] = AdminPassword,
    };
}
