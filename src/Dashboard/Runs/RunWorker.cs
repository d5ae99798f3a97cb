using EmaLab.Dashboard.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// Takes queued runs in order and trains each on a dedicated thread (TorchSharp work must not run on
/// the thread pool), <see cref="EmaLabOptions.MaxConcurrentRuns"/> at a time.
/// </summary>
public sealed class RunWorker(
    RunQueue queue,
    RunExecutor executor,
    IDbContextFactory<EmaLabDbContext> dbFactory,
    IOptions<EmaLabOptions> options,
    ILogger<RunWorker> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Runs still queued when the server last stopped are taken again, oldest first.
        using (var db = dbFactory.CreateDbContext())
            foreach (var id in db.Runs.Where(r => r.Status == RunStatus.Queued).OrderBy(r => r.Id).Select(r => r.Id).ToList())
                queue.Enqueue(id);

        var workers = Enumerable.Range(0, options.Value.MaxConcurrentRuns).Select(i =>
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try { Work(stoppingToken); done.SetResult(); }
                catch (Exception e) { done.SetException(e); }
            })
            { IsBackground = true, Name = $"emalab-trainer-{i}" };
            thread.Start();
            return done.Task;
        }).ToArray();
        return Task.WhenAll(workers);
    }

    void Work(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            long runId;
            try
            {
                runId = queue.Pending.ReadAsync(stoppingToken).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                return;
            }
            logger.LogInformation("Starting run {RunId}", runId);
            executor.Execute(runId, stoppingToken);
        }
    }
}
