using Npgsql;

namespace EmaLab.Dashboard.Tests;

/// <summary>The PostgreSQL store under a database server that drops its connections.</summary>
[Trait("Speed", "Postgres")]
public sealed class PostgresStoreTests
{
    [Fact]
    public async Task Connections_the_server_drops_mid_run_lose_no_metric()
    {
        using var app = new PostgresEmaLabFactory();
        var client = app.CreateClient();
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 3000, evalInterval: 1000));
        await Api.WaitForAsync(client, run.Id(), r => r.GetProperty("step").GetInt64() >= 300);

        // As a server restart or a proxy's idle cut would: every connection of the app ends at once.
        await using (var admin = new NpgsqlConnection(app.ConnectionString))
        {
            await admin.OpenAsync();
            await using var terminate = new NpgsqlCommand("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", admin);
            Assert.True((long)(await terminate.ExecuteScalarAsync())! > 0);
        }

        var finished = await Api.WaitForFinishAsync(client, run.Id());
        Assert.Equal("completed", finished.GetProperty("status").GetString());
        var series = await Api.GetAsync(client, $"/api/runs/{run.Id()}/metrics?key=train/loss&track=raw&maxPoints=0");
        var steps = series.EnumerateArray().Single().GetProperty("points").EnumerateArray().Select(p => p.GetProperty("step").GetInt64()).ToList();
        Assert.Equal(Enumerable.Range(1, 3000).Select(i => (long)i), steps);
    }
}
