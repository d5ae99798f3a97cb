using System.Text.Json;
using System.Threading.Channels;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// Live events between the processes that share one PostgreSQL database (a web role and its workers), on one
/// <c>NOTIFY</c> channel. A metrics event travels as "run r changed" only: the receiver re-reads what the run committed
/// after what it has delivered (<see cref="NewPoints"/>) and publishes that here. Other events are small and travel whole.
/// Design: docs/design.md, "A metric, from the training loop to a chart".
/// </summary>
public sealed class PostgresEventRelay(
    EmaLabDatabase database,
    RunEventHub hub,
    MetricVersions versions,
    Microsoft.Extensions.Options.IOptions<EmaLabOptions> options,
    ILogger<PostgresEventRelay> logger) : BackgroundService
{
    public const string Channel = "emalab_events";
    /// <summary>Under NOTIFY's 8000 bytes with the sender and the event's other fields.</summary>
    const int MaxMessageChars = 2000;
    /// <summary>Runs whose delivered positions are kept; a run dropped from them starts again from its latest values.</summary>
    const int MaxFollowedRuns = 1024;

    /// <summary>This process among those on the database: its own events come back to it and are skipped.</summary>
    readonly string _sender = Guid.NewGuid().ToString("N");

    // A payload is "<sender>\n<event as JSON>": a process skips its own events without parsing them.
    const char SenderEnd = '\n';
    // A diverged metric is NaN or infinite: written as "NaN"/"Infinity", as the event streams write them.
    static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>What the listener received, in order; an event without a type-specific meaning here only starts following its run.</summary>
    readonly record struct Received(RunEvent? Event, long RunId);
    readonly Channel<Received> _received = System.Threading.Channels.Channel.CreateUnbounded<Received>(new() { SingleReader = true });
    // Per run followed: the (step, time) of each series up to which its points were published here.
    readonly Dictionary<long, (Dictionary<(string Track, string Key), SeriesPosition> Series, long LastUsed)> _delivered = new();
    // Runs created after this process listened: everything they commit is new here, from their first point.
    long _runsBeforeListening = long.MaxValue;
    readonly HashSet<long> _followedSinceCreation = [];
    long _notices;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var postgres = (PostgresDatabase)database;
        // A worker shows nothing: it only sends (receiving every change of every run would cost each worker for nothing).
        await Task.WhenAll(
            options.Value.Serves ? ListenAsync(postgres, stoppingToken) : Task.CompletedTask,
            options.Value.Serves ? PublishReceivedAsync(stoppingToken) : Task.CompletedTask,
            SendAsync(postgres, stoppingToken));
    }

    Task ListenAsync(PostgresDatabase postgres, CancellationToken stoppingToken) => KeepConnectedAsync("from", async () =>
    {
        await using var connection = await postgres.OpenConnectionAsync(stoppingToken);
        connection.Notification += (_, notification) => Receive(notification.Payload);
        await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
            await listen.ExecuteNonQueryAsync(stoppingToken);
        if (_runsBeforeListening == long.MaxValue)
        {
            await using var db = database.CreateContext();
            _runsBeforeListening = await db.Runs.MaxAsync(r => (long?)r.Id, stoppingToken) ?? 0;
            var running = await db.Runs.Where(r => r.Status == RunStatus.Running).Select(r => r.Id).ToListAsync(stoppingToken);
            foreach (var id in running) _received.Writer.TryWrite(new Received(null, id));
        }
        while (true) await connection.WaitAsync(stoppingToken);
    }, stoppingToken);

    void Receive(string payload)
    {
        var end = payload.IndexOf(SenderEnd);
        if (end <= 0 || payload.AsSpan(0, end).SequenceEqual(_sender)) return;
        RunEvent? e;
        try { e = JsonSerializer.Deserialize<RunEvent>(payload.AsSpan(end + 1), Json); }
        catch (JsonException) { return; } // not an event of EMA Lab's
        if (e is not null) _received.Writer.TryWrite(new Received(e with { Relayed = true }, e.RunId));
    }

    /// <summary>Publishes what other processes sent, in their order; a change of metrics as the points it committed.</summary>
    async Task PublishReceivedAsync(CancellationToken stoppingToken)
    {
        await foreach (var (e, runId) in _received.Reader.ReadAllAsync(stoppingToken))
        {
            try
            {
                switch (e?.Type)
                {
                    case null or RunEventType.Status when !_delivered.ContainsKey(runId):
                        Follow(runId);
                        break;
                    case RunEventType.Metrics when NewPoints(runId) is { Count: > 0 } points:
                        versions.Advance(runId); // this process's series cache reads again
                        hub.Publish(e with { Points = points });
                        break;
                    case RunEventType.Deleted:
                        _delivered.Remove(runId);
                        break;
                }
            }
            catch (Exception error) when (!stoppingToken.IsCancellationRequested)
            {
                // A failed read loses nothing: the run's next change reads from the same positions.
                logger.LogWarning("Live metrics of run {RunId} from another process not read ({Error})", runId, error.Message);
            }
            if (e is { Type: not RunEventType.Metrics }) hub.Publish(e);
        }
    }

    /// <summary>
    /// The points of the run committed after those published here, per series: the run's latest values say which series
    /// moved, and each moved series is read after its delivered (step, time). A point logged at an earlier step than its
    /// series' last is stored but not shown live.
    /// </summary>
    List<MetricRow> NewPoints(long runId)
    {
        var (delivered, latest) = Follow(runId);
        var points = new List<MetricRow>();
        foreach (var (series, last) in latest)
        {
            SeriesPosition? after = delivered.TryGetValue(series, out var position) ? position : null;
            if (after is { } a && (a.Step, a.WallTimeMs).CompareTo((last.Step, last.WallTimeMs)) >= 0) continue;
            var read = database.ReadPoints(runId, series.Track, series.Key, after);
            if (read.Count == 0) continue;
            points.AddRange(read.Select(p => new MetricRow(series.Track, series.Key, p.Step, p.Value, p.WallTimeMs)));
            delivered[series] = new SeriesPosition(read[^1].Step, read[^1].WallTimeMs);
        }
        return points;
    }

    /// <summary>
    /// The run's delivered positions and its latest values now. A run followed from here on starts from nothing when it
    /// was created after this process listened (all it commits is new here), else from its latest values (what it had is
    /// on the page already): at listening for the runs then running, at a status change for one resumed, or at its next
    /// change (then not shown live).
    /// </summary>
    (Dictionary<(string Track, string Key), SeriesPosition> Delivered,
        Dictionary<(string Track, string Key), SeriesPosition> Latest) Follow(long runId)
    {
        var notice = ++_notices;
        using var db = database.CreateContext();
        var latest = db.LatestMetrics.AsNoTracking().Where(l => l.RunId == runId).ToList()
            .ToDictionary(l => (l.Track, l.Key), l => new SeriesPosition(l.Step, l.WallTimeMs));
        if (!_delivered.TryGetValue(runId, out var followed))
        {
            var newSinceListening = runId > _runsBeforeListening && _followedSinceCreation.Add(runId);
            followed = (newSinceListening ? new() : new(latest), notice);
            if (_delivered.Count >= MaxFollowedRuns) _delivered.Remove(_delivered.MinBy(run => run.Value.LastUsed).Key);
        }
        _delivered[runId] = (followed.Series, notice);
        return (followed.Series, latest);
    }

    async Task SendAsync(PostgresDatabase postgres, CancellationToken stoppingToken)
    {
        using var subscription = hub.Subscribe(capacity: 65_536);
        await KeepConnectedAsync("to", async () =>
        {
            await using var connection = await postgres.OpenConnectionAsync(stoppingToken);
            await using var notify = new NpgsqlCommand("SELECT pg_notify($1, $2)", connection);
            notify.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Channel });
            var payload = new NpgsqlParameter<string>();
            notify.Parameters.Add(payload);
            await foreach (var e in subscription.Reader.ReadAllAsync(stoppingToken))
            {
                if (e.Relayed) continue;
                payload.TypedValue = _sender + SenderEnd + JsonSerializer.Serialize(Notice(e), Json);
                await notify.ExecuteNonQueryAsync(stoppingToken);
            }
        }, stoppingToken);
    }

    /// <summary>What travels of an event: a metrics event without its points (the receiver reads them), a long log line cut.</summary>
    static RunEvent Notice(RunEvent e) => e switch
    {
        { Type: RunEventType.Metrics } => e with { Points = null },
        { Message.Length: > MaxMessageChars } => e with { Message = e.Message[..MaxMessageChars] + " …" },
        _ => e,
    };

    /// <summary>Runs <paramref name="connected"/> until the process stops, again 2 s after each failure (a lost connection).</summary>
    async Task KeepConnectedAsync(string direction, Func<Task> connected, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await connected();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogWarning("Live events {Direction} other processes paused ({Error}); connecting again in 2 s", direction, e.Message);
                try { await Task.Delay(TimeSpan.FromSeconds(2), stoppingToken); }
                catch (OperationCanceledException) { return; }
            }
        }
    }
}
