namespace EmaLab.Dashboard.Datasets;

public static class DatasetsServices
{
    /// <summary>Uploaded datasets.</summary>
    public static IServiceCollection AddDatasets(this IServiceCollection services) => services.AddSingleton<DatasetStore>();
}
