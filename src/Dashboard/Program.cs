using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Trainers;
using EmaLab.Dashboard.Tracking;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Datasets;
using EmaLab.Dashboard;
using EmaLab.Dashboard.Components;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Security;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Scalar.AspNetCore;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Api;

if (args is [HealthProbe.Argument, var healthUrl]) return await HealthProbe.RunAsync(healthUrl);

var builder = WebApplication.CreateBuilder(args);

// Loopback only unless EmaLab:AllowRemote is set (which turns accounts on): refused before anything listens. The check after start-up below catches addresses configured in other ways.
if (!builder.Configuration.GetValue<bool>($"{EmaLabOptions.Section}:{nameof(EmaLabOptions.AllowRemote)}")
    && ConfiguredRemoteAddresses(builder) is { Count: > 0 } configured)
{
    Console.Error.WriteLine(RemoteRefusal(configured));
    return 1;
}

// A mode that is not one of its names, or a setting under its old flat key, is refused with the reason before binding.
if (EmaLabOptions.Refusals(builder.Configuration.GetSection(EmaLabOptions.Section)).ToList() is { Count: > 0 } refusals)
{
    foreach (var refusal in refusals) Console.Error.WriteLine(refusal);
    return 1;
}

builder.Services.AddOptions<EmaLabOptions>().BindConfiguration(EmaLabOptions.Section).ValidateDataAnnotations().ValidateOnStart();
// The role and the database decide which services this process runs; the values are validated at start like the rest.
var setup = builder.Configuration.GetSection(EmaLabOptions.Section).Get<EmaLabOptions>() ?? new EmaLabOptions();
// Each area registers its own services (the folders of docs/design.md), bottom to top.
builder.Services.AddSingleton<DataPaths>();
builder.Services.AddEmaLabDatabase();
// Before the trainers: hosted services stop in reverse order, so the metric writer outlives the runs it records.
builder.Services.AddMetrics(setup);
builder.Services.AddRuns();
// Who trains: chosen here once (EmaLab:Trainer); nothing else asks.
builder.Services.AddTrainers(setup);
builder.Services.AddTracking();
builder.Services.AddGroups();
builder.Services.AddDatasets();

// A metric can be NaN or ±infinity (a diverged loss): JSON carries them as "NaN"/"Infinity"/"-Infinity", as
// the proto3 JSON mapping that MLflow's clients use does.
builder.Services.ConfigureHttpJsonOptions(json =>
    json.SerializerOptions.NumberHandling |= System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals);
builder.AddEmaLabAccess();
builder.Services.AddApiLoadLimit();
builder.Services.AddProblemDetails(problems => problems.CustomizeProblemDetails = context =>
{
    // A query or route value that does not bind ("page=abc") is the client's mistake: say which parameter.
    if (context.Exception is BadHttpRequestException bad) ApiErrors.Describe(context.ProblemDetails, bad);
});
// MLflow's UI asks for the histories of up to 100 runs in one GET (run_id repeated): a longer request line than
// Kestrel's 8 KB default, which answered 414 where MLflow's server answers.
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.Limits.MaxRequestLineSize = 64 * 1024;
    kestrel.Limits.MaxRequestHeadersTotalSize = 96 * 1024;
});
builder.Services.AddOpenApi(RunSpecSchema.Describe);
builder.Services.AddHealthChecks().AddDbContextCheck<EmaLabDbContext>();
builder.Services.AddRazorComponents().AddInteractiveServerComponents();

var app = builder.Build();
// The folders first: this also makes the uploaded datasets known to the engine before any spec is checked.
app.Services.GetRequiredService<DataPaths>();
await app.Services.InitializeDatabaseAsync();
// Accounts (after the database: whether it has users decides too); a worker serves nothing and signs nobody in.
if (setup.Serves) await AccountService.InitializeAsync(app.Services);
var trainers = app.Services.GetRequiredService<ITrainerHost>();
app.Logger.LogInformation("Runs are trained {Trainers}", trainers.Description);
await trainers.RecoverAtStartAsync(CancellationToken.None);

