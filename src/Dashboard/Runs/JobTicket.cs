namespace EmaLab.Dashboard.Runs;

/// <summary>
/// What a trainer host's job brings to a claim (Hangfire's; the in-process host brings none): its ticket, its id (to be withdrawn by a cancel), the worker's name for the log,
/// and the token Hangfire fires when the job is deleted.
/// </summary>
public sealed record JobTicket(string DispatchId, string? JobId, string WorkerName, CancellationToken Withdrawn);
