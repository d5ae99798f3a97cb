using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Mvc;

namespace EmaLab.Dashboard.Hosting;

/// <summary>How exceptions become API answers: a request the framework could not bind is a 400 naming the parameter;
/// anything else is a 500 that says nothing about the request.</summary>
public static partial class ApiErrors
{
    public static int StatusCodeOf(Exception exception) =>
        exception is BadHttpRequestException bad ? bad.StatusCode : StatusCodes.Status500InternalServerError;

    public static void Describe(ProblemDetails problem, BadHttpRequestException exception)
    {
        problem.Title = "The request is invalid.";
        problem.Detail = exception.Message;
        // 'Failed to bind parameter "int maxPoints" from "abc".'
        if (BoundParameter().Match(exception.Message) is { Success: true } match)
            problem.Extensions["errors"] = new Dictionary<string, string[]> { [match.Groups[1].Value] = [exception.Message] };
    }

    [GeneratedRegex("parameter \"[^\" ]+ ([A-Za-z_][A-Za-z0-9_]*)\"")]
    private static partial Regex BoundParameter();
}
