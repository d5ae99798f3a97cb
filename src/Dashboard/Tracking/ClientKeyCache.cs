namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// Each client run's logged key → (track, key), as stored, so a log-batch does not read them again: a key's mapping never
/// changes once stored. Kept while the run logs: forgotten when the run ends or is deleted, and the run used least
/// recently goes first past <c>capacity</c> (scripts that never end their run), so the cache does not grow with the
/// number of runs a server has seen.
/// </summary>
public sealed class ClientKeyCache(int capacity)
{
    /// <summary>Far more runs than log at once on one server.</summary>
    public const int DefaultCapacity = 4096;

    readonly Dictionary<long, LinkedListNode<(long RunId, IReadOnlyDictionary<string, (string Track, string Key)> Keys)>> _runs = [];
    readonly LinkedList<(long RunId, IReadOnlyDictionary<string, (string Track, string Key)> Keys)> _byUse = new();
    readonly Lock _lock = new();

    public int Count { get { lock (_lock) return _runs.Count; } }

    public IReadOnlyDictionary<string, (string Track, string Key)>? Get(long runId)
    {
        lock (_lock)
        {
            if (!_runs.TryGetValue(runId, out var node)) return null;
            _byUse.Remove(node);
            _byUse.AddFirst(node);
            return node.Value.Keys;
        }
    }

    public void Set(long runId, IReadOnlyDictionary<string, (string Track, string Key)> keys)
    {
        lock (_lock)
        {
            if (_runs.Remove(runId, out var old)) _byUse.Remove(old);
            _runs[runId] = _byUse.AddFirst((runId, keys));
            while (_runs.Count > capacity)
            {
                _runs.Remove(_byUse.Last!.Value.RunId);
                _byUse.RemoveLast();
            }
        }
    }

    public void Forget(long runId)
    {
        lock (_lock)
            if (_runs.Remove(runId, out var node)) _byUse.Remove(node);
    }
}
