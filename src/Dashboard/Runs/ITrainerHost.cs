namespace EmaLab.Dashboard.Runs;

/// <summary>
/// <b>Who trains.</b> Everything that differs between training in this process (<see cref="InProcessTrainers"/>) and
/// training by Hangfire workers on PostgreSQL (<see cref="HangfireTrainers"/>): how a queued run reaches a trainer, how
/// its trainer is told to stop, and what is recovered at start. Chosen once, at composition (<c>EmaLab:Trainer</c>);
/// nothing else asks which.
/// </summary>
public interface ITrainerHost
{
    /// <summary>What trains the runs, for the start-up log.</summary>
    string Description { get; }

    /// <summary>Hands a queued run to the trainers: only the one carrying <paramref name="ticket"/> (the run's dispatch ticket) trains it.</summary>
    void Offer(long runId, string ticket);

    /// <summary>A queued run was cancelled before any trainer took it: its job, if it has one, is withdrawn.</summary>
    void Withdraw(string? jobId);

    /// <summary>
    /// Tells the run's trainer to stop and waits up to <see cref="ActiveRuns.StopTimeout"/>: Stopped, Stopping (a slow step),
    /// or NotActive when nothing trains it.
    /// </summary>
    Task<ActiveRuns.CancelResult> StopAsync(long runId, CancellationToken cancellationToken);

    /// <summary>Completes when no trainer trains the run any more (or its trainer is presumed gone).</summary>
    Task WhenStoppedAsync(long runId);

    /// <summary>Recovers from a crash as this process may, once the database is current.</summary>
    Task RecoverAtStartAsync(CancellationToken cancellationToken);
}
