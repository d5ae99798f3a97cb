using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.HttpResults;

namespace EmaLab.Dashboard.Hosting;

/// <summary>The answers every part of the REST API shares: a JSON body read as <see cref="RequestJson"/> reads it, the
/// problem details of a refused field (400) or a conflict (409), and a name made safe for a downloaded file.</summary>
public static class ApiResults
{
    /// <summary>A name made safe for a file name: ASCII letters, digits, '.' and '-', at most 60 characters.</summary>
    public static string Slug(string name)
    {
        var chars = name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' ? c : '-').ToArray();
        var slug = string.Join('-', new string(chars).Split('-', StringSplitOptions.RemoveEmptyEntries));
        return slug.Length == 0 ? "run" : slug[..Math.Min(slug.Length, 60)];
    }

    public static async Task<JsonNode?> ReadJsonAsync(HttpRequest request, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        return RequestJson.Parse(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    public static ValidationProblem Invalid(string field, string message) => Invalid(new RequestValidationException(field, message));

    public static ValidationProblem Invalid(RequestValidationException e) =>
        TypedResults.ValidationProblem(e.Errors, title: "The request is invalid.");

    public static ProblemHttpResult Conflict(string message) =>
        TypedResults.Problem(message, statusCode: StatusCodes.Status409Conflict, title: "Conflict");
}
