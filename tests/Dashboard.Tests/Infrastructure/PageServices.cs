using EmaLab.Dashboard.Metrics;
using Bunit;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>What a page rendered with bUnit is given: the real app's services (real database, real runs), and Plotly's JS answered loosely (no browser here).</summary>
static class PageServices
{
    static readonly Type[] Shared =
    [
        typeof(RunService), typeof(ActiveRuns), typeof(RunEventHub), typeof(MetricQueries), typeof(IDbContextFactory<EmaLabDbContext>),
        typeof(Tracking.ArtifactStore), typeof(PostHocService), typeof(Groups.GroupService), typeof(Datasets.DatasetStore),
        typeof(RunQueries), typeof(Tracking.LoggedModelService), typeof(Hosting.AccessMode), typeof(Security.Permissions), typeof(Security.AuditLog),
        typeof(Tracking.ModelRegistry), typeof(Tracking.CheckpointRegistration),
    ];

    /// <summary>Registers the app's page services in <paramref name="context"/>; returns Plotly's interop module (to count its calls).</summary>
    public static BunitJSModuleInterop Use(BunitContext context, IServiceProvider app)
    {
        foreach (var type in Shared) context.Services.AddSingleton(type, app.GetRequiredService(type));
        // Who is signed in: the tests' app has no accounts, so the page's user is the local admin whatever bUnit says.
        context.AddAuthorization();
        context.Services.AddScoped<Security.PageAccess>();
        // Services first, then JS interop (bUnit's order).
        context.JSInterop.Mode = JSRuntimeMode.Loose;
        return context.JSInterop.SetupModule("./_content/Plotly.Blazor/plotly-interop-7.2.0.js");
    }
}
