using System.Reflection;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Datasets;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Security;
using EmaLab.Dashboard.Tracking;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// Every change a page can make goes through a service method that takes its caller, checks the caller's right, checks
/// its input and writes its audit line — the doors pages and the API share. As the authorization matrix walks every API
/// route, this walks every such method: each is called by someone who lacks the right and must refuse, change nothing
/// and write no audit line; a new method that takes a caller and is not walked here fails the first test.
/// </summary>
public sealed class ServiceDoorTests(AccountsFactory factory) : IClassFixture<AccountsFactory>
{
    static readonly Type[] Doors =
        [typeof(RunService), typeof(PostHocService), typeof(GroupService), typeof(DatasetStore), typeof(AccountService), typeof(Permissions),
            typeof(ModelRegistry), typeof(CheckpointRegistration)];

    /// <summary>What each door needs, and an attempt by someone without it (the product's policy, written out here).</summary>
    sealed record Door(string Needs, Func<Context, Task> AttemptWithout);

    /// <summary>The app's services, a finished run in the default experiment, and callers at each level on that experiment.</summary>
    /// <summary><see cref="Model"/> is a registered model the admin made, with version 1 under <c>champion</c>; the reader reads it
    /// by the default (READ) and may change nothing of it. <see cref="LoggedModel"/> is a logged model of the run's experiment.</summary>
    sealed record Context(IServiceProvider Services, long RunId, Caller Reader, Caller Editor, Caller Admin, string ReaderName,
        long CheckpointId = 0, string Model = "", string LoggedModel = "")
    {
        public T Get<T>() where T : notnull => Services.GetRequiredService<T>();
    }

    static RunRequest Request() => RunRequest.Parse(Api.DigitsRun(steps: 5));

    /// <summary>The admin's upload the others may not delete: named for this test class alone (the catalog is the process's).</summary>
    static readonly string Dataset = $"door-{Guid.NewGuid():N}"[..20];

