using System.Text.Json;
using System.Text.RegularExpressions;

namespace EmaLab.Companion.Tests;

/// <summary>
/// The Python companion's own tests (clients/python/tests/test_*.py), run once in one Python process and reported here
/// one by one, so that <c>dotnet test</c> counts and names each of them. A skipped Python test fails here: nothing hides.
/// </summary>
[Trait("Speed", "Process")]
public sealed partial class PythonSuiteTests(PythonSuiteTests.Suite suite) : IClassFixture<PythonSuiteTests.Suite>
{
    public static TheoryData<string> Tests()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Python.Companion, "tests"), "test_*.py").Order())
        {
            var module = Path.GetFileNameWithoutExtension(file);
            string? type = null;
            foreach (var line in File.ReadLines(file))
            {
                if (ClassLine().Match(line) is { Success: true } c) type = c.Groups[1].Value;
                else if (TestLine().Match(line) is { Success: true } t && type is not null) data.Add($"{module}.{type}.{t.Groups[1].Value}");
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Tests))]
    public async Task Passes(string test)
    {
        var results = await suite.Results;
        Assert.True(results.TryGetValue(test, out var result), $"{test} did not run:\n{suite.Output}");
        Assert.True(result.Outcome == "passed", $"{test} {result.Outcome}:\n{result.Details}");
    }

    [GeneratedRegex(@"^class (\w+)\(")]
    private static partial Regex ClassLine();

    [GeneratedRegex(@"^    def (test_\w+)\(")]
    private static partial Regex TestLine();

    public sealed record Result(string Outcome, string Details);

    /// <summary>One run of the whole Python suite, shared by every case.</summary>
    public sealed class Suite
    {
        public string Output { get; private set; } = "";

        public Task<Dictionary<string, Result>> Results { get; }

        public Suite() => Results = RunAsync();

        async Task<Dictionary<string, Result>> RunAsync()
        {
            var json = Path.Combine(Path.GetTempPath(), $"emalab-python-{Guid.NewGuid():N}.json");
            try
            {
                var (code, output) = await Companion.Tests.Python.RunAsync("run_tests.py", json);
                Output = $"exit code {code}\n{output}";
                if (!File.Exists(json)) return [];
                return JsonSerializer.Deserialize<Dictionary<string, Result>>(await File.ReadAllTextAsync(json), JsonSerializerOptions.Web) ?? [];
            }
            finally
            {
                File.Delete(json);
            }
        }
    }
}
