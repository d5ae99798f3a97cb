using System.Globalization;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using Microsoft.AspNetCore.Components;

namespace EmaLab.Dashboard.Components.Pages;

public partial class NewRun
{
    [SupplyParameterFromQuery] public long? From { get; set; }
    /// <summary><c>?dataset=</c> preselects a dataset (the datasets page links here).</summary>
    [SupplyParameterFromQuery] public string? Dataset { get; set; }
    /// <summary><c>?group=true</c> opens the form in group mode (the groups page links here).</summary>
    [SupplyParameterFromQuery] public bool Group { get; set; }

    GroupRequest? _preview;

    RunForm _form = new();
    Dictionary<string, string> _errors = new();
    bool _starting;
    bool _attempted;

    Dictionary<long, string> _experiments = new() { [Experiment.DefaultId] = Experiment.DefaultName };
    EmaLab.Dashboard.Security.ExperimentAccess _access = EmaLab.Dashboard.Security.ExperimentAccess.Nothing;

    protected override async Task OnInitializedAsync()
    {
        // Runs go into experiments the signed-in user may EDIT (the API's rule for POST /api/runs and /api/groups).
        _access = await Access.AccessAsync();
        _experiments = (await Queries.ExperimentNamesAsync()).Where(e => _access.On(e.Key).CanEdit()).ToDictionary();
        if (From is { } id && await Queries.FindAsync(id) is { } original && _access.On(original.ExperimentId).CanRead())
            _form = RunForm.From(original);
        _form.IsGroup = Group;
        if (Dataset is { } dataset && DatasetCatalog.Contains(dataset)) _form.Dataset = dataset;
        if (Group) _form.Steps = 500; // several runs: shorter ones by default
        Preview();
    }

    /// <summary>
    /// Any change: the group's count and steps follow at once; once a start was refused, every change re-checks the form,
    /// so a message leaves as soon as its field is fixed (one parse either way).
    /// </summary>
    /// <summary>The form filled with the README's measured diffusion run (a group keeps being one, with its seeds).</summary>
    void UseDiffusionDefault()
    {
        var (isGroup, seeds) = (_form.IsGroup, _form.Seeds);
        _form = RunForm.DiffusionDefault(_form.ExperimentId);
        (_form.IsGroup, _form.Seeds) = (isGroup, seeds);
        Changed();
    }

    void Changed()
    {
        if (_attempted) Validate();
        else Preview();
    }

    void Preview()
    {
        if (!_form.IsGroup) return;
        try { _preview = _form.ToGroupRequest(); }
        catch (RequestValidationException) { _preview = null; }
    }

    void Choose(HashSet<string> chosen, string value, ChangeEventArgs e)
    {
        if (e.Value is true) chosen.Add(value); else chosen.Remove(value);
        Changed();
    }

    string? Error(string field) => _errors.GetValueOrDefault(field);

    void RemoveTrack(int index)
    {
        _form.Tracks.RemoveAt(index);
        Changed();
    }

    void AddTrack()
    {
        // Suggest the next longer timescale among the EMA Lab rows: 0.99 → 0.999.
        var longest = _form.RowRules().OfType<EmaRule>().Where(r => r.Preset == EmaPresets.EmaLab).Select(r => r.Decay).DefaultIfEmpty(0.9).Max();
        _form.Tracks.Add(TrackRow.Of(EmaPresets.EmaLab, (EmaFields.Decay, (1 - (1 - longest) / 10).ToString("R", CultureInfo.InvariantCulture))));
        Changed();
    }

    void AddRow(TrackRow row)
    {
        _form.Tracks.Add(row);
        Changed();
    }

    /// <summary>The API's rules on the form's values; messages by field. A valid group is also the preview.</summary>
    object? Validate()
    {
        _errors.Clear();
        _preview = null;
        try
        {
            return _form.IsGroup ? _preview = _form.ToGroupRequest() : _form.ToRequest();
        }
        catch (RequestValidationException e)
        {
            foreach (var (field, messages) in e.Errors) _errors[field] = messages[0];
            return null;
        }
    }

    async Task StartAsync()
    {
        _attempted = true;
        var request = Validate();
        if (request is null) return;
        _starting = true;
        var creator = await Access.ActingAsync();
        try
        {
            if (request is GroupRequest group)
            {
                await RunService.CreateManyAsync(group.Runs, creator);
                Navigation.NavigateTo($"groups/{Uri.EscapeDataString(group.Name)}?experiment={group.ExperimentId}");
            }
            else
            {
                var run = await RunService.CreateAsync((RunRequest)request, creator);
                Navigation.NavigateTo($"runs/{run.Id}");
            }
        }
        catch (RequestValidationException e)
        {
            // The experiment was deleted while the form was open: say so by its field.
            foreach (var (field, messages) in e.Errors) _errors[field] = messages[0];
            _starting = false;
        }
        catch (PermissionDeniedException e)
        {
            // The service checks the caller's EDIT on the experiment, as for the API: said by the experiment's field.
            _errors["experimentId"] = e.Message;
            _starting = false;
        }
    }
}
