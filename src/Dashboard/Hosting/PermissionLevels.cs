namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// What a user may do with an experiment and its runs: MLflow's auth app's permissions, in their order (each grants what
/// the ones before it do). READ sees; EDIT creates runs, logs, tags, cancels, resumes and clones; MANAGE also deletes and
/// grants. USE (MLflow's, for gateway resources) reads like READ here.
/// </summary>
public enum ExperimentPermissionLevel
{
    NoPermissions = 0,
    Read = 1,
    Use = 2,
    Edit = 3,
    Manage = 4,
}

/// <summary>MLflow's names of the permissions (<c>NO_PERMISSIONS</c>, <c>READ</c>, <c>USE</c>, <c>EDIT</c>, <c>MANAGE</c>).</summary>
public static class PermissionNames
{
    static readonly Dictionary<ExperimentPermissionLevel, string> Names = new()
    {
        [ExperimentPermissionLevel.Read] = "READ",
        [ExperimentPermissionLevel.Use] = "USE",
        [ExperimentPermissionLevel.Edit] = "EDIT",
        [ExperimentPermissionLevel.Manage] = "MANAGE",
        [ExperimentPermissionLevel.NoPermissions] = "NO_PERMISSIONS",
    };

    /// <summary>In MLflow's order, for its message: <c>('READ', 'USE', 'EDIT', 'MANAGE', 'NO_PERMISSIONS')</c>.</summary>
    public static IReadOnlyCollection<string> All => Names.Values;

    public static string Of(ExperimentPermissionLevel level) => Names[level];

    public static bool TryParse(string? name, out ExperimentPermissionLevel level)
    {
        foreach (var (value, text) in Names)
            if (text == name)
            {
                level = value;
                return true;
            }
        level = default;
        return false;
    }

    public static bool CanRead(this ExperimentPermissionLevel level) => level >= ExperimentPermissionLevel.Read;
    public static bool CanEdit(this ExperimentPermissionLevel level) => level >= ExperimentPermissionLevel.Edit;
    public static bool CanManage(this ExperimentPermissionLevel level) => level == ExperimentPermissionLevel.Manage;
}