    static readonly Dictionary<string, Door> Matrix = new()
    {
        ["RunService.CreateAsync"] = new("EDIT on the experiment", c => c.Get<RunService>().CreateAsync(Request(), c.Reader)),
        ["RunService.CreateManyAsync"] = new("EDIT on each experiment", c => c.Get<RunService>().CreateManyAsync([Request(), Request()], c.Reader)),
        ["RunService.UpdateAsync"] = new("EDIT", c => c.Get<RunService>().UpdateAsync(c.RunId, new RunUpdate(Name: "renamed"), c.Reader)),
        ["RunService.CancelAsync"] = new("EDIT", c => c.Get<RunService>().CancelAsync(c.RunId, c.Reader)),
        ["RunService.ResumeAsync"] = new("EDIT", c => c.Get<RunService>().ResumeAsync(c.RunId, c.Reader)),
        ["RunService.DeleteAsync"] = new("MANAGE", c => c.Get<RunService>().DeleteAsync(c.RunId, c.Editor)),
        ["PostHocService.ReconstructAsync"] = new("EDIT",
            c => c.Get<PostHocService>().ReconstructAsync(c.RunId, new PostHocRequest(0.1, null), c.Reader)),
        ["PostHocService.ReconstructLawaAsync"] = new("EDIT",
            c => c.Get<PostHocService>().ReconstructLawaAsync(c.RunId, new LawaRequest(2, 1), c.Reader)),
        ["PostHocService.StartSweepAsync"] = new("EDIT", c => c.Get<PostHocService>().StartSweepAsync(c.RunId, new SweepRequest(), c.Reader)),
        ["GroupService.ReconstructAsync"] = new("EDIT", c => c.Get<GroupService>().ReconstructAsync(
            new GroupService.GroupData("g", Experiment.DefaultId, [], []), 0.1, c.Reader)),
        ["DatasetStore.FinishAsync"] = new("any signed-in user: tested by the upload tests", _ => Task.CompletedTask),
        ["DatasetStore.DeleteAsync"] = new("its uploader or an admin", async c =>
        {
            // A refusal of a dataset is an outcome (the page shows it by the row), not an exception.
            var (outcome, _) = await c.Get<DatasetStore>().DeleteAsync(Dataset, c.Editor);
            if (outcome != DatasetStore.DeleteOutcome.NotYours) return;
            throw new PermissionDeniedException("not yours");
        }),
        ["AccountService.CreateUserAsync"] = new("admin", c => c.Get<AccountService>().CreateUserAsync("mallory", AccountsFactory.UserPassword, true, c.Editor)),
        ["AccountService.UsersAsync"] = new("admin", c => c.Get<AccountService>().UsersAsync(c.Editor)),
        ["AccountService.SetAdminAsync"] = new("admin", c => c.Get<AccountService>().SetAdminAsync(c.Editor.UserId!, true, c.Editor)),
        ["AccountService.UnlockAsync"] = new("admin", c => c.Get<AccountService>().UnlockAsync(c.Reader.UserId!, c.Editor)),
        ["AccountService.DeleteUserAsync"] = new("admin", c => c.Get<AccountService>().DeleteUserAsync(c.Reader.UserId!, c.Editor)),
        ["AccountService.ChangePasswordAsync"] = new("an account of one's own", c => c.Get<AccountService>().ChangePasswordAsync(
            new Caller(null, "service token", true, CallerKind.Service), AccountsFactory.UserPassword, "another long passphrase")),
        ["Permissions.CreateAsync"] = new("MANAGE", c => c.Get<Permissions>().CreateAsync("0", c.ReaderName, "MANAGE", c.Editor, default)),
        ["Permissions.GetAsync"] = new("MANAGE", c => c.Get<Permissions>().GetAsync("0", c.ReaderName, c.Editor, default)),
        ["Permissions.UpdateAsync"] = new("MANAGE", c => c.Get<Permissions>().UpdateAsync("0", c.ReaderName, "MANAGE", c.Editor, default)),
        ["Permissions.DeleteAsync"] = new("MANAGE", c => c.Get<Permissions>().DeleteAsync("0", c.ReaderName, c.Editor, default)),
        // The registry: EDIT on the registered model to change it, MANAGE to delete and grant (MLflow's auth table).
        ["Permissions.CreateModelGrantAsync"] = new("MANAGE on the model", c => c.Get<Permissions>().CreateModelGrantAsync(c.Model, c.ReaderName, "MANAGE", c.Editor, default)),
        ["Permissions.GetModelGrantAsync"] = new("MANAGE on the model", c => c.Get<Permissions>().GetModelGrantAsync(c.Model, c.ReaderName, c.Editor, default)),
        ["Permissions.UpdateModelGrantAsync"] = new("MANAGE on the model", c => c.Get<Permissions>().UpdateModelGrantAsync(c.Model, c.ReaderName, "MANAGE", c.Editor, default)),
        ["Permissions.DeleteModelGrantAsync"] = new("MANAGE on the model", c => c.Get<Permissions>().DeleteModelGrantAsync(c.Model, c.ReaderName, c.Editor, default)),
        ["ModelRegistry.CreateRegisteredModelAsync"] = new("any signed-in user: its creator manages it (RegistryPermissionTests)", _ => Task.CompletedTask),
        ["ModelRegistry.UpdateRegisteredModelAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().UpdateRegisteredModelAsync(new UpdateRegisteredModelRequest(c.Model, "changed"), c.Reader, default)),
        ["ModelRegistry.RenameRegisteredModelAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().RenameRegisteredModelAsync(new RenameRegisteredModelRequest(c.Model, c.Model + "-x"), c.Reader, default)),
        ["ModelRegistry.DeleteRegisteredModelAsync"] = new("MANAGE on the model", c => c.Get<ModelRegistry>().DeleteRegisteredModelAsync(c.Model, c.Reader, default)),
        ["ModelRegistry.SetRegisteredModelTagAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().SetRegisteredModelTagAsync(new RegisteredModelTagRequest(c.Model, "k", "v"), c.Reader, default)),
        ["ModelRegistry.DeleteRegisteredModelTagAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().DeleteRegisteredModelTagAsync(new RegisteredModelTagRequest(c.Model, "team", null), c.Reader, default)),
        ["ModelRegistry.CreateModelVersionAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().CreateModelVersionAsync(new CreateModelVersionRequest(c.Model, "s3://b/m", null, null, null, null, null), c.Reader, default)),
        ["ModelRegistry.UpdateModelVersionAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().UpdateModelVersionAsync(new UpdateModelVersionRequest(c.Model, "1", "changed"), c.Reader, default)),
        ["ModelRegistry.TransitionStageAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().TransitionStageAsync(new TransitionStageRequest(c.Model, "1", "Production", false), c.Reader, default)),
        ["ModelRegistry.DeleteModelVersionAsync"] = new("MANAGE on the model", c => c.Get<ModelRegistry>().DeleteModelVersionAsync(c.Model, "1", c.Reader, default)),
        ["ModelRegistry.SetModelVersionTagAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().SetModelVersionTagAsync(new ModelVersionTagRequest(c.Model, "1", "k", "v"), c.Reader, default)),
        ["ModelRegistry.DeleteModelVersionTagAsync"] = new("MANAGE on the model",
            c => c.Get<ModelRegistry>().DeleteModelVersionTagAsync(new ModelVersionTagRequest(c.Model, "1", "quality", null), c.Reader, default)),
        ["ModelRegistry.SetAliasAsync"] = new("EDIT on the model",
            c => c.Get<ModelRegistry>().SetAliasAsync(new AliasRequest(c.Model, "champion", "1"), c.Reader, default)),
        ["ModelRegistry.DeleteAliasAsync"] = new("MANAGE on the model",
            c => c.Get<ModelRegistry>().DeleteAliasAsync(new AliasRequest(c.Model, "champion", null), c.Reader, default)),
        ["ModelRegistry.RequireCanAddVersionAsync"] = new("EDIT on the model", c => c.Get<ModelRegistry>().RequireCanAddVersionAsync(c.Model, c.Reader)),
        // Registering a track reads the run (READ on its experiment) and adds a version (EDIT on the model): refused before
        // the checkpoint becomes a logged model, so nothing is left behind.
        ["CheckpointRegistration.RegisterCheckpointAsync"] = new("EDIT on the model",
            c => c.Get<CheckpointRegistration>().RegisterCheckpointAsync(c.CheckpointId, c.Model, "champion", c.Reader)),
        ["CheckpointRegistration.RegisterLoggedModelAsync"] = new("EDIT on the model",
            c => c.Get<CheckpointRegistration>().RegisterLoggedModelAsync(c.LoggedModel, c.Model, null, c.Reader)),
    };

    /// <summary>Methods that take a caller but change nothing a person asked for: what the caller may do, and the
    /// consequence of creating an experiment.</summary>
    static readonly Dictionary<string, string> NotDoors = new()
    {
        ["Permissions.AccessOfAsync"] = "reads what the caller may do",
        ["Permissions.OnExperimentAsync"] = "reads what the caller may do",
        ["Permissions.ReadableAsync"] = "reads what the caller may do",
        ["Permissions.GrantCreatorAsync"] = "whoever creates an experiment manages it: part of creating one (MLflow's experiments/create)",
        ["Permissions.OnRegisteredModelAsync"] = "reads what the caller may do",
        ["Permissions.ReadableModelsAsync"] = "reads what the caller may do",
        ["Permissions.GrantModelCreatorAsync"] = "whoever creates a registered model manages it: part of creating one",
        // Reads: READ on the model (RegistryPermissionTests refuses a caller with NO_PERMISSIONS); lists leave out the rest.
        ["ModelRegistry.GetRegisteredModelAsync"] = "reads",
        ["ModelRegistry.GetLatestVersionsAsync"] = "reads",
        ["ModelRegistry.GetModelVersionAsync"] = "reads",
        ["ModelRegistry.GetDownloadUriAsync"] = "reads",
        ["ModelRegistry.GetByAliasAsync"] = "reads",
        ["ModelRegistry.DetailAsync"] = "reads",
        ["ModelRegistry.SearchRegisteredModelsAsync"] = "lists what the caller may read",
        ["ModelRegistry.SearchModelVersionsAsync"] = "lists what the caller may read",
        ["ModelRegistry.ListAsync"] = "lists what the caller may read",
        ["ModelRegistry.EditableNamesAsync"] = "lists what the caller may change",
    };

    [Fact]
    public void Every_service_method_that_takes_a_caller_is_walked()
    {
        var doors = Doors.SelectMany(type => type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                .Where(m => m.GetParameters().Any(p => p.ParameterType == typeof(Caller)))
                .Select(m => $"{type.Name}.{m.Name}"))
            .Distinct().Order().ToList();
        Assert.Equal(doors, Matrix.Keys.Concat(NotDoors.Keys).Order().ToList());
    }

    [Fact]
    public void Pages_write_no_audit_line_and_decide_no_change_by_themselves()
    {
        // The services write the audit lines; a page that records by hand, or acts as the local admin when it finds
        // nobody signed in, bypasses them.
        var components = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../src/Dashboard/Components"));
        var offenders = Directory.EnumerateFiles(components, "*.*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".razor", StringComparison.Ordinal) || f.EndsWith(".cs", StringComparison.Ordinal))
            .Where(f => System.Text.RegularExpressions.Regex.IsMatch(File.ReadAllText(f), @"RecordAsync\(|\?\?\s*Caller\.Local"))
            .Select(f => Path.GetRelativePath(components, f));
        Assert.Empty(offenders);
    }

    [Fact]
    public async Task Each_door_refuses_whoever_lacks_the_right_and_changes_nothing()
    {
        var services = factory.Services;
        var admin = factory.Admin();
        var (_, readerName) = await factory.NewUserAsync("reader");
        var (_, editorName) = await factory.NewUserAsync("editor");
        await Api.OkAsync(await admin.PostAsync("/api/2.0/mlflow/experiments/permissions/create",
            Api.JsonBody($$"""{"experiment_id": "0", "username": "{{editorName}}", "permission": "EDIT"}""")));
        var run = await Api.CreateAsync(admin, Api.DigitsRun(steps: 5));
        await Api.WaitForFinishAsync(admin, run.Id());
        await UploadDatasetAsync(admin);

        Caller CallerOf(string name)
        {
            using var scope = services.CreateScope();
            var user = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>().FindByNameAsync(name).GetAwaiter().GetResult()!;
            return AccountService.CallerOf(user, CallerKind.Password);
        }
        var checkpoint = (await Api.GetAsync(admin, $"/api/runs/{run.Id()}/checkpoints"))[0].GetProperty("id").GetInt64();
        var model = $"door-{Guid.NewGuid():N}"[..13];
        foreach (var (path, body) in new[]
        {
            ("registered-models/create", $$"""{"name": "{{model}}", "tags": [{"key": "team", "value": "vision"}]}"""),
            ("model-versions/create", $$"""{"name": "{{model}}", "source": "s3://b/m", "tags": [{"key": "quality", "value": "good"}]}"""),
            ("registered-models/alias", $$"""{"name": "{{model}}", "alias": "champion", "version": "1"}"""),
        })
            await Api.OkAsync(await admin.PostAsync($"/api/2.0/mlflow/{path}", Api.JsonBody(body)));
        var logged = (await Api.OkAsync(await admin.PostAsync("/api/2.0/mlflow/logged-models", Api.JsonBody("""{"experiment_id": "0", "name": "door"}"""))))
            .GetProperty("model").GetProperty("info").GetProperty("model_id").GetString()!;
        var context = new Context(services, run.Id(), CallerOf(readerName), CallerOf(editorName), Caller.Local, readerName, checkpoint, model, logged);

        var dbFactory = services.GetRequiredService<IDbContextFactory<EmaLabDbContext>>();
        async Task<string> StateAsync()
        {
            await using var db = await dbFactory.CreateDbContextAsync();
            var runs = string.Join(";", await db.Runs.OrderBy(r => r.Id).Select(r => $"{r.Id}:{r.Name}:{r.Status}:{r.Tracks.Count}").ToListAsync());
            var users = string.Join(";", await db.Users.OrderBy(u => u.UserName).Select(u => $"{u.UserName}:{u.IsAdmin}:{u.PasswordHash}").ToListAsync());
            var grants = string.Join(";", await db.ExperimentPermissions.OrderBy(p => p.UserId).Select(p => $"{p.ExperimentId}:{p.UserId}:{p.Permission}").ToListAsync());
            var audit = await db.AuditEntries.CountAsync();
            var registry = string.Join(";", await db.RegisteredModels.OrderBy(m => m.Id).Select(m => $"{m.Name}:{m.Description}:{m.Tags.Count}:{m.Aliases.Count}:{m.LastVersion}").ToListAsync())
                + string.Join(";", await db.ModelVersions.OrderBy(v => v.Id).Select(v => $"{v.Version}:{v.CurrentStage}:{v.Description}:{v.Tags.Count}").ToListAsync())
                + string.Join(";", await db.RegisteredModelPermissions.OrderBy(p => p.UserId).Select(p => $"{p.RegisteredModelId}:{p.UserId}:{p.Permission}").ToListAsync())
                + $":{await db.LoggedModels.CountAsync()}";
            // Only this test's dataset: other test classes upload and delete theirs at the same time.
            return $"{runs}|{users}|{grants}|{audit}|{registry}|{TrainingEngine.Data.DatasetCatalog.Find(Dataset) is not null}";
        }

        var failures = new List<string>();
        foreach (var (name, door) in Matrix)
        {
            var before = await StateAsync();
            var refused = false;
            try { await door.AttemptWithout(context); }
            catch (PermissionDeniedException) { refused = true; }
            if (!refused && !door.Needs.StartsWith("any signed-in user", StringComparison.Ordinal))
                failures.Add($"{name} did not refuse someone without {door.Needs}");
            if (await StateAsync() != before) failures.Add($"{name} changed something (or wrote an audit line) while refusing");
        }
        Assert.Empty(failures);
    }

    static async Task UploadDatasetAsync(HttpClient admin)
    {
        var csv = string.Join("\n", Enumerable.Range(0, 40).Select(i => string.Join(",", Enumerable.Repeat((i % 4) * 80, 16)) + $",{i % 4}"));
        using var form = new MultipartFormDataContent
        {
            { new StringContent(Dataset), "name" },
            { new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(csv)), "train", "train.csv" },
        };
        var response = await admin.PostAsync("/api/datasets", form);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_sigma_rel_the_API_refuses_is_refused_naming_its_field_wherever_it_comes_from()
    {
        // The run page's slider and the API call the same method: the field's message, not the engine's exception.
        var postHoc = factory.Services.GetRequiredService<PostHocService>();
        var refused = await Assert.ThrowsAsync<RequestValidationException>(() => postHoc.ReconstructAsync(1, new PostHocRequest(5.0, null), Caller.Local));
        Assert.Equal("sigmaRel", refused.Field);
        Assert.Contains("σ_rel", refused.Message);
        var tooWide = await Assert.ThrowsAsync<RequestValidationException>(() => postHoc.StartSweepAsync(1, new SweepRequest(0.05, 0.04), Caller.Local));
        Assert.Equal("to", tooWide.Field);
    }

    [Fact]
    public async Task Compare_offers_the_newest_runs_the_reader_may_read_not_the_newest_runs_filtered_afterwards()
    {
        var admin = factory.Admin();
        var (_, readerName) = await factory.NewUserAsync("compare");
        async Task<string> RunInAsync(string experiment) => (await Api.OkAsync(await admin.PostAsync("/api/2.0/mlflow/runs/create",
            Api.JsonBody($$"""{"experiment_id": "{{experiment}}", "run_name": "r"}""")))).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        await RunInAsync("0");
        var readable = await RunInAsync("0");
        var hidden = (await Api.OkAsync(await admin.PostAsync("/api/2.0/mlflow/experiments/create",
            Api.JsonBody($$"""{"name": "hidden-{{Guid.NewGuid():N}}"}""")))).GetProperty("experiment_id").GetString()!;
        await Api.OkAsync(await admin.PostAsync("/api/2.0/mlflow/experiments/permissions/create",
            Api.JsonBody($$"""{"experiment_id": "{{hidden}}", "username": "{{readerName}}", "permission": "NO_PERMISSIONS"}""")));
        for (var i = 0; i < 3; i++) await RunInAsync(hidden);

        using var scope = factory.Services.CreateScope();
        var user = (await scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>().FindByNameAsync(readerName))!;
        var access = await factory.Services.GetRequiredService<Permissions>().AccessOfAsync(AccountService.CallerOf(user, CallerKind.Password));
        var offered = await factory.Services.GetRequiredService<RunQueries>().ForCompareAsync([], newest: 2, access.Readable());
        Assert.Contains(offered.Runs, r => r.Uuid == readable);
        Assert.All(offered.Runs, r => Assert.True(access.On(r.ExperimentId).CanRead()));
        Assert.Equal(2, offered.Runs.Count);
    }
}
