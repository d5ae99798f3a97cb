using System.Threading.Channels;

namespace EmaLab.Dashboard.Trainers;

/// <summary>Runs waiting, in order, for this process's <see cref="RunWorker"/> threads (<see cref="InProcessTrainers"/>).</summary>
public sealed class RunQueue
{
    readonly Channel<long> _pending = Channel.CreateUnbounded<long>(new UnboundedChannelOptions { SingleReader = false });

    public void Enqueue(long runId) => _pending.Writer.TryWrite(runId);

    internal ChannelReader<long> Pending => _pending.Reader;
}
