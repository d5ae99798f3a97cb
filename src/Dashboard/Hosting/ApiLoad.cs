using System.Threading.RateLimiting;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// How many API requests run at once: one core fewer than the machine has (at least one), the rest wait in
/// a queue (429 beyond it). Measured on 2 cores: 16 clients polling as fast as they could cut a training run
/// to 40 % of its speed when requests could take both cores (bench/: load).
/// </summary>
public static class ApiLoad
{
    public const string Policy = "api";
    /// <summary>
    /// The tracking API's calls (a client's log-batch) mostly wait for their rows to be committed, so more of them run at
    /// once: several clients' rows then share one commit (bench/: tracking).
    /// </summary>
    public const string TrackingPolicy = "tracking";
    const int QueueLimit = 512;

    public static void AddApiLoadLimit(this IServiceCollection services) => services.AddRateLimiter(limiter =>
    {
        limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        limiter.AddPolicy(Policy, _ => RateLimitPartition.GetConcurrencyLimiter("api", _ => new ConcurrencyLimiterOptions
        {
            PermitLimit = Math.Max(1, Environment.ProcessorCount - 1),
            QueueLimit = QueueLimit,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        }));
        limiter.AddPolicy(TrackingPolicy, _ => RateLimitPartition.GetConcurrencyLimiter("tracking", _ => new ConcurrencyLimiterOptions
        {
            PermitLimit = 4 * Environment.ProcessorCount,
            QueueLimit = QueueLimit,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        }));
    });
}
