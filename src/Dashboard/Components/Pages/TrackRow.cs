using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Components.Pages;

/// <summary>
/// One row of the new-run form's EMA panel: a track of <c>ema.tracks</c> as the person types it. Settings are kept
/// as text under the API's field names (what was typed is shown back with its message); an empty setting takes the
/// preset's default, so a row holds exactly what the JSON track would.
/// </summary>
public sealed class TrackRow
{
    public string Preset { get; private set; } = EmaPresets.EmaLab;
    public string Name { get; set; } = "";
    readonly Dictionary<string, string> _values = [];

    public string this[string field]
    {
        get => _values.GetValueOrDefault(field, "");
        set => _values[field] = value.Trim();
    }

    public static TrackRow Of(string preset, params (string Field, string Value)[] values)
    {
        var row = new TrackRow { Preset = preset };
        foreach (var (field, value) in values) row[field] = value;
        return row;
    }

    /// <summary>A track of a stored spec, setting by setting (what was given, not the defaults filled in).</summary>
    public static TrackRow From(EmaTrackSettings track)
    {
        var row = new TrackRow { Preset = track.Preset ?? EmaPresets.EmaLab, Name = track.Name ?? "" };
        foreach (var (field, value) in JsonSerializer.SerializeToNode(track, RunSpec.JsonOptions)!.AsObject())
            if (field is not ("name" or "preset") && value is not null)
                row[field] = value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : value.ToJsonString();
        return row;
    }

    /// <summary>The same rule in float32 (unnamed): the reference a low-precision row's gap is measured against.</summary>
    public TrackRow Float32Twin()
    {
        var twin = new TrackRow { Preset = Preset };
        foreach (var (field, value) in _values.Where(v => v.Key != EmaFields.Dtype)) twin[field] = value;
        return twin;
    }

    public bool IsLowPrecision => this[EmaFields.Dtype] is EmaDtype.BFloat16 or EmaDtype.Float16;

    /// <summary>Switches the library; settings the new preset does not have are dropped (the API would refuse them).</summary>
    public void ChangePreset(string preset)
    {
        Preset = preset;
        foreach (var field in _values.Keys.Where(f => !EmaPresets.Accepts(preset, f)).ToList()) _values.Remove(field);
    }

    public static bool IsNumber(string field) => field is EmaFields.Decay or EmaFields.InvGamma or EmaFields.Power or EmaFields.MinDecay
        or EmaFields.HalfLifeSamples or EmaFields.HalfLifeKimg or EmaFields.RampupRatio or EmaFields.EmaPower or EmaFields.BiasPower
        or EmaFields.Multiplier or EmaFields.MinEmaMultiplier;
    public static bool IsWholeNumber(string field) => field is EmaFields.UpdateAfterStep or EmaFields.StartStep or EmaFields.Every
        or EmaFields.Lag or EmaFields.Checkpoints or EmaFields.Epochs or EmaFields.WarmupEpochs;
    public static bool IsSwitch(string field) => field is EmaFields.AdjustDecay or EmaFields.ZeroDebias;

    /// <summary>The values a choice setting takes (warm-up, init, dtype, switches); empty for typed settings.</summary>
    public IReadOnlyList<string> Choices(string field) => field switch
    {
        EmaFields.Warmup => EmaPresets.Warmups(Preset),
        EmaFields.Init => [EmaInit.Initial, EmaInit.FirstUpdate],
        EmaFields.Dtype => EmaDtype.All,
        _ when IsSwitch(field) => ["true", "false"],
        _ => [],
    };

