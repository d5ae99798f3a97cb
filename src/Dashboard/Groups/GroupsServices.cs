namespace EmaLab.Dashboard.Groups;

public static class GroupsServices
{
    /// <summary>Seed groups: their runs, statistics and post-hoc EMA on every seed.</summary>
    public static IServiceCollection AddGroups(this IServiceCollection services) => services.AddSingleton<GroupService>();
}
