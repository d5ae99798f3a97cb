using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Hosting;

/// <summary>Request fields that break rules; answered with 400 and problem details naming each field.</summary>
public sealed class RequestValidationException : RefusalException
{
    public RequestValidationException(string field, string message) : this(new Dictionary<string, string[]> { [field] = [message] }) { }

    public RequestValidationException(IReadOnlyDictionary<string, string[]> errors) : base(errors.First().Value[0])
    {
        Errors = errors;
        Field = errors.First().Key;
    }

    /// <summary>The first field (in the order the rules are checked).</summary>
    public string Field { get; }
    public IReadOnlyDictionary<string, string[]> Errors { get; }
}
