namespace EmaLab.Dashboard.Data;

/// <summary>A long series thinned for a chart: consecutive points in buckets, each its mean with its lowest and highest value.</summary>
public static class Downsampling
{
    /// <summary>One bucket of consecutive points: their mean (at the bucket's last step and time), lowest and highest finite value.</summary>
    public readonly record struct Bucket(MetricValue Mean, double Min, double Max);

    /// <summary>
    /// <paramref name="count"/> buckets of consecutive points, as equal in size as the points allow; non-finite values
    /// (a diverged loss) are left out of a bucket's mean and band (a bucket of only such values is a gap: NaN).
    /// </summary>
    public static List<Bucket> Buckets(IReadOnlyList<MetricValue> points, int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var result = new List<Bucket>(count);
        for (var b = 0; b < count; b++)
        {
            var start = (int)((long)points.Count * b / count);
            var end = (int)((long)points.Count * (b + 1) / count);
            if (start >= end) continue;
            double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
            var finite = 0;
            for (var i = start; i < end; i++)
            {
                var v = points[i].Value;
                if (!double.IsFinite(v)) continue;
                sum += v;
                finite++;
                min = Math.Min(min, v);
                max = Math.Max(max, v);
            }
            var last = points[end - 1];
            result.Add(finite == 0
                ? new Bucket(last with { Value = double.NaN }, double.NaN, double.NaN)
                : new Bucket(last with { Value = sum / finite }, min, max));
        }
        return result;
    }

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
}
