using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Tests;

public class TrackRankingTests
{
    static TrackSummary S(string track, double best, double final) => new(1, track, best, 10, final, 20);

    [Fact]
    public void Tracks_are_ranked_by_how_much_their_best_beats_raws_then_their_final()
    {
        var ranked = TrackRanking.Rank(["raw", "ema-0.99", "swa", "ema-0.999", "ema-0.9"],
            [S("raw", 0.9815, 0.980), S("ema-0.99", 0.9845, 0.983), S("swa", 0.9830, 0.9829), S("ema-0.999", 0.9700, 0.9700), S("ema-0.9", 0.9830, 0.9831)], lowerIsBetter: false);
        Assert.Equal(["ema-0.99", "ema-0.9", "swa", "ema-0.999"], ranked.Select(e => e.Track));
        Assert.Equal(0.003, ranked[0].BestGain, 12);
        Assert.Equal(-0.0115, ranked[^1].BestGain, 12);
    }

    [Fact]
    public void For_a_loss_lower_is_better_and_a_track_without_values_or_a_run_without_raw_is_not_ranked()
    {
        var ranked = TrackRanking.Rank(["raw", "a", "b", "c"], [S("raw", 0.5, 0.6), S("a", 0.4, 0.7), S("b", 0.55, 0.5)], lowerIsBetter: true);
        Assert.Equal(["a", "b"], ranked.Select(e => e.Track));
        Assert.Equal(0.1, ranked[0].BestGain, 12);
        Assert.Equal(-0.1, ranked[0].FinalGain, 12);
        Assert.Empty(TrackRanking.Rank(["raw", "a"], [S("a", 0.4, 0.7)], lowerIsBetter: true));
    }
}
