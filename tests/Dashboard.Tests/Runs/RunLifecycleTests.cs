using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The run's life as a transition table, on a real (migrated) SQLite file, without HTTP or threads: each row is a run
/// as it stands, one transition, the run afterwards and the one event it published (or none: a guarded transition that
/// finds the run moved on changes nothing and says nothing).
/// </summary>
public sealed class RunLifecycleTests : IDisposable
{
    readonly string _file = Path.Combine(Path.GetTempPath(), $"emalab-lifecycle-{Guid.NewGuid():N}.db");
    readonly PooledDbContextFactory<EmaLabDbContext> _factory;
    readonly RunEventHub _hub = new();
    readonly RunLifecycle _lifecycle;

    public RunLifecycleTests()
    {
        _factory = new PooledDbContextFactory<EmaLabDbContext>(new DbContextOptionsBuilder<EmaLabDbContext>().UseSqlite($"Data Source={_file};Pooling=false").Options);
        using (var db = _factory.CreateDbContext()) db.Database.Migrate();
        _lifecycle = new RunLifecycle(_factory, _hub);
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        File.Delete(_file);
    }

    /// <summary>A run as a row holds it; the columns the lifecycle coordinates, and the step and bundle they depend on.</summary>
    public sealed record Given(RunStatus Status, RunOrigin Origin = RunOrigin.Engine, string? Attempt = null, string? Ticket = "t1", string? Job = null,
        int StartAttempts = 0, bool CancelRequested = false, bool ResumeRequested = false, long? BundleStep = null, long Step = 40);

    /// <summary>
    /// One row of the table. <paramref name="After"/> reads the run afterwards: its status, then <c>attempt</c> and
    /// <c>ticket</c> as <c>same</c>, <c>new</c> or <c>none</c>, the job, start attempts, the cancel and resume flags, and the
    /// start of the error (<c>-</c>: none).
    /// </summary>
    public sealed record Row(string Transition, Given Before, Func<RunLifecycle, long, Task<object?>> Act, string After, string? Event);

    static Row R(string transition, Given before, Func<RunLifecycle, long, object?> act, string after, string? @event) =>
        new(transition, before, (l, id) => Task.FromResult(act(l, id)), after, @event);

    static Row RAsync(string transition, Given before, Func<RunLifecycle, long, Task<object?>> act, string after, string? @event) =>
        new(transition, before, act, after, @event);

    static JobTicket Job(string ticket, string? jobId = "j2") => new(ticket, jobId, "w2", CancellationToken.None);

    public static TheoryData<string> Transitions() => [.. Table.Select(r => r.Transition)];