// MLflow's UI routes (/ajax-api/…, /get-artifact) are its REST API under other paths: rewritten before routing.
app.Use((http, next) => MlflowUiRoutes.RewriteAsync(http, () => next(http)));
app.UseRouting();

// API errors are problem details in every environment (the developer page would echo request headers);
// pages get the error and not-found pages. The API's own 4xx answers already carry problem details.
app.UseWhen(context => IsApi(context), api =>
{
    api.UseExceptionHandler(new ExceptionHandlerOptions { StatusCodeSelector = ApiErrors.StatusCodeOf });
    api.UseStatusCodePages();
});
app.UseWhen(context => !IsApi(context), pages =>
{
    if (!app.Environment.IsDevelopment()) pages.UseExceptionHandler("/Error", createScopeForErrors: true);
    pages.UseStatusCodePagesWithReExecute("/not-found", createScopeForStatusCodePages: true);
});
app.UseAuthentication();
app.UseAuthorization();
app.UseRateLimiter();
app.UseAntiforgery();

app.MapHealthChecks("/health");
// A worker serves its health only: pages and the API are the web role's.
if (setup.Serves)
{
    app.MapStaticAssets();
    app.MapOpenApi();
    app.MapScalarApiReference("/api/docs");
    app.MapSignIn();
    app.MapEmaLabApi();
    app.MapRazorComponents<App>()
        .AddInteractiveServerRenderMode()
        .RequireAuthorization(Access.Policy);
}

app.Lifetime.ApplicationStarted.Register(() => RefuseRemoteListeningUnlessAllowed(app));
app.Run();
return 0;

static bool IsApi(HttpContext context) => context.Request.Path.StartsWithSegments("/api");

static string RemoteRefusal(IEnumerable<string> addresses) =>
    $"Refusing to serve on {string.Join(", ", addresses)}: listening beyond loopback needs EmaLab:AllowRemote=true (every call then needs an account or a token).";

// The addresses the host settings ask for (--urls / ASPNETCORE_URLS, ASPNETCORE_HTTP_PORTS, Kestrel endpoints) that are not loopback.
static List<string> ConfiguredRemoteAddresses(WebApplicationBuilder builder)
{
    var urls = (builder.WebHost.GetSetting(WebHostDefaults.ServerUrlsKey) ?? "")
        .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
    urls.AddRange((builder.WebHost.GetSetting("http_ports") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(port => $"http://*:{port}"));
    urls.AddRange(builder.Configuration.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>());
    return urls.Where(u => !IsLoopback(u)).ToList();
}

static void RefuseRemoteListeningUnlessAllowed(WebApplication app)
{
    if (app.Services.GetRequiredService<IOptions<EmaLabOptions>>().Value.AllowRemote) return;
    var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
    var remote = addresses.Where(a => !IsLoopback(a)).ToList();
    if (remote.Count == 0) return;
    app.Logger.LogCritical("{Refusal}", RemoteRefusal(remote));
    Environment.ExitCode = 1;
    app.Lifetime.StopApplication();
}

// Parsed as Kestrel parses it (BindingAddress): "http://0.0.0.0@localhost:5080" has the host "0.0.0.0@localhost",
// which is neither "localhost" nor an IP address, so Kestrel binds every interface; Uri.Host would say "localhost".
static bool IsLoopback(string address)
{
    BindingAddress binding;
    try { binding = BindingAddress.Parse(address); }
    catch (FormatException) { return false; }
    if (binding.IsUnixPipe || binding.IsNamedPipe) return true;
    return binding.Host == "localhost"
        || (System.Net.IPAddress.TryParse(binding.Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));
}

/// <summary>Entry point, public so the test projects can host the app.</summary>
public partial class Program;
