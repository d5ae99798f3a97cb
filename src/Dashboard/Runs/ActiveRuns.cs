using System.Collections.Concurrent;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Runs;

/// <summary>The runs this process trains now, with their cancellation and live progress (whoever handed them over).</summary>
public sealed class ActiveRuns
{
    readonly ConcurrentDictionary<long, ActiveRun> _active = new();

    /// <summary>
    /// Registers the run as being trained; null when it already is (queued twice by racing requests). Training stops when
    /// the process stops, when the run is cancelled here, or when <paramref name="withdrawn"/> fires (its job was deleted).
    /// </summary>
    internal ActiveRun? Activate(long runId, CancellationToken stopping, CancellationToken withdrawn = default)
    {
        var active = new ActiveRun(CancellationTokenSource.CreateLinkedTokenSource(stopping, withdrawn));
        if (_active.TryAdd(runId, active)) return active;
        active.Cancellation.Dispose();
        return null;
    }

    internal void Deactivate(long runId)
    {
        if (_active.TryRemove(runId, out var active))
        {
            active.Stopped.TrySetResult();
            active.Cancellation.Dispose();
        }
    }

    public LiveProgress? ProgressOf(long runId) => _active.TryGetValue(runId, out var a) ? a.Progress : null;

    public enum CancelResult { NotActive, Stopped, Stopping }

    /// <summary>How long a cancel waits for the run's trainer to stop before it answers "stopping".</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Asks an active run to stop and waits up to <paramref name="timeout"/> for it (a slow step or evaluation
    /// may take longer: then it is still stopping, and <see cref="WhenStoppedAsync"/> tells when it has).
    /// </summary>
    public async Task<CancelResult> CancelAsync(long runId, TimeSpan timeout)
    {
        if (!_active.TryGetValue(runId, out var active)) return CancelResult.NotActive;
        active.UserCancelled = true;
        await active.Cancellation.CancelAsync();
        try
        {
            await active.Stopped.Task.WaitAsync(timeout);
            return CancelResult.Stopped;
        }
        catch (TimeoutException)
        {
            return CancelResult.Stopping;
        }
    }

    /// <summary>Completes when the run is not being trained (at once when it is not active).</summary>
    public Task WhenStoppedAsync(long runId) => _active.TryGetValue(runId, out var active) ? active.Stopped.Task : Task.CompletedTask;

    /// <summary>The trainer's latest progress report and when it arrived.</summary>
    public sealed record LiveProgress(TrainingProgress Progress, DateTimeOffset ReportedAt);

    internal sealed class ActiveRun(CancellationTokenSource cancellation)
    {
        public CancellationTokenSource Cancellation { get; } = cancellation;
        public TaskCompletionSource Stopped { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public volatile LiveProgress? Progress;
        public volatile bool UserCancelled;
    }
}
