using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Metrics;

public static class MetricsServices
{
    /// <summary>The metric pipeline (the one writer of points, logs and progress) with its bundle cleaner, the live event
    /// hub and, on PostgreSQL, its relay to and from the other processes (SQLite has one).</summary>
    public static IServiceCollection AddMetrics(this IServiceCollection services, EmaLabOptions setup)
    {
        services.AddSingleton<RunEventHub>();
        services.AddSingleton<BundleCleaner>();
        services.AddSingleton<MetricPipeline>();
        services.AddHostedService(provider => provider.GetRequiredService<MetricPipeline>());
        if (setup.Database == DatabaseKind.Postgres) services.AddHostedService<PostgresEventRelay>();
        return services;
    }
}
