namespace EmaLab.TrainingEngine;

/// <summary>A setting that breaks a rule. <see cref="ArgumentException.ParamName"/> is the setting's JSON path; <see cref="Reason"/> is the message without it.</summary>
public sealed class InvalidSettingException(string field, string reason) : ArgumentException(reason, field)
{
    public string Field => ParamName!;
    public string Reason { get; } = reason;
}
