namespace EmaLab.Dashboard.Tracking;

public static class TrackingServices
{
    /// <summary>MLflow's tracking protocol: runs, metrics and search; logged models; the artifact store.</summary>
    public static IServiceCollection AddTracking(this IServiceCollection services)
    {
        services.AddSingleton<TrackingService>();
        services.AddSingleton<LoggedModelService>();
        services.AddSingleton<ArtifactStore>();
        return services;
    }
}
