using System.Diagnostics;
using System.Threading.Channels;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Training;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// <b>Where a metric is written</b> (docs/design.md, "A metric, from the training loop to a chart"): a bounded channel
/// (back-pressure on the trainer), one writer, one transaction per flush, then the live event. A batch is never dropped:
/// a transient error is retried; one that persists fails only the runs whose rows it refuses, with the reason.
/// </summary>
public sealed class MetricPipeline : BackgroundService
{
    enum Kind : byte { Metric, ClientMetrics, Progress, Log, BundleSaved, Flush }

    /// <summary>One queued item; a struct so that a metric costs no allocation on the training thread.</summary>
    readonly record struct Item(Kind Kind, long RunId, string? Track, string? Key, long Step, double Value, long WallTimeMs,
        TrainingLogLevel Level = default, string? Text = null, TrainingProgress? Progress = null, TaskCompletionSource? Flushed = null,
        IReadOnlyList<MetricRow>? Points = null, string? Attempt = null)
    {
        /// <summary>Rows this item writes (a client's batch is one item of many rows).</summary>
        public int Rows => Points?.Count ?? (Kind == Kind.Metric ? 1 : 0);
    }


    readonly Channel<Item> _channel = Channel.CreateBounded<Item>(new BoundedChannelOptions(16_384)
    {
        FullMode = BoundedChannelFullMode.Wait,
        SingleReader = true,
    });
    static readonly TimeSpan MaxRetryPause = TimeSpan.FromSeconds(5);

    readonly System.Collections.Concurrent.ConcurrentDictionary<long, string> _failedRuns = new();
    readonly RunEventHub _hub;
    readonly MetricVersions _versions;
    readonly EmaLabDatabase _database;
    readonly BundleCleaner _bundles;
    readonly EmaLabOptions _options;
    readonly ILogger<MetricPipeline> _logger;

    public MetricPipeline(RunEventHub hub, MetricVersions versions, EmaLabDatabase database, BundleCleaner bundles, IOptions<EmaLabOptions> options,
        ILogger<MetricPipeline> logger)
    {
        _hub = hub;
        _database = database;
        _versions = versions;
        _bundles = bundles;
        _options = options.Value;
        _logger = logger;
    }

    static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>Why the run's rows could not be stored, once the writer gave up on them; its trainer then stops with this reason.</summary>
    public string? StoreFailureOf(long runId) => _failedRuns.TryGetValue(runId, out var reason) ? reason : null;

    /// <summary>Forgets an earlier store failure of the run (it is starting again).</summary>
    public void ClearStoreFailure(long runId) => _failedRuns.TryRemove(runId, out _);

    /// <summary>Queues a metric; blocks the calling (training) thread while the queue is full.</summary>
    /// <param name="attempt">The trainer's start of the run: its reports are stored only while it is the run's current
    /// one (null: not checked).</param>
    public void WriteMetric(long runId, in MetricPoint point, string? attempt = null) =>
        Enqueue(new Item(Kind.Metric, runId, point.Track, point.Key, point.Step, point.Value, Now, Attempt: attempt));

    /// <summary>
    /// Queues the metrics of one client call as one item (one wake-up of the writer, not one per point), with the
    /// client's timestamps; waits (without holding a thread) while the queue is full, so a fast client is slowed
    /// down rather than dropped.
    /// </summary>
    public ValueTask WriteClientMetricsAsync(long runId, IReadOnlyList<MetricRow> points, CancellationToken cancellationToken) =>
        _channel.Writer.WriteAsync(new Item(Kind.ClientMetrics, runId, null, null, 0, 0, 0, Points: points), cancellationToken);

    public void WriteProgress(long runId, TrainingProgress progress, string? attempt = null) =>
        Enqueue(new Item(Kind.Progress, runId, null, null, progress.Step, 0, Now, Progress: progress, Attempt: attempt));

    public void WriteLog(long runId, TrainingLogLevel level, string message, string? attempt = null) =>
        Enqueue(new Item(Kind.Log, runId, null, null, 0, 0, Now, level, message, Attempt: attempt));