    static readonly Row[] Table =
    [
        // A trainer takes a run: one conditional update, so two workers, or a worker and a cancel, never both have it.
        R("claim a queued run", new(RunStatus.Queued), (l, id) => l.Claim(id, null),
            "running attempt:new ticket:same job:- starts:1 cancel:no resume:no error:-", "running"),
        R("claim a queued run with its job", new(RunStatus.Queued), (l, id) => l.Claim(id, Job("t1")),
            "running attempt:new ticket:same job:j2 starts:1 cancel:no resume:no error:-", "running"),
        R("a job with an old ticket claims nothing", new(RunStatus.Queued), (l, id) => l.Claim(id, Job("t0")),
            "queued attempt:none ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        R("a running run is not claimed without a job", new(RunStatus.Running, Attempt: "a1"), (l, id) => l.Claim(id, null),
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        R("take over a run whose trainer died: resume from its bundle", new(RunStatus.Running, Attempt: "a1", Job: "j1", BundleStep: 20), (l, id) => l.Claim(id, Job("t1")),
            "running attempt:new ticket:same job:j2 starts:1 cancel:no resume:yes error:-", "running"),
        R("take over without a bundle: start again", new(RunStatus.Running, Attempt: "a1"), (l, id) => l.Claim(id, Job("t1")),
            "running attempt:new ticket:same job:j2 starts:1 cancel:no resume:no error:-", "running"),
        R("a run whose workers stopped twice while starting it fails", new(RunStatus.Running, Attempt: "a1", StartAttempts: 2), (l, id) => l.Claim(id, Job("t1")),
            "failed attempt:same ticket:same job:- starts:2 cancel:no resume:no error:A worker stopped 2 times", "failed"),
        R("a stop asked while no worker trained it ends the run", new(RunStatus.Running, Attempt: "a1", CancelRequested: true), (l, id) => l.Claim(id, Job("t1")),
            "cancelled attempt:same ticket:same job:- starts:0 cancel:yes resume:no error:Cancelled at step 40", "cancelled"),
        R("a cancelled run is not claimed", new(RunStatus.Cancelled), (l, id) => l.Claim(id, null),
            "cancelled attempt:none ticket:same job:- starts:0 cancel:no resume:no error:-", null),

        // The attempt's trainer starts, ends, or hands the run on.
        R("start: the session is built", new(RunStatus.Running, Attempt: "a1", StartAttempts: 1, ResumeRequested: true), (l, id) => { l.Start(id, "a1", 20, 100); return null; },
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", "running"),
        R("a start of an attempt that lost the run changes nothing", new(RunStatus.Running, Attempt: "a2", StartAttempts: 1), (l, id) => { l.Start(id, "a1", 20, 100); return null; },
            "running attempt:same ticket:same job:- starts:1 cancel:no resume:no error:-", null),
        R("finish", new(RunStatus.Running, Attempt: "a1"), (l, id) => l.Finish(id, "a1", RunStatus.Completed, null, 100),
            "completed attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", "completed"),
        R("finish with a reason", new(RunStatus.Running, Attempt: "a1"), (l, id) => l.Finish(id, "a1", RunStatus.Diverged, "Loss is NaN at step 7.", 7),
            "diverged attempt:same ticket:same job:- starts:0 cancel:no resume:no error:Loss is NaN", "diverged"),
        R("the end of an attempt that lost the run is not recorded", new(RunStatus.Running, Attempt: "a2"), (l, id) => l.Finish(id, "a1", RunStatus.Completed, null, 100),
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        R("requeue after training: another worker continues from the bundle", new(RunStatus.Running, Attempt: "a1", Job: "j1", StartAttempts: 1, BundleStep: 20), (l, id) => l.Requeue(id, "t1", "a1"),
            "queued attempt:same ticket:new job:- starts:0 cancel:no resume:yes error:-", "queued"),
        R("requeue unstarted (its worker is stopping): a new ticket, nothing else", new(RunStatus.Queued, Job: "j1"), (l, id) => l.Requeue(id, "t1", null),
            "queued attempt:none ticket:new job:- starts:0 cancel:no resume:no error:-", null),
        R("requeue under an old ticket changes nothing", new(RunStatus.Running, Attempt: "a1", Ticket: "t2"), (l, id) => l.Requeue(id, "t1", "a1"),
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", null),

        // A user cancels or resumes.
        RAsync("cancel a queued run", new(RunStatus.Queued, Job: "j1"), async (l, id) => await l.CancelQueuedAsync(id, default),
            "cancelled attempt:none ticket:same job:j1 starts:0 cancel:no resume:no error:Cancelled before it started", "cancelled"),
        RAsync("a running run is not cancelled as queued", new(RunStatus.Running, Attempt: "a1"), async (l, id) => await l.CancelQueuedAsync(id, default),
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("a client's run is not the engine's to cancel", new(RunStatus.Queued, Origin: RunOrigin.Client, Ticket: null), async (l, id) => await l.CancelQueuedAsync(id, default),
            "queued attempt:none ticket:none job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("ask a running run to stop: a durable flag", new(RunStatus.Running, Attempt: "a1", Job: "j1"), async (l, id) => await l.RequestStopAsync(id, default),
            "running attempt:same ticket:same job:j1 starts:0 cancel:yes resume:no error:-", null),
        RAsync("end a run whose trainer did not answer its stop", new(RunStatus.Running, Attempt: "a1", CancelRequested: true), async (l, id) => await l.EndUnansweredAsync(id, "a1"),
            "cancelled attempt:same ticket:same job:- starts:0 cancel:yes resume:no error:Cancelled; its worker did not answer", "cancelled"),
        RAsync("a run taken over meanwhile is not ended as unanswered", new(RunStatus.Running, Attempt: "a2"), async (l, id) => await l.EndUnansweredAsync(id, "a1"),
            "running attempt:same ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("resume an interrupted run from its bundle", new(RunStatus.Interrupted, Attempt: "a1", Job: "j1", StartAttempts: 1, CancelRequested: true, BundleStep: 20), async (l, id) => await l.ResumeAsync(id, RunStatus.Interrupted, 20, default),
            "queued attempt:same ticket:new job:- starts:0 cancel:no resume:yes error:-", "queued"),
        RAsync("a resume of a run that changed meanwhile queues nothing", new(RunStatus.Queued, BundleStep: 20), async (l, id) => await l.ResumeAsync(id, RunStatus.Interrupted, 20, default),
            "queued attempt:none ticket:same job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("a completed run is not resumed", new(RunStatus.Completed, BundleStep: 20), async (l, id) => await l.ResumeAsync(id, RunStatus.Completed, 20, default),
            "completed attempt:none ticket:same job:- starts:0 cancel:no resume:no error:-", null),

        // The one process starts again after a crash.
        RAsync("recover a run that was training: interrupted", new(RunStatus.Running, Attempt: "a1", BundleStep: 20), async (l, _) => await l.RecoverAsync(default),
            "interrupted attempt:same ticket:same job:- starts:0 cancel:no resume:no error:The server stopped while this run was at step 40; resume", "interrupted"),
        RAsync("recover a run whose start was cut short: queued once more", new(RunStatus.Running, Attempt: "a1", StartAttempts: 1), async (l, _) => await l.RecoverAsync(default),
            "queued attempt:same ticket:same job:- starts:1 cancel:no resume:no error:-", "queued"),
        RAsync("recover a run whose start was cut short twice: failed", new(RunStatus.Running, Attempt: "a1", StartAttempts: 2), async (l, _) => await l.RecoverAsync(default),
            "failed attempt:same ticket:same job:- starts:2 cancel:no resume:no error:The server stopped 2 times", "failed"),
        RAsync("a client's running run is trained elsewhere: left alone", new(RunStatus.Running, Origin: RunOrigin.Client, Ticket: null), async (l, _) => await l.RecoverAsync(default),
            "running attempt:none ticket:none job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("a queued run whose job was never sent gets a new ticket", new(RunStatus.Queued), async (l, _) => await l.ReissueUnsentAsync(default),
            "queued attempt:none ticket:new job:- starts:0 cancel:no resume:no error:-", null),
        RAsync("a queued run with its job keeps its ticket", new(RunStatus.Queued, Job: "j1"), async (l, _) => await l.ReissueUnsentAsync(default),
            "queued attempt:none ticket:same job:j1 starts:0 cancel:no resume:no error:-", null),
        R("record the job of the run's ticket", new(RunStatus.Queued), (l, id) => { l.RecordJob(id, "t1", "j9"); return null; },
            "queued attempt:none ticket:same job:j9 starts:0 cancel:no resume:no error:-", null),
        R("a job sent under an old ticket is not recorded", new(RunStatus.Queued), (l, id) => { l.RecordJob(id, "t0", "j9"); return null; },
            "queued attempt:none ticket:same job:- starts:0 cancel:no resume:no error:-", null),
    ];

    [Theory]
    [MemberData(nameof(Transitions))]
    public async Task Each_transition_is_one_guarded_update_and_at_most_one_event(string transition)
    {
        var row = Table.Single(r => r.Transition == transition);
        var id = await SeedAsync(row.Before);
        using var events = _hub.Subscribe(id);
        await row.Act(_lifecycle, id);
        var (expected, expectedError) = SplitError(row.After);
        var (actual, actualError) = SplitError(Describe(row.Before, await ReadAsync(id)));
        Assert.Equal(expected, actual);
        Assert.True(expectedError == "-" ? actualError == "-" : actualError.StartsWith(expectedError, StringComparison.Ordinal), $"error: {actualError}");
        if (row.Event is not null) Assert.Equal(row.Event, (await NextEventAsync(events)).Status);
        // Nothing (more) was said: a guarded transition that changed nothing publishes nothing.
        Assert.Null(await NextEventOrNullAsync(events, TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public async Task Create_queues_an_engine_run_under_a_ticket_and_a_clients_run_runs()
    {
        await using var db = await _factory.CreateDbContextAsync();
        using var events = _hub.Subscribe();
        Run engine = new() { Name = "e", Uuid = Run.NewUuid() }, client = new() { Name = "c", Uuid = Run.NewUuid(), Origin = RunOrigin.Client };
        await _lifecycle.CreateAsync(db, [engine, client], default);
        var (e, c) = (await ReadAsync(engine.Id), await ReadAsync(client.Id));
        Assert.Equal((RunStatus.Queued, true), (e.Status, e.DispatchId is { Length: 32 }));
        Assert.Equal((RunStatus.Running, (string?)null), (c.Status, c.DispatchId));
        Assert.Equal(["queued", "running"], new[] { (await NextEventAsync(events)).Status!, (await NextEventAsync(events)).Status! });
    }

    [Fact]
    public void A_clients_status_is_the_clients_to_set_and_an_engine_runs_is_not()
    {
        var client = new Run { Name = "c", Uuid = Run.NewUuid(), Origin = RunOrigin.Client, Status = RunStatus.Running };
        var end = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        RunLifecycle.SetClientStatus(client, RunStatus.Completed, end);
        Assert.Equal((RunStatus.Completed, end), (client.Status, client.FinishedAt));
        RunLifecycle.SetClientStatus(client, RunStatus.Running, end);
        Assert.Null(client.FinishedAt);
        Assert.Throws<InvalidOperationException>(() => RunLifecycle.SetClientStatus(new Run { Name = "e", Uuid = Run.NewUuid(), Status = RunStatus.Running }, RunStatus.Completed, end));
    }

    [Fact]
    public void Nothing_else_writes_a_runs_status_or_coordination_columns()
    {
        // The columns RunLifecycle owns, as EF updates and entity assignments would write them anywhere else.
        var columns = "Status|Attempt|DispatchId|JobId|StartAttempts|CancelRequested|ResumeRequested";
        var writes = new System.Text.RegularExpressions.Regex($@"SetProperty\(r => r\.({columns})\b|\brun\.({columns}) = |\bentity\.({columns}) = ");
        var source = Path.Combine(RepositoryRoot(), "src", "Dashboard");
        var offenders = Directory.EnumerateFiles(source, "*.*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".cs") || f.EndsWith(".razor"))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains("Migrations") && Path.GetFileName(f) != "RunLifecycle.cs")
            .SelectMany(f => File.ReadLines(f).Select((line, i) => (f, i, line)))
            .Where(x => writes.IsMatch(x.line))
            .Select(x => $"{Path.GetRelativePath(source, x.f)}:{x.i + 1}: {x.line.Trim()}")
            .ToList();
        Assert.Empty(offenders);
    }

    static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dashboard.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("The repository root (Dashboard.sln) is not above the test's folder.");
    }

    async Task<long> SeedAsync(Given given)
    {
        await using var db = await _factory.CreateDbContextAsync();
        var run = new Run
        {
            Name = "run", Uuid = Run.NewUuid(), Origin = given.Origin, Status = given.Status, Attempt = given.Attempt, DispatchId = given.Ticket,
            JobId = given.Job, StartAttempts = given.StartAttempts, CancelRequested = given.CancelRequested, ResumeRequested = given.ResumeRequested,
            BundleStep = given.BundleStep, Step = given.Step, TotalSteps = 100, CreatedAt = DateTimeOffset.UtcNow,
        };
        db.Runs.Add(run);
        await db.SaveChangesAsync();
        return run.Id;
    }

    async Task<Run> ReadAsync(long id)
    {
        await using var db = await _factory.CreateDbContextAsync();
        return await db.Runs.AsNoTracking().SingleAsync(r => r.Id == id);
    }

    static string Describe(Given before, Run after)
    {
        static string Compare(string? was, string? now) => now is null ? "none" : now == was ? "same" : "new";
        var error = after.Error ?? "-";
        return $"{after.Status.ToApi()} attempt:{Compare(before.Attempt, after.Attempt)} ticket:{Compare(before.Ticket, after.DispatchId)} job:{after.JobId ?? "-"} " +
               $"starts:{after.StartAttempts} cancel:{(after.CancelRequested ? "yes" : "no")} resume:{(after.ResumeRequested ? "yes" : "no")} error:{error}";
    }

    static (string State, string Error) SplitError(string described)
    {
        var at = described.IndexOf(" error:", StringComparison.Ordinal);
        return (described[..at], described[(at + " error:".Length)..]);
    }

    static async Task<RunEvent> NextEventAsync(RunEventHub.Subscription events) =>
        await NextEventOrNullAsync(events, TimeSpan.FromSeconds(5)) ?? throw new TimeoutException("No event within 5 s.");

    static async Task<RunEvent?> NextEventOrNullAsync(RunEventHub.Subscription events, TimeSpan wait)
    {
        using var timeout = new CancellationTokenSource(wait);
        try { return await events.Reader.ReadAsync(timeout.Token); }
        catch (OperationCanceledException) { return null; }
    }
}
