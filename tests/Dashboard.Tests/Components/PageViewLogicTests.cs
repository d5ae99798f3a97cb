using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Tests;

/// <summary>The pages' view logic, tested without rendering (their code-behind's pure parts).</summary>
public class PageViewLogicTests
{
    [Fact]
    public void The_tab_of_a_training_run_shows_how_far_it_is()
    {
        Run RunOf(RunStatus status) => new() { Name = "resnet", Uuid = "u", Status = status, Step = 100, TotalSteps = 1200 };
        Assert.Equal("8 % · resnet · EMA Lab", RunDetail.TabTitle(RunOf(RunStatus.Running), liveStep: null));
        Assert.Equal("50 % · resnet · EMA Lab", RunDetail.TabTitle(RunOf(RunStatus.Running), liveStep: 600)); // the live step is newer than the row's
        Assert.Equal("resnet · EMA Lab", RunDetail.TabTitle(RunOf(RunStatus.Completed), null));
        Assert.Equal("Run · EMA Lab", RunDetail.TabTitle(null, null));
    }

    [Fact]
    public void The_evaluation_note_says_which_images_a_point_scores_only_when_it_scores_a_subset()
    {
        var spec = RunSpec.FromJson($$"""{"dataset": "{{DatasetCatalog.Digits8x8}}", "model": "mlp", "steps": 100, "evalSubset": 100}""");
        var scored = DatasetCatalog.Describe(DatasetCatalog.Digits8x8).EvalCount;
        Assert.Equal($"Before step 100 each point scores a fixed subset of 100 of the {scored:N0} held-out images; the last step scores all {scored:N0}.",
            RunDetail.EvaluationNote(spec, 100));
        Assert.Null(RunDetail.EvaluationNote(spec with { EvalSubset = 0 }, 100));
        Assert.Null(RunDetail.EvaluationNote(spec with { EvalSubset = scored }, 100));
        Assert.Equal("a b", RunDetail.JoinNotes("a", "b"));
        Assert.Equal("b", RunDetail.JoinNotes(null, "b"));
    }

    [Fact]
    public void The_runs_list_filters_read_from_and_write_to_the_address()
    {
        var filters = new RunsList.Filters { Search = "resnet", Status = "running", Experiment = "3", Group = "" };
        var filter = filters.ToFilter();
        Assert.Equal(("resnet", RunStatus.Running, 3L), (filter.Search, filter.Status, filter.Experiment));
        Assert.True(string.IsNullOrEmpty(filter.Group)); // no group filter
        var query = filters.ToQuery();
        Assert.Equal("resnet", query["q"]);
        Assert.Equal("running", query["status"]);
        Assert.Null(query["group"]); // an empty select leaves the address clean
        Assert.False(filters.IsEmpty);
        Assert.True(new RunsList.Filters().IsEmpty);
        // What the address cannot mean is no filter, not an error.
        Assert.Equal((null, null), (new RunsList.Filters { Status = "asleep", Experiment = "x" }.ToFilter().Status,
            new RunsList.Filters { Experiment = "x" }.ToFilter().Experiment));
    }
}
