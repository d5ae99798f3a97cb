
namespace EmaLab.Dashboard.Tests;

public class LoggedModelTrackTests
{
    static readonly string[] OneEma = ["raw", "ema-0.999"];
    static readonly string[] TwoEmas = ["raw", "ema-0.99", "ema-0.999", "swa"];

    [Theory]
    // The tag names the track; a name or tag value that is a track; "ema"/"swa" when the run has one such track.
    [InlineData("model", "emalab.track=ema-0.99", "two", "ema-0.99")]
    [InlineData("ema-0.999", "", "two", "ema-0.999")]
    [InlineData("weights", "kind=ema-0.99", "two", "ema-0.99")]
    [InlineData("ema", "", "one", "ema-0.999")]
    [InlineData("EMA_model", "", "one", "ema-0.999")]
    [InlineData("swa", "", "two", "swa")]
    [InlineData("ema", "ema_decay=0.99", "two", "ema-0.99")]
    // Nothing says which: no track rather than a guess.
    [InlineData("ema", "", "two", null)]
    [InlineData("model", "", "one", null)]
    [InlineData("emanuel", "", "one", null)]
    [InlineData("model", "emalab.track=ema-0.5", "one", null)]
    public void A_logged_model_goes_with_the_track_its_name_or_tags_say(string name, string tag, string tracks, string? expected)
    {
        var tags = tag.Length == 0 ? new Dictionary<string, string>() : new Dictionary<string, string> { [tag.Split('=')[0]] = tag.Split('=')[1] };
        Assert.Equal(expected, EmaLab.Dashboard.Tracking.LoggedModelService.TrackOf(name, tags, tracks == "one" ? OneEma : TwoEmas));
    }
}
