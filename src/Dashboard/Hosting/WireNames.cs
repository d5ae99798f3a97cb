using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// How every EMA Lab enum is written outside the process — the REST API and its events, the database columns, the log —
/// in one place: its member's name in lower case (<c>RunStatus.Completed</c> → <c>completed</c>, <c>RunEventType.PostHoc</c>
/// → <c>posthoc</c>), read back case-insensitively.
/// </summary>
public static class WireNames
{
    static readonly ConcurrentDictionary<Enum, string> Names = new();

    public static string Of<T>(T value) where T : struct, Enum => Names.GetOrAdd(value, v => v.ToString().ToLowerInvariant());

    public static T Parse<T>(string text) where T : struct, Enum => Enum.Parse<T>(text, ignoreCase: true);

    /// <summary>A member's name in any case; a number, even one of a member, is not a name.</summary>
    public static bool TryParse<T>(string text, out T value) where T : struct, Enum =>
        Enum.TryParse(text, ignoreCase: true, out value) && Enum.IsDefined(value) && !text.Trim().Any(char.IsDigit);

    /// <summary>The JSON form of an enum: its wire name (<c>[JsonConverter(typeof(WireNames.Json&lt;RunEventType&gt;))]</c>).</summary>
    public sealed class Json<T>() : JsonStringEnumConverter<T>(LowerCase.Instance, allowIntegerValues: false) where T : struct, Enum;

    sealed class LowerCase : JsonNamingPolicy
    {
        public static readonly LowerCase Instance = new();
        public override string ConvertName(string name) => name.ToLowerInvariant();
    }
}
