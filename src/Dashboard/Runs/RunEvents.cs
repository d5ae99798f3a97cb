using System.Collections.Concurrent;
using System.Threading.Channels;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// What live subscribers (pages, SSE clients) receive. Flat so that a browser reads it without a
/// type discriminator: <see cref="Type"/> is <c>metric</c>, <c>progress</c>, <c>status</c> or <c>log</c>.
/// </summary>
public sealed record RunEvent(string Type, long RunId)
{
    public string? Track { get; init; }
    public string? Key { get; init; }
    public long? Step { get; init; }
    public double? Value { get; init; }
    public long? TotalSteps { get; init; }
    public double? StepsPerSecond { get; init; }
    public double? EtaSeconds { get; init; }
    public string? Status { get; init; }
    /// <summary>Of a <c>log</c> event: info, warning or error.</summary>
    public string? Level { get; init; }
    public string? Message { get; init; }
}

/// <summary>
/// The in-process broadcast of committed metrics, progress and status changes. Each subscriber has its
/// own bounded queue that drops its oldest events when the subscriber falls behind, so a slow page
/// never slows training or other subscribers (the database keeps the full history).
/// </summary>
public sealed class RunEventHub
{
    readonly ConcurrentDictionary<Subscription, byte> _subscriptions = new();

    /// <param name="runId">Only this run's events, or every run's when null.</param>
    public Subscription Subscribe(long? runId = null, int capacity = 8192)
    {
        var subscription = new Subscription(this, runId, Channel.CreateBounded<RunEvent>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        }));
        _subscriptions[subscription] = 0;
        return subscription;
    }

    public void Publish(RunEvent e)
    {
        foreach (var s in _subscriptions.Keys)
            if (s.RunId is null || s.RunId == e.RunId) s.Channel.Writer.TryWrite(e);
    }

    public sealed class Subscription : IDisposable
    {
        readonly RunEventHub _hub;

        internal Subscription(RunEventHub hub, long? runId, Channel<RunEvent> channel)
        {
            _hub = hub;
            RunId = runId;
            Channel = channel;
        }

        public long? RunId { get; }
        internal Channel<RunEvent> Channel { get; }
        public ChannelReader<RunEvent> Reader => Channel.Reader;

        public void Dispose()
        {
            _hub._subscriptions.TryRemove(this, out _);
            Channel.Writer.TryComplete();
        }
    }
}
