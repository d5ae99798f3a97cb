using System.Text.RegularExpressions;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The dashboard's folders depend on each other one way only, as the engine's do (its <c>LayeringTests</c>): host
/// settings and HTTP plumbing at the bottom, then the database, metrics and live events, the run's life, who trains
/// (above the run's life: a trainer host implements the run's <c>ITrainerHost</c>), the MLflow protocol and access, the
/// features that build on runs (groups, datasets), the API that maps them all, the pages on top; the root holds only the
/// composition (<c>Program.cs</c>). Nothing but the composition sees <c>Trainers</c>.
/// </summary>
public class DashboardLayeringTests
{
    static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Hosting"] = [],
        ["Data"] = ["Hosting"],
        ["Metrics"] = ["Data", "Hosting"],
        ["Runs"] = ["Metrics", "Data", "Hosting"],
        ["Trainers"] = ["Runs", "Metrics", "Data", "Hosting"],
        ["Tracking"] = ["Runs", "Metrics", "Data", "Hosting"],
        ["Security"] = ["Tracking", "Data", "Hosting"],
        ["Groups"] = ["Runs", "Metrics", "Data", "Hosting"],
        ["Datasets"] = ["Runs", "Data", "Hosting"],
        ["Api"] = ["Runs", "Metrics", "Tracking", "Security", "Groups", "Datasets", "Data", "Hosting"],
        ["Components"] = ["Runs", "Metrics", "Tracking", "Security", "Groups", "Datasets", "Data", "Hosting"],
    };

    static readonly string Dashboard = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../src/Dashboard"));

    static IEnumerable<string> SourceFiles(string folder) =>
        Directory.EnumerateFiles(folder, "*.*", SearchOption.AllDirectories)
            .Where(f => (f.EndsWith(".cs", StringComparison.Ordinal) || f.EndsWith(".razor", StringComparison.Ordinal))
                        && !f.Contains("/obj/", StringComparison.Ordinal) && !f.Contains("/bin/", StringComparison.Ordinal));

    [Fact]
    public void Every_folder_uses_only_the_folders_below_it()
    {
        Assert.True(Directory.Exists(Dashboard), Dashboard);
        var folders = Directory.GetDirectories(Dashboard).Select(Path.GetFileName).Where(f => SourceFiles(Path.Combine(Dashboard, f!)).Any() && f is not ("bin" or "obj")).ToList();
        Assert.Equal(Allowed.Keys.Order(), folders.Order());
        var names = string.Join('|', Allowed.Keys);
        // A using, a fully qualified name, or a name relative to the root namespace (Runs.ActiveRuns from EmaLab.Dashboard.Groups).
        var use = new Regex($@"(?:^@?using\s+EmaLab\.Dashboard\.|EmaLab\.Dashboard\.|(?<![\w.])(?=(?:{names})\.[A-Z]))({names})\b", RegexOptions.Multiline);
        var broken = new List<string>();
        foreach (var folder in folders)
            foreach (var file in SourceFiles(Path.Combine(Dashboard, folder!)))
            {
                var code = Regex.Replace(File.ReadAllText(file), @"^\s*///.*$", "", RegexOptions.Multiline); // doc comments may name anything
                foreach (var used in use.Matches(code).Select(m => m.Groups[1].Value).Distinct())
                    if (used != folder && !Allowed[folder!].Contains(used)) broken.Add($"{Path.GetRelativePath(Dashboard, file)} uses {used}");
            }
        Assert.Empty(broken);
    }

    [Fact]
    public void No_page_holds_a_database_context()
    {
        // Pages read through query services (RunQueries, MetricQueries, GroupService…), so no page can query EF by accident.
        var pages = SourceFiles(Path.Combine(Dashboard, "Components"))
            .Where(f => Regex.IsMatch(File.ReadAllText(f), @"DbContext|Microsoft\.EntityFrameworkCore"))
            .Select(f => Path.GetRelativePath(Dashboard, f));
        Assert.Empty(pages);
    }

    [Fact]
    public void EMA_Labs_own_endpoints_read_through_the_query_services_the_pages_use()
    {
        // One rule per read: GET /api/runs and the runs page, a run's page and /api/runs/{id}, /checkpoints, /log all read
        // through RunQueries (MLflow's protocol has its own service, TrackingService).
        var handlers = new[] { "Runs/RunEndpoints.cs", "Groups/GroupEndpoints.cs", "Datasets/DatasetEndpoints.cs" }
            .Where(f => Regex.IsMatch(File.ReadAllText(Path.Combine(Dashboard, f)), @"DbContext|Microsoft\.EntityFrameworkCore"));
        Assert.Empty(handlers);
    }

    [Fact]
    public void Pages_get_live_events_through_one_throttled_subscription()
    {
        // LiveEvents is the one live mechanism: no page subscribes to the hub, polls or loops with its own delay.
        var loops = SourceFiles(Path.Combine(Dashboard, "Components"))
            .Where(f => Path.GetFileName(f) != "LiveEvents.cs" && Regex.IsMatch(File.ReadAllText(f), @"Hub\.Subscribe|\.Reader\.|PeriodicTimer|Task\.Delay"))
            .Select(f => Path.GetRelativePath(Dashboard, f));
        Assert.Empty(loops);
    }

    [Fact]
    public void The_root_holds_only_the_composition()
    {
        var rootFiles = Directory.GetFiles(Dashboard, "*.cs").Select(Path.GetFileName);
        Assert.Equal(["Program.cs"], rootFiles);
    }
}
