using EmaLab.Dashboard.Hosting;
using System.Globalization;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Data;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace EmaLab.Dashboard.Datasets;

/// <summary><c>/api/datasets</c>: the built-in and uploaded datasets; upload (multipart, streamed to disk) and delete.</summary>
public static class DatasetEndpoints
{
    public static void MapDatasetApi(this RouteGroupBuilder api)
    {
        var datasets = api.MapGroup("/datasets").WithTags("Datasets");
        datasets.MapGet("", () => DatasetCatalog.Names.Select(DatasetCatalog.Describe)).ForAnyCaller("the dataset catalog").WithSummary("Built-in and uploaded datasets.");
        datasets.MapPost("", Upload).ForAnyCaller("any user may upload a dataset").DisableAntiforgery()
            .WithSummary("Uploads a dataset (multipart/form-data): 'name'; IDX files 'trainImages' + 'trainLabels' (optionally 'testImages' + 'testLabels') or CSV files 'train' (optionally 'test'), pixels then the label per line, gzip or plain; without test files 'evalFraction' (default 0.2) is held out by 'splitSeed' (default 1); 'width' for CSV images that are not square.");
        datasets.MapDelete("/{name}", Delete).ForAnyCaller("its uploader or an admin: the handler checks who uploaded it")
            .WithSummary("Deletes an uploaded dataset that no run uses (its uploader or an admin).");
    }

    static async Task<Results<Created<DatasetInfo>, ValidationProblem, ProblemHttpResult>> Upload(HttpContext context, DatasetStore store,
        CancellationToken ct)
    {
        var request = context.Request;
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(type.Boundary).Value is not { Length: > 0 } boundary)
            return TypedResults.Problem($"Send the dataset as multipart/form-data (got '{request.ContentType ?? "none"}').",
                statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type");
        // The server's default body limit (30 MB) is for JSON; a dataset has its own (EmaLab:MaxDatasetMegabytes), counted while it streams.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = store.MaxBytes + 1024 * 1024;

        using var import = store.Begin();
        var fields = new Dictionary<string, string>();
        try
        {
            var reader = new MultipartReader(boundary, request.Body);
            while (await reader.ReadNextSectionAsync(ct) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    || disposition.Name.Value is not { } field)
                    continue;
                field = HeaderUtilities.RemoveQuotes(field).Value!;
                if (disposition.IsFileDisposition())
                    await store.SaveFileAsync(import, field,
                        HeaderUtilities.RemoveQuotes(disposition.FileName).Value ?? disposition.FileNameStar.Value, section.Body, ct);
                else
                {
                    using var text = new StreamReader(section.Body);
                    var buffer = new char[1024];
                    var length = await text.ReadBlockAsync(buffer, ct);
                    fields[field] = new string(buffer, 0, length);
                }
            }
            var upload = new DatasetUpload(fields.GetValueOrDefault("name"),
                Number(fields, "evalFraction", DatasetFolder.DefaultEvalFraction), (long)Number(fields, "splitSeed", 1),
                fields.TryGetValue("width", out var width) ? (int)Number(fields, "width", 0) : null);
            if (fields.Keys.FirstOrDefault(k => k is not ("name" or "evalFraction" or "splitSeed" or "width")) is { } unknown)
                throw new RequestValidationException(unknown, $"Unknown field '{unknown}'.");
            var info = await store.FinishAsync(import, upload, CallerClaims.Of(context)!);
            return TypedResults.Created($"/api/datasets/{info.Name}", info);
        }
        catch (RequestValidationException e)
        {
            return ApiResults.Invalid(e);
        }
        catch (UploadTooLargeException e)
        {
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status413PayloadTooLarge, title: "Too large",
                extensions: new Dictionary<string, object?> { ["errors"] = new Dictionary<string, string[]> { [e.Field] = [e.Message] } });
        }
        catch (IOException e) when (e is not FileNotFoundException)
        {
            // A body that ends early (the client went away) or a multipart framing error.
            return ApiResults.Invalid("$", $"The upload could not be read: {e.Message}");
        }
        catch (InvalidDataException e)
        {
            return ApiResults.Invalid("$", $"The multipart body is malformed: {e.Message}");
        }
    }

    static double Number(Dictionary<string, string> fields, string field, double fallback)
    {
        if (!fields.TryGetValue(field, out var text)) return fallback;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value : throw new RequestValidationException(field, $"'{field}' must be a number (got '{text}').");
    }

    static async Task<Results<NoContent, ProblemHttpResult>> Delete(string name, HttpContext http, DatasetStore store, CancellationToken ct) =>
        await store.DeleteAsync(name, CallerClaims.Of(http)!, ct) switch
        {
            (DatasetStore.DeleteOutcome.Deleted, _) => TypedResults.NoContent(),
            (DatasetStore.DeleteOutcome.NotYours, var message) =>
                TypedResults.Problem(message, statusCode: StatusCodes.Status403Forbidden, title: "Permission denied"),
            (DatasetStore.DeleteOutcome.NotFound, _) =>
                TypedResults.Problem($"There is no dataset '{name}'.", statusCode: StatusCodes.Status404NotFound, title: "Not found"),
            (_, var message) => ApiResults.Conflict(message!),
        };
}
