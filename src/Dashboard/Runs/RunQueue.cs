using System.Collections.Concurrent;
using System.Threading.Channels;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Runs;

/// <summary>Runs waiting to be trained (in order) and the runs being trained now, with their cancellation and live progress.</summary>
public sealed class RunQueue
{
    readonly Channel<long> _pending = Channel.CreateUnbounded<long>(new UnboundedChannelOptions { SingleReader = false });
    readonly ConcurrentDictionary<long, ActiveRun> _active = new();

    public void Enqueue(long runId) => _pending.Writer.TryWrite(runId);

    internal ChannelReader<long> Pending => _pending.Reader;

    internal ActiveRun Activate(long runId, CancellationToken stopping)
    {
        var active = new ActiveRun(CancellationTokenSource.CreateLinkedTokenSource(stopping));
        _active[runId] = active;
        return active;
    }

    internal void Deactivate(long runId)
    {
        if (_active.TryRemove(runId, out var active))
        {
            active.Stopped.TrySetResult();
            active.Cancellation.Dispose();
        }
    }

    public bool IsActive(long runId) => _active.ContainsKey(runId);

    public LiveProgress? ProgressOf(long runId) => _active.TryGetValue(runId, out var a) ? a.Progress : null;

    /// <summary>Asks an active run to stop and waits (up to <paramref name="timeout"/>) until it has. False if the run is not active.</summary>
    public async Task<bool> CancelAsync(long runId, TimeSpan timeout)
    {
        if (!_active.TryGetValue(runId, out var active)) return false;
        active.UserCancelled = true;
        await active.Cancellation.CancelAsync();
        await active.Stopped.Task.WaitAsync(timeout);
        return true;
    }

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
