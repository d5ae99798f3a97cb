namespace EmaLab.Dashboard.Data;

/// <summary>
/// Every run tag EMA Lab reads or writes by name, MLflow's and its own, in one place (as MLflow keeps its own in
/// <c>mlflow_tags.py</c>). <c>mlflow.*</c> and <c>emalab.*</c> are the system's; any other key is the user's.
/// </summary>
public static class TagNames
{
    /// <summary>MLflow's run name; EMA Lab keeps it equal to the run's name.</summary>
    public const string RunName = "mlflow.runName";
    public const string User = "mlflow.user";
    /// <summary>The script a client's run came from.</summary>
    public const string SourceName = "mlflow.source.name";
    /// <summary>A run's notes, as MLflow's UI keeps them.</summary>
    public const string Notes = "mlflow.note.content";
    /// <summary>A dataset input's role (<c>training</c>, <c>eval</c>…).</summary>
    public const string DataContext = "mlflow.data.context";

    /// <summary>The group a run belongs to: runs of one experiment with the same value form a group (W&amp;B's <c>group</c>).</summary>
    public const string Group = "emalab.group";
    /// <summary>Which of a client's keys are the accuracy, loss and train loss (<c>MetricRoles</c>).</summary>
    public const string MetricRoles = "emalab.metrics";
    /// <summary>A client's extra suffixes that name tracks in its metric keys (<c>ClientTrackKeys</c>).</summary>
    public const string TrackSuffixes = "emalab.track_suffixes";
    /// <summary>A script's track rules (the Python companion's <c>log_tracks</c>), for the σ_rel plot (<c>ClientTrackRules</c>).</summary>
    public const string Tracks = "emalab.tracks";
    /// <summary>
    /// How a script's post-hoc reconstructions are evaluated: its model and evaluation functions as
    /// <c>module:function module:function</c> (<c>emalab.posthoc.uploader(…, model=, evaluate=)</c> sets it), for the command
    /// the run page shows.
    /// </summary>
    public const string PostHocEvaluator = "emalab.posthoc.evaluator";
    /// <summary>The track a logged model's weights are (<c>log_model(ema, tags={"emalab.track": "ema-0.999"})</c>).</summary>
    public const string Track = "emalab.track";

    /// <summary>MLflow's system tags.</summary>
    public const string MlflowPrefix = "mlflow.";
    /// <summary>EMA Lab's system tags.</summary>
    public const string EmaLabPrefix = "emalab.";

    /// <summary>A tag the user sets (not <c>mlflow.*</c> or <c>emalab.*</c>).</summary>
    public static bool IsUser(string key) =>
        !key.StartsWith(MlflowPrefix, StringComparison.Ordinal) && !key.StartsWith(EmaLabPrefix, StringComparison.Ordinal);
}
