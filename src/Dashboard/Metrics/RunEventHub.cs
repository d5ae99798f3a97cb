using System.Collections.Concurrent;
using System.Threading.Channels;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// The in-process broadcast of committed metrics, progress and status changes. Publishing only queues the
/// event; a dispatcher of its own fans it out, so neither the metric writer nor training ever waits for
/// subscribers. Each subscriber has its own bounded queue that drops its oldest events when it falls
/// behind, so a slow page never slows anything else (the database keeps the full history). Event streams
/// (SSE) are capped per run and in total.
/// </summary>
public sealed class RunEventHub
{
    readonly ConcurrentDictionary<Subscription, byte> _subscriptions = new();
    readonly Channel<RunEvent> _outbox = Channel.CreateUnbounded<RunEvent>(new UnboundedChannelOptions { SingleReader = true });
    readonly ConcurrentDictionary<long, int> _streamsPerRun = new();
    int _streams;

    public RunEventHub() =>
        _ = Task.Factory.StartNew(DispatchAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    /// <param name="runId">Only this run's events, or every run's when null.</param>
    public Subscription Subscribe(long? runId = null, int capacity = 8192) => Add(new Subscription(this, runId, capacity, isStream: false));

    /// <summary>A subscription for an event stream, or null when the run or the server has as many as allowed.</summary>
    public Subscription? TrySubscribeStream(long runId, int maxPerRun, int maxTotal)
    {
        if (Interlocked.Increment(ref _streams) > maxTotal)
        {
            Interlocked.Decrement(ref _streams);
            return null;
        }
        if (_streamsPerRun.AddOrUpdate(runId, 1, (_, n) => n + 1) > maxPerRun)
        {
            ReleaseStream(runId);
            return null;
        }
        return Add(new Subscription(this, runId, 8192, isStream: true));
    }

    void ReleaseStream(long runId)
    {
        Interlocked.Decrement(ref _streams);
        _streamsPerRun.AddOrUpdate(runId, 0, (_, n) => n - 1);
    }

    Subscription Add(Subscription subscription)
    {
        _subscriptions[subscription] = 0;
        return subscription;
    }

    public void Publish(RunEvent e) => _outbox.Writer.TryWrite(e);

    async Task DispatchAsync()
    {
        await foreach (var e in _outbox.Reader.ReadAllAsync())
            foreach (var s in _subscriptions.Keys)
                if (s.RunId is null || s.RunId == e.RunId) s.Channel.Writer.TryWrite(e);
    }

    public sealed class Subscription : IDisposable
    {
        readonly RunEventHub _hub;
        readonly bool _isStream;
        int _disposed;

        internal Subscription(RunEventHub hub, long? runId, int capacity, bool isStream)
        {
            _hub = hub;
            RunId = runId;
            _isStream = isStream;
            Channel = System.Threading.Channels.Channel.CreateBounded<RunEvent>(new BoundedChannelOptions(capacity)
            {
                FullMode = BoundedChannelFullMode.DropOldest,
                SingleReader = true,
            });
        }

        public long? RunId { get; }
        internal Channel<RunEvent> Channel { get; }
        public ChannelReader<RunEvent> Reader => Channel.Reader;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
            _hub._subscriptions.TryRemove(this, out _);
            Channel.Writer.TryComplete();
            if (_isStream) _hub.ReleaseStream(RunId!.Value);
        }
    }
}
