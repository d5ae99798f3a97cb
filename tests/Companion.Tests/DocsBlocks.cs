using System.Text.RegularExpressions;

namespace EmaLab.Companion.Tests;

/// <summary>Code as the documentation shows it, for tests that run it as it stands there.</summary>
static partial class DocsBlocks
{
    /// <summary>The first ```python block after a heading of docs/training.md.</summary>
    public static string PythonAfter(string docs, string heading)
    {
        var start = docs.IndexOf(heading, StringComparison.Ordinal);
        Assert.True(start >= 0, $"docs/training.md has no '{heading}'");
        return PythonBlock().Match(docs, start).Groups[1].Value;
    }

    /// <summary>The two numbers a script printed on one line, space-separated.</summary>
    public static (double First, double Second) TwoNumbers(string line)
    {
        var parts = line.Split(' ');
        return (double.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"```python\n(.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex PythonBlock();
}
