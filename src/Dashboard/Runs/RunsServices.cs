namespace EmaLab.Dashboard.Runs;

public static class RunsServices
{
    /// <summary>A run's life (its one status writer, the changes pages and the API make, post-hoc EMA) and its reads.</summary>
    public static IServiceCollection AddRuns(this IServiceCollection services)
    {
        services.AddSingleton<ActiveRuns>();
        services.AddSingleton<RunLifecycle>();
        services.AddSingleton<RunQueries>();
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<RunService>();
        services.AddSingleton<PostHocService>();
        return services;
    }
}
