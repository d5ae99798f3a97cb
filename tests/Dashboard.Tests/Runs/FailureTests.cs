using System.Net;
using System.Text.Json.Nodes;

namespace EmaLab.Dashboard.Tests;

public sealed class FailureTests(EmaLabFactory factory) : FailureSuite(factory), IClassFixture<EmaLabFactory>;

/// <summary>The same tests with the app on PostgreSQL.</summary>
[Trait("Speed", "Postgres")]
public sealed class FailureOnPostgresTests(PostgresEmaLabFactory factory) : FailureSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class FailureSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    [Fact]
    public async Task A_run_that_throws_fails_with_its_reason_and_the_next_run_starts()
    {
        // Stop a run so it keeps a resume bundle, then corrupt the bundle: resuming it must fail cleanly.
        var broken = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000, evalInterval: 1000));
        await Api.WaitForAsync(_client, broken.Id(), r => r.Status() == "running" && r.GetProperty("step").GetInt64() > 10);
        await _client.PostAsync($"/api/runs/{broken.Id()}/cancel", null);
        var cancelled = await Api.WaitForAsync(_client, broken.Id(), r => r.GetProperty("bundleStep").ValueKind == System.Text.Json.JsonValueKind.Number);
        var bundle = Path.Combine(factory.DataDirectory, "runs", broken.Id().ToString(), $"resume-{cancelled.GetProperty("bundleStep").GetInt64()}.zip");
        Assert.True(File.Exists(bundle));
        await File.WriteAllTextAsync(bundle, "not a zip");
        Assert.Equal(HttpStatusCode.OK, (await _client.PostAsync($"/api/runs/{broken.Id()}/resume", null)).StatusCode);
        var next = await Api.CreateAsync(_client, Api.DigitsRun(steps: 20));

        var failed = await Api.WaitForFinishAsync(_client, broken.Id());
        Assert.Equal("failed", failed.Status());
        Assert.StartsWith(bundle + ": not a readable resume bundle", failed.GetProperty("error").GetString());
        var log = await Api.GetAsync(_client, $"/api/runs/{broken.Id()}/log");
        Assert.Contains(log.EnumerateArray(), l => l.GetProperty("level").GetString() == "error" && l.GetProperty("message").GetString()!.Contains(" at "));

        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, next.Id())).Status());
        Assert.Equal("Healthy", await _client.GetStringAsync("/health"));
    }

    [Fact]
    public async Task A_run_that_fails_mid_training_keeps_the_step_it_reached()
    {
        // The bundle at step 5,000 cannot be written: a directory stands at its path. (Step 100 was too close: on a
        // loaded machine the run wrote that bundle before the test made the directory.)
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100_000, evalInterval: 1000));
        Directory.CreateDirectory(Path.Combine(factory.DataDirectory, "runs", run.Id().ToString(), "resume-5000.zip"));

        var failed = await Api.WaitForFinishAsync(_client, run.Id());
        Assert.Equal("failed", failed.Status());
        Assert.Equal(5000, failed.GetProperty("step").GetInt64());
        Assert.Contains("resume-5000.zip", failed.GetProperty("error").GetString());
    }
}
