using System.Threading.Channels;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// Deletes a run's superseded resume bundles once the database names a newer one, on a task of its own: the artifact
/// folder may be a slow shared mount (<see cref="Hosting.EmaLabOptions.ArtifactDirectory"/>), and the metric pipeline's
/// one writer thread, which learns of the commit, must not wait for it. A failure is logged; the next bundle's request,
/// or the run's completion, deletes what was left.
/// </summary>
public class BundleCleaner : IAsyncDisposable
{
    readonly DataPaths _paths;
    readonly ILogger<BundleCleaner> _logger;
    readonly Channel<(long RunId, long KeepStep)> _requests =
        Channel.CreateUnbounded<(long, long)>(new UnboundedChannelOptions { SingleReader = true });
    readonly Task _loop;

    public BundleCleaner(DataPaths paths, ILogger<BundleCleaner> logger)
    {
        _paths = paths;
        _logger = logger;
        _loop = Task.Run(CleanAsync);
    }

    /// <summary>The run's bundle at <paramref name="keepStep"/> is committed: the older ones can go. Never blocks.</summary>
    public void Superseded(long runId, long keepStep) => _requests.Writer.TryWrite((runId, keepStep));

    async Task CleanAsync()
    {
        await foreach (var (runId, keepStep) in _requests.Reader.ReadAllAsync())
        {
            try { Delete(runId, keepStep); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _logger.LogWarning(e, "Could not delete the superseded resume bundles of run {RunId}", runId);
            }
        }
    }

    /// <summary>Deletes the run's bundles before <paramref name="keepStep"/> (a seam: a test makes it slow).</summary>
    protected virtual void Delete(long runId, long keepStep) => _paths.DeleteBundles(runId, keepStep);

    /// <summary>Finishes the requests already made, then stops; a mount that hangs does not hold the shutdown past a few seconds.</summary>
    public async ValueTask DisposeAsync()
    {
        _requests.Writer.TryComplete();
        try { await _loop.WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (TimeoutException) { _logger.LogWarning("Stopped with superseded resume bundles still being deleted"); }
        GC.SuppressFinalize(this);
    }
}
