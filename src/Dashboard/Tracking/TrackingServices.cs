namespace EmaLab.Dashboard.Tracking;

public static class TrackingServices
{
    /// <summary>MLflow's tracking protocol: runs, metrics and search; logged models; the artifact store; the model registry.</summary>
    public static IServiceCollection AddTracking(this IServiceCollection services)
    {
        services.AddSingleton<TrackingService>();
        services.AddSingleton<LoggedModelService>();
        services.AddSingleton<ArtifactStore>();
        services.AddSingleton<ModelRegistry>();
        services.AddSingleton<CheckpointRegistration>();
        return services;
    }
}
