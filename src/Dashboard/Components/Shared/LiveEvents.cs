using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using Microsoft.JSInterop;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// <b>Where a page gets live events.</b> One subscription to the run events (one run's or every run's), throttled: the
/// events that arrive within <c>every</c> of the first one are handed over as one batch, so a page redraws at most once
/// per interval however fast a run reports. Every live page uses it and re-reads what a batch says changed. Subscribe
/// before reading what the page shows and start after, so no event falls between the two; dispose with the page.
/// </summary>
public sealed class LiveEvents : IDisposable
{
    readonly RunEventHub.Subscription _subscription;
    readonly CancellationTokenSource _stop = new();
    int _started;

    LiveEvents(RunEventHub.Subscription subscription) => _subscription = subscription;

    /// <summary>Gathers <paramref name="runId"/>'s events (every run's when null); none is handed over before <see cref="Start"/>.</summary>
    public static LiveEvents Subscribe(RunEventHub hub, long? runId = null) => new(hub.Subscribe(runId));

    /// <summary>Subscribes and starts at once: for a page that shows nothing an event could race.</summary>
    public static LiveEvents Follow(RunEventHub hub, long? runId, TimeSpan every, Func<IReadOnlyList<RunEvent>, Task> onBatch)
    {
        var live = Subscribe(hub, runId);
        live.Start(every, onBatch);
        return live;
    }

    /// <summary>
    /// Hands each batch to <paramref name="onBatch"/> (the page marshals it onto its render context with <c>InvokeAsync</c>).
    /// Once: a later call (the page's parameters set again) changes nothing.
    /// </summary>
    public void Start(TimeSpan every, Func<IReadOnlyList<RunEvent>, Task> onBatch)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0) _ = DeliverAsync(every, onBatch, _stop.Token);
    }

    async Task DeliverAsync(TimeSpan every, Func<IReadOnlyList<RunEvent>, Task> onBatch, CancellationToken stop)
    {
        try
        {
            while (await _subscription.Reader.WaitToReadAsync(stop))
            {
                await Task.Delay(every, stop);
                var batch = new List<RunEvent>();
                while (_subscription.Reader.TryRead(out var e)) batch.Add(e);
                try { await onBatch(batch); }
                catch (Exception e) when (e is not (OperationCanceledException or JSDisconnectedException or ObjectDisposedException))
                {
                    // A batch the page could not apply (a slow chart call) must not end its live updates: the next one tries again.
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (JSDisconnectedException) { }
        catch (ObjectDisposedException) { }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _subscription.Dispose();
    }
}
