using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The one definition of a series' latest ("final") value, MLflow's: the point with the highest step, then the latest
/// time (a series holds one point per step and time; a later write at the same step and time replaces the earlier).
/// The metric writer keeps it in <see cref="LatestMetric"/> as it stores points; what removes points rebuilds it here.
/// </summary>
public static class LatestValues
{
    /// <summary>Whether a point at (<paramref name="step"/>, <paramref name="time"/>) replaces the latest at (<paramref
    /// name="latestStep"/>, <paramref name="latestTime"/>): ties go to the later write.</summary>
    public static bool Replaces(long step, long time, long latestStep, long latestTime) =>
        step > latestStep || step == latestStep && time >= latestTime;

    /// <summary>The latest row of every series of the selected points, in SQL both databases read (quoted names, a window function).</summary>
    public static string SelectLatest(string where) => $"""
        SELECT "RunId", "Key", "Track", "Step", "WallTimeMs", "Value" FROM
          (SELECT "RunId", "Key", "Track", "Step", "WallTimeMs", "Value",
                  ROW_NUMBER() OVER (PARTITION BY "RunId", "Key", "Track" ORDER BY "Step" DESC, "WallTimeMs" DESC) AS "Rank"
           FROM "Metrics" {where}) AS "Ranked"
        WHERE "Rank" = 1
        """;

    /// <summary>Fills the table from every stored point (the migration that adds it).</summary>
    public static string Backfill => $"""INSERT INTO "LatestMetrics" ("RunId", "Key", "Track", "Step", "WallTimeMs", "Value") {SelectLatest("")}""";

    static readonly string RebuildRun =
        $"""INSERT INTO "LatestMetrics" ("RunId", "Key", "Track", "Step", "WallTimeMs", "Value") {SelectLatest("""WHERE "RunId" = {0}""")}""";

    /// <summary>Recomputes a run's latest values after points were removed (a resumed run drops what it will replay).</summary>
    public static void Rebuild(EmaLabDbContext db, long runId)
    {
        db.LatestMetrics.Where(m => m.RunId == runId).ExecuteDelete();
        db.Database.ExecuteSqlRaw(RebuildRun, runId);
    }
}
