using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The fast tier: dashboard logic that needs no server and no training (request parsing, live events,
/// chart series, colours). Runs in milliseconds.
/// </summary>
public class RequestParsingTests
{
    [Fact]
    public void A_body_is_utf8_json_and_nulls_and_unknown_fields_are_named()
    {
        Assert.Equal("$", Assert.Throws<RequestValidationException>(() => RequestJson.Parse([0x7b, 0xff, 0x7d])).Field);
        Assert.Equal("$", Assert.Throws<RequestValidationException>(() => RequestJson.Parse("{\"a\":"u8)).Field);
        var body = System.Text.Json.Nodes.JsonNode.Parse("""{"dataset":null,"steps":10}""");
        Assert.Equal("dataset", Assert.Throws<RequestValidationException>(() => RunRequest.Parse(body)).Field);
        Assert.Equal("lr", Assert.Throws<RequestValidationException>(() => RunRequest.Parse(System.Text.Json.Nodes.JsonNode.Parse("""{"lr":0.1}"""))).Field);
        Assert.Equal("sigma", Assert.Throws<RequestValidationException>(() => RequestJson.Deserialize<PostHocRequest>(System.Text.Json.Nodes.JsonNode.Parse("""{"sigma":0.1}"""))).Field);
    }

    [Fact]
    public void A_clone_keeps_its_name_within_the_limit()
    {
        var original = new EmaLab.Dashboard.Data.Run { Name = new string('n', RunRequest.MaxNameLength), Uuid = EmaLab.Dashboard.Data.Run.NewUuid(), SpecJson = new EmaLab.TrainingEngine.Training.RunSpec { Steps = 5 }.ToJson() };
        var clone = RunRequest.CloneOf(original, null);
        Assert.Equal(RunRequest.MaxNameLength, clone.Name.Length);
        Assert.EndsWith(" (clone)", clone.Name);
    }
}
