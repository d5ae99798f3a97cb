using Microsoft.Extensions.Primitives;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// Cross-site request checks for the API, applied to the whole <c>/api</c> group. A web page the user visits
/// can make the browser send a "simple" request (no preflight) to the loopback server: a POST without a JSON
/// content type, or a DELETE via a form trick. So calls that change data must come from this origin (or
/// from no browser at all), and JSON bodies must say they are JSON (which a cross-site page cannot send
/// without a CORS preflight, which this server never grants).
/// </summary>
public static class RequestChecks
{
    public static TBuilder RequireSameOriginForChanges<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var request = context.HttpContext.Request;
            if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method))
                return await next(context);
            if (CrossSiteReason(request) is { } reason)
                return TypedResults.Problem(reason, statusCode: StatusCodes.Status403Forbidden, title: "Cross-site request refused");
            return await next(context);
        });

    /// <summary>Why a state-changing request looks cross-site, or null when it does not.</summary>
    static string? CrossSiteReason(HttpRequest request)
    {
        // Browsers send Sec-Fetch-Site on every request; tools (curl, MLflow clients) send neither header.
        var site = request.Headers["Sec-Fetch-Site"].ToString();
        if (site.Length > 0 && site is not ("same-origin" or "none"))
            return $"Sec-Fetch-Site is '{site}': changes are accepted only from this server's own pages or from non-browser clients.";
        var origin = request.Headers.Origin;
        if (!StringValues.IsNullOrEmpty(origin) && !IsOwnOrigin(origin.ToString(), request))
            return $"Origin '{origin}' is not this server ({request.Scheme}://{request.Host}).";
        return null;
    }

    static bool IsOwnOrigin(string origin, HttpRequest request) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri) &&
        string.Equals(uri.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase) &&
        string.Equals(uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}", request.Host.Value, StringComparison.OrdinalIgnoreCase);

    /// <summary>A body, when there is one, must be <c>application/json</c>; answered with 415 otherwise.</summary>
    public static RouteHandlerBuilder RequireJsonBody(this RouteHandlerBuilder builder, bool optional = false) =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var request = context.HttpContext.Request;
            var hasBody = request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0 || request.ContentType is not null;
            if ((hasBody || !optional) && !request.HasJsonContentType())
                return TypedResults.Problem($"The body must be JSON with 'Content-Type: application/json' (got '{request.ContentType ?? "none"}').",
                    statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type");
            return await next(context);
        });
}
