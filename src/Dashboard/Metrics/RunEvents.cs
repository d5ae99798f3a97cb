using System.Text.Json.Serialization;

using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Metrics;

/// <summary>What a live event is about; in JSON and as the SSE event name, its wire name (<see cref="WireNames"/>).</summary>
[JsonConverter(typeof(WireNames.Json<RunEventType>))]
public enum RunEventType
{
    /// <summary>The points one writer flush committed for the run (<see cref="RunEvent.Points"/>).</summary>
    Metrics,
    Progress,
    /// <summary>The run's status changed (<see cref="RunEvent.Status"/>).</summary>
    Status,
    Log,
    /// <summary>Post-hoc reconstructions were stored.</summary>
    PostHoc,
    /// <summary>A post-hoc sweep advanced or ended.</summary>
    Sweep,
    /// <summary>The run was deleted.</summary>
    Deleted,
}

/// <summary>
/// What live subscribers (pages, SSE clients) receive. Flat so that a browser reads it without a
/// type discriminator beyond <see cref="Type"/>.
/// </summary>
public sealed record RunEvent(RunEventType Type, long RunId)
{
    /// <summary>Of a <c>metrics</c> event: every point of the run that one flush committed, in order.</summary>
    public IReadOnlyList<MetricRow>? Points { get; init; }
    public long? Step { get; init; }
    public long? TotalSteps { get; init; }
    public double? StepsPerSecond { get; init; }
    public double? EtaSeconds { get; init; }
    public string? Status { get; init; }
    /// <summary>Of a <c>log</c> event: info, warning or error.</summary>
    public string? Level { get; init; }
    public string? Message { get; init; }
    /// <summary>Published by another process on the same database and relayed here (not sent on again).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Relayed { get; init; }
}