    /// <summary>Records that the run's resume bundle for <paramref name="step"/> is on disk, once the metrics queued
    /// before it are committed.</summary>
    public void WriteBundleSaved(long runId, long step, string? attempt = null) =>
        Enqueue(new Item(Kind.BundleSaved, runId, null, null, step, 0, Now, Attempt: attempt));

    /// <summary>Completes once everything queued before the call is committed and broadcast.</summary>
    public Task FlushAsync()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(new Item(Kind.Flush, 0, null, null, 0, 0, 0, Flushed: done));
        return done.Task;
    }

    void Enqueue(Item item)
    {
        if (_channel.Writer.TryWrite(item)) return;
        // Full: wait for the writer (back-pressure). Training runs on its own thread, so blocking it is fine.
        _channel.Writer.WriteAsync(item).AsTask().GetAwaiter().GetResult();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var writer = _database.OpenWriter();
        var batch = new List<Item>(_options.Metrics.FlushRows);
        var interval = TimeSpan.FromMilliseconds(_options.Metrics.FlushIntervalMs);
        var reader = _channel.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                batch.Clear();
                var started = Stopwatch.StartNew();
                var flushAsked = false;
                var rows = 0;
                while (rows < _options.Metrics.FlushRows)
                {
                    if (reader.TryRead(out var item))
                    {
                        batch.Add(item);
                        rows += Math.Max(1, item.Rows);
                        flushAsked |= item.Kind == Kind.Flush;
                        continue;
                    }
                    // Someone waits for a commit: take what is queued already (other clients' rows share the
                    // commit), but do not wait for more.
                    if (flushAsked) break;
                    var remaining = interval - started.Elapsed;
                    if (remaining <= TimeSpan.Zero) break;
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    timeout.CancelAfter(remaining);
                    try
                    {
                        if (!await reader.WaitToReadAsync(timeout.Token)) break;
                    }
                    catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                    {
                        break;
                    }
                }
                await CommitAsync(writer, batch, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        // Shutting down: commit what is queued so a graceful stop loses nothing.
        batch.Clear();
        while (reader.TryRead(out var rest)) batch.Add(rest);
        if (batch.Count > 0) await CommitAsync(writer, batch, CancellationToken.None);
    }

    async Task CommitAsync(MetricTableWriter writer, List<Item> batch, CancellationToken stoppingToken)
    {
        // Rows of a run that already failed to store are not retried again and again: that run is stopping.
        if (!_failedRuns.IsEmpty) batch.RemoveAll(i => i.Kind != Kind.Flush && _failedRuns.ContainsKey(i.RunId));
        var pause = TimeSpan.FromMilliseconds(50);
        var giveUp = Stopwatch.StartNew();
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                Write(writer, batch);
                Publish(batch);
                return;
            }
            catch (Exception e) when (_database.IsTransient(e) && giveUp.Elapsed.TotalSeconds < _options.Metrics.StoreRetrySeconds
                && !stoppingToken.IsCancellationRequested)
            {
                // Nothing is dropped: the batch waits, the channel fills and holds the trainers back.
                _logger.LogWarning("Could not commit {Count} rows ({Error}); retrying in {Pause} ms (attempt {Attempt})", batch.Count, e.Message,
                    pause.TotalMilliseconds, attempt);
                try { await Task.Delay(pause, stoppingToken); }
                catch (OperationCanceledException) { }
                pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, MaxRetryPause.Ticks));
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Could not commit a batch of {Count} rows; writing it run by run", batch.Count);
                CommitRunByRun(writer, batch);
                return;
            }
        }
    }

    /// <summary>
    /// The batch failed for good: each run's rows get a transaction of their own, so a run whose rows cannot be
    /// stored fails alone (with the reason) and every other run's rows are kept.
    /// </summary>
    void CommitRunByRun(MetricTableWriter writer, List<Item> batch)
    {
        foreach (var group in batch.Where(i => i.Kind != Kind.Flush).GroupBy(i => i.RunId))
        {
            var items = group.ToList();
            try
            {
                Write(writer, items);
                Publish(items);
            }
            catch (Exception e)
            {
                var reason = $"Could not store this run's metrics: {e.Message}";
                _failedRuns[group.Key] = reason;
                _logger.LogError(e, "Run {RunId}: {Count} rows could not be stored; the run stops", group.Key, items.Count);
            }
        }
        Publish(batch.Where(i => i.Kind == Kind.Flush).ToList());
    }

    /// <summary>
    /// Reports of a start that is no longer the run's current attempt (another start took the run over, e.g. a worker that
    /// found this trainer gone) are not stored, and that trainer is told to stop (<see cref="StoreFailureOf"/>).
    /// </summary>
    void DropSuperseded(MetricTableWriter writer, List<Item> batch)
    {
        var checkedRuns = batch.Where(i => i.Attempt is not null).Select(i => i.RunId).Distinct().ToList();
        if (checkedRuns.Count == 0) return;
        var current = writer.Attempts(checkedRuns);
        bool Superseded(Item i) => i.Attempt is not null && current.GetValueOrDefault(i.RunId) != i.Attempt;
        foreach (var stale in batch.Where(Superseded).Select(i => (i.RunId, i.Attempt)).Distinct().ToList())
        {
            var reason = $"Run {stale.RunId} was taken over by another start (attempt {current.GetValueOrDefault(stale.RunId) ?? "none"}); this one (attempt {stale.Attempt}) stops and its reports are not stored.";
            if (_failedRuns.TryAdd(stale.RunId, reason)) _logger.LogWarning("{Reason}", reason);
        }
        batch.RemoveAll(Superseded);
    }

    /// <summary>Broadcasts what a batch committed: one <c>metrics</c> event per run (all its points), then progress, logs and flushes.</summary>
    void Publish(List<Item> batch)
    {
        foreach (var run in batch.Where(i => i.Kind is Kind.Metric or Kind.ClientMetrics).GroupBy(i => i.RunId))
        {
            _versions.Advance(run.Key);
            _hub.Publish(new RunEvent(RunEventType.Metrics, run.Key)
            {
                Points = run.SelectMany(i => i.Points is { } points
                    ? points
                    : [new MetricRow(i.Track!, i.Key!, i.Step, i.Value, i.WallTimeMs)]).ToList(),
            });
        }
        foreach (var item in batch)
        {
            switch (item.Kind)
            {
                case Kind.Progress:
                    var p = item.Progress!;
                    _hub.Publish(new RunEvent(RunEventType.Progress, item.RunId)
                    {
                        Step = p.Step, TotalSteps = p.TotalSteps, StepsPerSecond = p.StepsPerSecond, EtaSeconds = p.EstimatedRemaining?.TotalSeconds,
                    });
                    break;
                case Kind.Log:
                    _hub.Publish(new RunEvent(RunEventType.Log, item.RunId) { Level = LevelName(item.Level), Message = item.Text });
                    break;
                case Kind.BundleSaved:
                    // The database now names this bundle: older ones can go (on the cleaner's task, not this thread).
                    _bundles.Superseded(item.RunId, keepStep: item.Step);
                    break;
                case Kind.Flush:
                    item.Flushed!.TrySetResult();
                    break;
            }
        }
    }

    static string LevelName(TrainingLogLevel level) => WireNames.Of(level);

    /// <summary>Writes a batch in one transaction of the store, without the reports of superseded attempts (removed from the batch).</summary>
    void Write(MetricTableWriter writer, List<Item> batch)
    {
        using var transaction = writer.Begin();
        DropSuperseded(writer, batch);
        foreach (var item in batch)
        {
            switch (item.Kind)
            {
                case Kind.Metric: writer.Metric(item.RunId, item.Key!, item.Track!, item.Step, item.Value, item.WallTimeMs); break;
                case Kind.ClientMetrics:
                    foreach (var p in item.Points!) writer.Metric(item.RunId, p.Key, p.Track, p.Step, p.Value, p.WallTimeMs);
                    break;
                case Kind.Progress: writer.Progress(item.RunId, item.Step, item.Progress!.TotalSteps); break;
                case Kind.Log: writer.Log(item.RunId, item.WallTimeMs, LevelName(item.Level), item.Text!); break;
                case Kind.BundleSaved: writer.BundleStep(item.RunId, item.Step); break;
            }
        }
        transaction.Commit();
    }
}
