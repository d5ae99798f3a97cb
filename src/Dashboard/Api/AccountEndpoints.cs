using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.HttpResults;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Security;

namespace EmaLab.Dashboard.Api;

public sealed record TokenDto(long Id, string Name, string Prefix, DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt,
    DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt)
{
    public static TokenDto From(PersonalToken t) => new(t.Id, t.Name, t.Prefix, t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt);
}

/// <summary>A token just made: its secret, shown this once.</summary>
public sealed record CreatedToken(TokenDto Token, string Secret);

/// <summary>
/// <c>/api/account/tokens</c>: the caller's own personal access tokens, as the account page manages them — for a script
/// or a server without a browser (sign in with the password over HTTP Basic, make a token, use the token from then on).
/// </summary>
public static class AccountEndpoints
{
    const int MaxDays = 3650;

    public static void MapAccountApi(this RouteGroupBuilder api)
    {
        var tokens = api.MapGroup("/account/tokens").WithTags("Accounts").ForAnyCaller("the caller's own tokens");
        tokens.MapGet("", async Task<Results<Ok<List<TokenDto>>, ProblemHttpResult>> (HttpContext http, AccountService accounts) =>
            UserIdOf(http) is { } id ? TypedResults.Ok((await accounts.TokensOfAsync(id)).Select(TokenDto.From).ToList()) : NoAccount())
            .WithSummary("Your personal access tokens (never their secrets), newest first.");
        tokens.MapPost("", async Task<Results<Created<CreatedToken>, ValidationProblem, ProblemHttpResult>> (HttpContext http,
                AccountService accounts, TimeProvider clock, CancellationToken ct) =>
            {
                if (UserIdOf(http) is not { } id) return NoAccount();
                try
                {
                    var body = await ApiResults.ReadJsonAsync(http.Request, ct) as JsonObject
                        ?? throw new RequestValidationException("$", "The body must be a JSON object: {\"name\": …, \"expiresInDays\": …}.");
                    var name = body["name"] is JsonValue n && n.TryGetValue<string>(out var text) ? text.Trim() : "";
                    if (name.Length is 0 or > PersonalToken.MaxNameLength)
                        throw new RequestValidationException("name", $"Name the token (where it is used), 1 to {PersonalToken.MaxNameLength} characters.");
                    int? days = null;
                    if (body["expiresInDays"] is JsonNode given)
                        days = given is JsonValue v && v.TryGetValue<int>(out var d) && d is >= 1 and <= MaxDays ? d
                            : throw new RequestValidationException("expiresInDays", $"expiresInDays is a whole number of days from 1 to {MaxDays} (leave it out for a token that does not expire).");
                    var (token, secret) = await accounts.CreateTokenAsync(id, name, days is { } ds ? clock.GetUtcNow().AddDays(ds) : null);
                    return TypedResults.Created($"/api/account/tokens/{token.Id}", new CreatedToken(TokenDto.From(token), secret));
                }
                catch (RequestValidationException e)
                {
                    return ApiResults.Invalid(e);
                }
            })
            .RequireJsonBody().WithSummary("Makes a personal access token: {\"name\", \"expiresInDays\"?}; the answer holds its secret, shown this once.");
        tokens.MapDelete("/{id:long}", async Task<Results<NoContent, ProblemHttpResult>> (long id, HttpContext http, AccountService accounts) =>
            UserIdOf(http) is not { } userId ? NoAccount()
            : await accounts.RevokeTokenAsync(userId, id) ? TypedResults.NoContent()
            : TypedResults.Problem($"You have no token {id}.", statusCode: StatusCodes.Status404NotFound, title: "Not found"))
            .WithSummary("Revokes one of your tokens: its next request is refused.");
    }

    static string? UserIdOf(HttpContext http) => CallerClaims.Of(http)?.UserId;

    static ProblemHttpResult NoAccount() => TypedResults.Problem(
        "Tokens belong to a user account: the service token and the one user of a server without accounts have none.",
        statusCode: StatusCodes.Status403Forbidden, title: "No account");
}
