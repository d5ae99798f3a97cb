using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Runs;

public static class RunRecovery
{
    /// <summary>
    /// Recovers from a crash as the role may, once the database is current. In one process, runs left running are
    /// interrupted, resumable from their last bundle (a run whose start was cut short is queued again once, then failed:
    /// <see cref="RunLifecycle.RecoverAsync"/>), and half-written files are removed. With jobs across processes a running
    /// run is left alone (its job goes to another worker when its own stops renewing it); the web role sends a job for
    /// queued runs that have none (the process stopped between storing a run and sending its job).
    /// </summary>
    public static async Task RecoverRunsAsync(this IServiceProvider services)
    {
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value;
        var lifecycle = services.GetRequiredService<RunLifecycle>();
        var paths = services.GetRequiredService<DataPaths>();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(RunRecovery));
        if (!options.JobsAcrossProcesses)
        {
            var recovered = await lifecycle.RecoverAsync(CancellationToken.None);
            if (recovered.Count > 0) logger.LogWarning("{Count} run(s) were left running by an earlier process: {Outcomes}", recovered.Count,
                string.Join(", ", recovered.Select(r => $"run {r.RunId} {r.Status.ToApi()}")));
            var partial = paths.DeletePartialFiles(writtenBefore: DateTime.MaxValue);
            if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) left by an earlier process", partial);
        }
        else if (options.Serves)
        {
            var dispatch = services.GetRequiredService<RunDispatch>();
            var unsent = await lifecycle.ReissueUnsentAsync(CancellationToken.None);
            foreach (var (runId, ticket) in unsent) dispatch.Send(runId, ticket);
            if (unsent.Count > 0) logger.LogWarning("Sent the job of {Count} queued run(s) that had none", unsent.Count);
            // Other processes may be writing files into the shared folder right now: only long-abandoned partial files go.
            var partial = paths.DeletePartialFiles(writtenBefore: DateTime.UtcNow.AddHours(-1));
            if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) abandoned over an hour ago", partial);
        }
    }
}
