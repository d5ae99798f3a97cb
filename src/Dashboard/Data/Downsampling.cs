namespace EmaLab.Dashboard.Data;

/// <summary>A long series thinned for a chart: consecutive points in buckets, each drawn by its lowest and highest point.</summary>
public static class Downsampling
{
    /// <summary>
    /// Min/max buckets: the series is cut into maxPoints/2 buckets of consecutive points and each keeps its
    /// lowest and highest point (in step order), so spikes and dips survive; the first and last points always do.
    /// </summary>
    public static List<MetricValue> MinMax(IReadOnlyList<MetricValue> points, int maxPoints)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPoints, 4);
        if (points.Count <= maxPoints) return points.ToList();
        var buckets = (maxPoints - 2) / 2;
        var result = new List<MetricValue>(maxPoints) { points[0] };
        var inner = points.Count - 2;
        for (var b = 0; b < buckets; b++)
        {
            var start = 1 + (int)((long)inner * b / buckets);
            var end = 1 + (int)((long)inner * (b + 1) / buckets);
            if (start >= end) continue;
            int min = start, max = start;
            for (var i = start + 1; i < end; i++)
            {
                if (points[i].Value < points[min].Value) min = i;
                if (points[i].Value > points[max].Value) max = i;
            }
            if (min == max) result.Add(points[min]);
            else
            {
                result.Add(points[Math.Min(min, max)]);
                result.Add(points[Math.Max(min, max)]);
            }
        }
        result.Add(points[^1]);
        return result;
    }

    /// <summary>The points of steps <paramref name="from"/>..<paramref name="to"/> of a series in step order, with one more on each side so a zoomed chart's line runs to its edges.</summary>
    public static IReadOnlyList<MetricValue> Window(IReadOnlyList<MetricValue> points, long from, long to)
    {
        int FirstAtOrAfter(long step)
        {
            int low = 0, high = points.Count;
            while (low < high)
            {
                var middle = (low + high) / 2;
                if (points[middle].Step < step) low = middle + 1; else high = middle;
            }
            return low;
        }
        var first = Math.Max(0, FirstAtOrAfter(from) - 1);
        var end = to == long.MaxValue ? points.Count : Math.Min(points.Count, FirstAtOrAfter(to + 1) + 1);
        var window = new List<MetricValue>(Math.Max(0, end - first));
        for (var i = first; i < end; i++) window.Add(points[i]);
        return window;
    }

    /// <summary>
    /// Points of a min–max thinning of <paramref name="count"/> points to about <paramref name="maxPoints"/> (one bucket per
    /// pixel column of a chart, each drawn by its lowest and highest point): 1 (every point) when they fit.
    /// </summary>
    public static int BucketSize(int count, int maxPoints)
    {
        var columns = Math.Max(1, (maxPoints - 2) / 2); // two points each, and room for the first and the last
        return count <= maxPoints ? 1 : (count + columns - 1) / columns;
    }

    /// <summary>
    /// <see cref="MinMax"/> point by point, for a series that grows while it is drawn: every <c>bucketSize</c> consecutive
    /// points become their lowest and highest (in step order, one point when they are the same), so a page thins its
    /// history and the live points after it by the same rule. A bucket of only non-finite values (a diverged loss) is one
    /// NaN point: a gap in the line.
    /// </summary>
    public sealed class MinMaxStream(int bucketSize)
    {
        MetricValue _low, _high, _last, _sent;
        int _count;
        bool _any, _sentAny;

        /// <summary>Adds a point; the bucket's points go to <paramref name="output"/> when it is full.</summary>
        public void Add(MetricValue point, List<MetricValue> output)
        {
            (_last, _any) = (point, true);
            if (bucketSize == 1)
            {
                Send(point, output);
                return;
            }
            if (_count == 0 || !double.IsFinite(_low.Value)) (_low, _high) = (point, point);
            else if (double.IsFinite(point.Value))
            {
                if (point.Value < _low.Value) _low = point;
                if (point.Value > _high.Value) _high = point;
            }
            if (++_count == bucketSize) SendBucket(output);
        }

        /// <summary>
        /// Sends the points of a bucket not full yet and the last point added (the end of the history a page read: the
        /// line ends at the series' latest value).
        /// </summary>
        public void Flush(List<MetricValue> output)
        {
            SendBucket(output);
            if (_any && !(_sentAny && Same(_sent, _last))) Send(_last, output);
        }

        void SendBucket(List<MetricValue> output)
        {
            if (_count == 0) return;
            _count = 0;
            if (Same(_low, _high)) Send(_low, output);
            else if (_low.Step <= _high.Step) { Send(_low, output); Send(_high, output); }
            else { Send(_high, output); Send(_low, output); }
        }

        void Send(MetricValue point, List<MetricValue> output)
        {
            output.Add(point);
            (_sent, _sentAny) = (point, true);
        }

        static bool Same(MetricValue a, MetricValue b) => a.Step == b.Step && a.WallTimeMs == b.WallTimeMs && a.Value.Equals(b.Value);
    }
}
