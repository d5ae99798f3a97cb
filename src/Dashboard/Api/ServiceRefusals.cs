using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Api;

/// <summary>
/// The API group's filter that answers a service's refusal (<c>Hosting/Refusals.cs</c>) as the API's own checks do: a
/// field that breaks a rule is 400 with problem details naming it, a missing permission 403, a missing thing 404, a
/// state that does not allow it 409. Services check their inputs and the caller's rights once, for pages and the API alike;
/// this is how the API says what they said.
/// </summary>
public static class ServiceRefusals
{
    public static RouteGroupBuilder AnswerServiceRefusals(this RouteGroupBuilder api) =>
        api.AddEndpointFilter(async (context, next) =>
        {
            try { return await next(context); }
            catch (RequestValidationException e) { return ApiResults.Invalid(e); }
            catch (PermissionDeniedException e) { return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status403Forbidden, title: "Permission denied"); }
            catch (NotFoundException e) { return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status404NotFound, title: "Not found"); }
            catch (ConflictException e) { return ApiResults.Conflict(e.Message); }
        });
}
