using EmaLab.Dashboard.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Trainers;

/// <summary>
/// Takes queued runs in order and trains each on a dedicated thread (TorchSharp work must not run on
/// the thread pool), <see cref="TrainingOptions.MaxConcurrentRuns"/> at a time.
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
            foreach (var id in db.Runs.Where(r => r.Status == RunStatus.Queued && r.Origin == RunOrigin.Engine).OrderBy(r => r.Id).Select(r => r.Id)
                .ToList())
                queue.Enqueue(id);

        var workers = Enumerable.Range(0, options.Value.Training.MaxConcurrentRuns).Select(i =>
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                TrainerPriority.Raise(logger);
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

/// <summary>
/// Training threads run at a higher scheduling priority than request handling (nice −5 on Linux, where .NET's
/// ThreadPriority has no effect), so a busy web server slows training less. Lowering a nice value needs root or
/// CAP_SYS_NICE; without it the thread keeps the default priority and this says so once.
/// </summary>
static class TrainerPriority
{
    const int PrioProcess = 0, Nice = -5;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int setpriority(int which, int who, int priority);

    [System.Runtime.InteropServices.DllImport("libc")]
    static extern int gettid();

    static int _reported;

    public static void Raise(ILogger logger)
    {
        if (!OperatingSystem.IsLinux()) return;
        if (setpriority(PrioProcess, gettid(), Nice) == 0) return;
        if (Interlocked.Exchange(ref _reported, 1) == 0)
            logger.LogInformation("Training threads keep the default scheduling priority (raising it needs root or CAP_SYS_NICE; errno {Errno})",
                System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
    }
}
