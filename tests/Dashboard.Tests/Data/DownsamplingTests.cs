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
}