    /// <summary>
    /// The settings that matter for this row as it stands: the preset's settings, without the power warm-up's parameters
    /// when the row does not warm up that way (diffusers clamps by minDecay either way), and without adjustDecay when
    /// the row updates every step. A hidden setting is not sent, so what the row shows is what the track is.
    /// </summary>
    public IEnumerable<string> VisibleFields(EmaSettings shared)
    {
        var warmup = this[EmaFields.Warmup] is { Length: > 0 } chosen ? chosen : DefaultOf(EmaFields.Warmup, shared);
        var every = int.TryParse(this[EmaFields.Every], NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : shared.Every;
        foreach (var field in EmaPresets.Fields(Preset))
        {
            if (field is EmaFields.InvGamma or EmaFields.Power && warmup != EmaWarmup.Power) continue;
            if (field == EmaFields.MinDecay && warmup != EmaWarmup.Power && Preset != EmaPresets.Diffusers) continue;
            if (field == EmaFields.AdjustDecay && every <= 1) continue;
            yield return field;
        }
    }

    /// <summary>
    /// The track as the API reads it. Text that is not a number is left out and reported in <paramref name="typos"/>
    /// by its field (<c>ema.tracks[2].decay</c>), so the API's own rules still check everything else.
    /// </summary>
    public JsonObject ToJson(string path, EmaSettings shared, IDictionary<string, string> typos)
    {
        var track = new JsonObject { ["preset"] = Preset };
        if (Name.Trim() is { Length: > 0 } name) track["name"] = name;
        foreach (var field in VisibleFields(shared))
        {
            var text = this[field];
            if (text.Length == 0) continue;
            if (IsNumber(field))
            {
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)) track[field] = number;
                else typos[$"{path}.{field}"] = $"'{text}' is not a number.";
            }
            else if (IsWholeNumber(field))
            {
                if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var whole)) track[field] = whole;
                else typos[$"{path}.{field}"] = $"'{text}' is not a whole number.";
            }
            else if (IsSwitch(field)) track[field] = text == "true";
            else track[field] = text;
        }
        return track;
    }

    /// <summary>
    /// What an empty setting means for this preset (shown as the input's placeholder): the library's default, or for
    /// EMA Lab rows the run's shared settings. Empty when there is no default (EMA Lab's and TensorFlow's decay).
    /// </summary>
    public string DefaultOf(string field, EmaSettings shared)
    {
        if (field == EmaFields.Decay) return EmaPresets.DefaultDecay(Preset) is { } decay ? decay.ToString("R", CultureInfo.InvariantCulture) : "";
        if (EmaPresets.SourceDefault(Preset, field) is { } own) return Convert.ToString(own, CultureInfo.InvariantCulture) ?? "";
        if (Preset == EmaPresets.Lawa && field == EmaFields.Every) return "one epoch";
        if (field == EmaFields.Epochs) return "the run's";
        EmaRule rule;
        try
        {
            // Any valid decay: the other defaults do not depend on it.
            rule = new EmaTrackSettings { Preset = Preset,
                Decay = EmaPresets.DefaultDecay(Preset) is null && EmaPresets.HasDecay(Preset) ? 0.5 : null }.Resolve(shared, "", shape: null);
        }
        catch (InvalidSettingException)
        {
            return ""; // the shared settings are being edited into something invalid; their own message says so
        }
        return field switch
        {
            EmaFields.Warmup => rule.Warmup,
            EmaFields.InvGamma => rule.InvGamma.ToString("R", CultureInfo.InvariantCulture),
            EmaFields.Power => rule.Power.ToString("0.###", CultureInfo.InvariantCulture),
            EmaFields.MinDecay => rule.MinDecay.ToString("R", CultureInfo.InvariantCulture),
            EmaFields.UpdateAfterStep => rule.UpdateAfterStep.ToString(CultureInfo.InvariantCulture),
            EmaFields.StartStep => rule.StartStep.ToString(CultureInfo.InvariantCulture),
            EmaFields.Every => rule.Every.ToString(CultureInfo.InvariantCulture),
            EmaFields.AdjustDecay => rule.AdjustDecay ? "true" : "false",
            EmaFields.Init => rule.Init,
            EmaFields.ZeroDebias => rule.ZeroDebias ? "true" : "false",
            EmaFields.Dtype => rule.Dtype,
            _ => "",
        };
    }

    public static string Label(string field) => field switch
    {
        EmaFields.Decay => "Decay",
        EmaFields.Warmup => "Warm-up",
        EmaFields.InvGamma => "inv_gamma",
        EmaFields.Power => "Power",
        EmaFields.MinDecay => "Min decay",
        EmaFields.UpdateAfterStep => "Update after step",
        EmaFields.StartStep => "Start step",
        EmaFields.Every => "Every (steps)",
        EmaFields.AdjustDecay => "Adjust decay (d^N)",
        EmaFields.Init => "Initial shadow",
        EmaFields.ZeroDebias => "Zero-debias",
        EmaFields.Dtype => "Shadow dtype",
        EmaFields.HalfLifeSamples => "Half-life (samples)",
        EmaFields.HalfLifeKimg => "Half-life (kimg)",
        EmaFields.RampupRatio => "Ramp-up ratio (0: none)",
        EmaFields.EmaPower => "ema_power κ",
        EmaFields.BiasPower => "bias_power η",
        EmaFields.Lag => "lag ρ",
        EmaFields.Multiplier => "multiplier γ",
        EmaFields.MinEmaMultiplier => "min_ema_multiplier",
        EmaFields.Checkpoints => "Checkpoints k",
        EmaFields.Epochs => "Epochs",
        EmaFields.WarmupEpochs => "Warm-up epochs (copies)",
        _ => field,
    };
}

/// <summary>A one-click track: a library's EMA with its defaults (and the variant named), as the EMA panel offers it.</summary>
public sealed record PresetChoice(string Label, string Preset, (string Field, string Value)[] Values)
{
    public static IReadOnlyList<PresetChoice> All { get; } =
    [
        new("TensorFlow", EmaPresets.TensorFlow, [(EmaFields.Decay, "0.999")]),
        new("TensorFlow + num_updates", EmaPresets.TensorFlow, [(EmaFields.Decay, "0.999"), (EmaFields.Warmup, EmaWarmup.Tf)]),
        new("timm ModelEmaV3", EmaPresets.Timm, []),
        new("timm use_warmup", EmaPresets.Timm, [(EmaFields.Warmup, EmaWarmup.Power)]),
        new("diffusers EMAModel", EmaPresets.Diffusers, []),
        new("diffusers use_ema_warmup", EmaPresets.Diffusers, [(EmaFields.Warmup, EmaWarmup.Power)]),
        new("ema-pytorch", EmaPresets.EmaPytorch, []),
        new("Keras use_ema", EmaPresets.Keras, []),
        new("AveragedModel EMA", EmaPresets.AveragedModel, []),
        new("Lightning EMA", EmaPresets.Lightning, []),
        new("SWA", EmaPresets.Swa, []),
        new("TRL BEMA", EmaPresets.TrlBema, []),
        new("BEMA (authors)", EmaPresets.Bema, []),
        new("LAWA", EmaPresets.Lawa, []),
        new("EDM half-life", EmaPresets.Edm, []),
        new("torchvision EMA", EmaPresets.Torchvision, []),
    ];

    public TrackRow NewRow() => TrackRow.Of(Preset, Values);
}
