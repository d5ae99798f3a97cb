using EmaLab.TrainingEngine.Training;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// The OpenAPI document's run specification: the engine's <see cref="RunSpec"/> plus the two fields the service
/// reads beside it (<c>name</c>, <c>checkpointEvery</c>), so a client sees the whole body of <c>POST /api/runs</c>.
/// </summary>
static class RunSpecSchema
{
    public static void Describe(OpenApiOptions options) => options.AddSchemaTransformer((schema, context, _) =>
    {
        if (context.JsonTypeInfo.Type != typeof(RunSpec)) return Task.CompletedTask;
        schema.Properties ??= new Dictionary<string, IOpenApiSchema>();
        schema.Properties["name"] = new OpenApiSchema
        {
            Type = JsonSchemaType.String | JsonSchemaType.Null,
            MaxLength = RunRequest.MaxNameLength,
            Description = "A name for the run (default: \"<model> on <dataset>\").",
        };
        schema.Properties["checkpointEvery"] = new OpenApiSchema
        {
            Type = JsonSchemaType.Integer | JsonSchemaType.Null,
            Format = "int64",
            Description = $"Save raw and EMA checkpoints at step 0 and every this many steps (the final ones always); at most {RunRequest.MaxCheckpoints} files per run.",
        };
        schema.Description = "A run specification (unknown fields are refused with 400).";
        return Task.CompletedTask;
    });
}
