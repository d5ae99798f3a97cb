using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Tests;

public class DownsamplingTests
{
    [Fact]
    public void Min_max_buckets_keep_spikes_ends_and_order()
    {
        var points = Enumerable.Range(0, 100_000).Select(i => new MetricValue(i, Math.Sin(i / 1000.0))).ToList();
        points[31_337] = new MetricValue(31_337, 50);    // a spike
        points[77_777] = new MetricValue(77_777, -40);   // a dip
        var result = Downsampling.MinMax(points, 2000);

        Assert.InRange(result.Count, 1000, 2000);
        Assert.Equal(points[0], result[0]);
        Assert.Equal(points[^1], result[^1]);
        Assert.Contains(points[31_337], result);
        Assert.Contains(points[77_777], result);
        Assert.Equal(result.Select(p => p.Step).Order(), result.Select(p => p.Step));
        Assert.Equal(result.Count, result.Select(p => p.Step).Distinct().Count());
    }

    [Fact]
    public void Short_series_are_returned_whole() =>
        Assert.Equal(10, Downsampling.MinMax(Enumerable.Range(0, 10).Select(i => new MetricValue(i, i)).ToList(), 100).Count);

    [Fact]
    public void A_growing_series_is_thinned_point_by_point_to_each_buckets_lowest_and_highest()
    {
        var points = Enumerable.Range(0, 100_000).Select(i => new MetricValue(i, Math.Sin(i / 1000.0))).ToList();
        points[31_337] = new MetricValue(31_337, 50);
        points[77_777] = new MetricValue(77_777, -40);
        for (var i = 50_000; i < 50_010; i++) points[i] = new MetricValue(i, double.NaN); // a whole bucket diverged
        points[60_003] = new MetricValue(60_003, double.NaN);                              // one point of a bucket
        var size = Downsampling.BucketSize(points.Count, 2000);
        Assert.Equal(101, size); // 999 columns of two points: never more than 2,000 with the last one
        Assert.Equal(1, Downsampling.BucketSize(2000, 2000));

        var stream = new Downsampling.MinMaxStream(10);
        var result = new List<MetricValue>();
        foreach (var point in points) stream.Add(point, result);
        stream.Flush(result);
        Assert.Equal(20_000 - 1, result.Count); // two per bucket of 10; the diverged bucket is one NaN point: a gap
        Assert.Equal(points[^1], result[^1]);
        Assert.Contains(points[31_337], result);
        Assert.Contains(points[77_777], result);
        Assert.Equal(result.Select(p => p.Step).Order(), result.Select(p => p.Step));
        Assert.Single(result, p => double.IsNaN(p.Value));
        Assert.DoesNotContain(result, p => p.Step is >= 60_000 and < 60_010 && double.IsNaN(p.Value));

        // A bucket not full yet is sent on Flush; a size of 1 keeps every point.
        var partial = new List<MetricValue>();
        var open = new Downsampling.MinMaxStream(10);
        foreach (var point in points.Take(13)) open.Add(point, partial);
        Assert.Equal(2, partial.Count);
        open.Flush(partial);
        Assert.Equal([points[0], points[9], points[10], points[12]], partial); // the last point is the open bucket's highest
        var every = new List<MetricValue>();
        var one = new Downsampling.MinMaxStream(1);
        foreach (var point in points.Take(5)) one.Add(point, every);
        Assert.Equal(points.Take(5), every);
    }
}
