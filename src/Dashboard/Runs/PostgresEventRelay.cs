using System.Text.Json;
using EmaLab.Dashboard.Data;
using Npgsql;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// Live events between the processes that share one PostgreSQL database (a web role and its workers): every event this
/// process publishes is sent with <c>NOTIFY</c> on one channel, and every event another process sends is published
/// here, so pages and event streams extend live whichever process trains. Events are sent after the rows they
/// announce are committed, so a page that reads on an event finds them; a relayed metrics event also moves the run's
/// metric version, so this process's series cache reads again. NOTIFY carries at most 8000 bytes: a metrics event is
/// sent in parts. A lost connection is opened again; events sent meanwhile are not replayed (the database has them,
/// and a page reloads them).
/// </summary>
public sealed class PostgresEventRelay(
    MetricStore store,
    RunEventHub hub,
    MetricVersions versions,
    Microsoft.Extensions.Options.IOptions<EmaLabOptions> options,
    ILogger<PostgresEventRelay> logger) : BackgroundService
{
    public const string Channel = "emalab_events";
    const int MaxPayloadBytes = 7900;

    /// <summary>This process among those on the database: its own events come back to it and are skipped.</summary>
    readonly string _sender = Guid.NewGuid().ToString("N");

    // A payload is "<sender>\n<event as JSON>": a process skips its own events without parsing them.
    const char SenderEnd = '\n';
    // A diverged metric is NaN or infinite: written as "NaN"/"Infinity", as the event streams write them.
    static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (store is not PostgresMetricStore postgres) return;
        // A worker shows nothing: it only sends (receiving every point of every run would cost each worker CPU for nothing).
        await Task.WhenAll(options.Value.Serves ? ListenAsync(postgres, stoppingToken) : Task.CompletedTask, SendAsync(postgres, stoppingToken));
    }

    Task ListenAsync(PostgresMetricStore postgres, CancellationToken stoppingToken) => KeepConnectedAsync("from", async () =>
    {
        await using var connection = await postgres.OpenConnectionAsync(stoppingToken);
        connection.Notification += (_, notification) => Receive(notification.Payload);
        await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
            await listen.ExecuteNonQueryAsync(stoppingToken);
        while (true) await connection.WaitAsync(stoppingToken);
    }, stoppingToken);

    void Receive(string payload)
    {
        var end = payload.IndexOf(SenderEnd);
        if (end <= 0 || payload.AsSpan(0, end).SequenceEqual(_sender)) return;
        RunEvent? e;
        try { e = JsonSerializer.Deserialize<RunEvent>(payload.AsSpan(end + 1), Json); }
        catch (JsonException) { return; } // not an event of EMA Lab's
        if (e is null) return;
        if (e.Type == RunEventType.Metrics) versions.Advance(e.RunId);
        hub.Publish(e with { Relayed = true });
    }

    async Task SendAsync(PostgresMetricStore postgres, CancellationToken stoppingToken)
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
                foreach (var part in Parts(e))
                {
                    payload.TypedValue = part;
                    await notify.ExecuteNonQueryAsync(stoppingToken);
                }
            }
        }, stoppingToken);
    }

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

    /// <summary>The event as NOTIFY payloads under the size limit: a metrics event split by its points, anything else whole (a long log line cut).</summary>
    IEnumerable<string> Parts(RunEvent e)
    {
        var whole = _sender + SenderEnd + JsonSerializer.Serialize(e, Json);
        if (System.Text.Encoding.UTF8.GetByteCount(whole) <= MaxPayloadBytes)
        {
            yield return whole;
            yield break;
        }
        if (e.Points is { Count: > 1 } points)
        {
            var half = points.Count / 2;
            foreach (var part in Parts(e with { Points = points.Take(half).ToList() })) yield return part;
            foreach (var part in Parts(e with { Points = points.Skip(half).ToList() })) yield return part;
            yield break;
        }
        if (e.Message is { Length: > 2000 } message)
            yield return _sender + SenderEnd + JsonSerializer.Serialize(e with { Message = message[..2000] + " …" }, Json);
    }
}
