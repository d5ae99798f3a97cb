namespace EmaLab.Dashboard.Data;

/// <summary>
/// TensorBoard's smoothing: an exponential moving average of a series with a weight in [0, 1), debiased by
/// 1 − weight^n so that the first points are not pulled towards zero.
/// </summary>
public static class Smoothing
{
    /// <summary>The running state: history and live points go through the same one, point by point.</summary>
    public sealed class State(double weight)
    {
        double _biased;
        double _correction = 1;

        public MetricValue Next(MetricValue point)
        {
            _biased = _biased * weight + (1 - weight) * point.Value;
            _correction *= weight;
            return point with { Value = _biased / (1 - _correction) };
        }
    }
}
