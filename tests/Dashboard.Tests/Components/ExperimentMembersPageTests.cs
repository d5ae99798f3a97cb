using EmaLab.Dashboard.Hosting;
using System.Net.Http.Json;
using System.Text.Json;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Security;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>An experiment's members page (its manager here: the local admin): add a member, change and remove their
/// permission — the same grants MLflow's permission API reads — with an unknown user refused by the field, and each change
/// in the audit log.</summary>
public sealed class ExperimentMembersPageTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    [Fact]
    public async Task A_manager_adds_changes_and_removes_members()
    {
        PageServices.Use(this, factory.Services);
        var client = factory.CreateClient();
        var experiment = (await (await client.PostAsJsonAsync("/api/2.0/mlflow/experiments/create", new { name = $"members-{Guid.NewGuid():N}" }))
            .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("experiment_id").GetString()!;
        var user = $"hal-{Guid.NewGuid():N}"[..12];
        Assert.NotNull((await factory.Services.GetRequiredService<AccountService>().CreateUserAsync(user, "a long enough passphrase", false, Caller.Local)).User);

        var cut = Render<ExperimentMembers>(p => p.Add(c => c.Id, long.Parse(experiment)));
        Assert.Contains("Everyone else: READ", cut.Find("[data-testid=default-permission]").TextContent);
        cut.Find("#member-name").Change("nobody-here");
        cut.Find("[data-testid=add-member]").Submit();
        Assert.Contains("nobody-here", cut.Find("#member-name").ParentElement!.QuerySelector(".field-error")!.TextContent);

        cut.Find("#member-name").Change(user);
        cut.Find("#member-permission").Change("EDIT");
        cut.Find("[data-testid=add-member]").Submit();
        Assert.Equal("EDIT", await PermissionAsync(client, experiment, user));
        cut.Find($"tr[data-user='{user}'] select").Change("MANAGE");
        Assert.Equal("MANAGE", await PermissionAsync(client, experiment, user));
        cut.Find($"tr[data-user='{user}'] button").Click();
        Assert.Empty(cut.FindAll($"tr[data-user='{user}']"));
        Assert.Null(await PermissionAsync(client, experiment, user));

        var log = (await factory.Services.GetRequiredService<AuditLog>().ListAsync("local", "permission", null, 10)).Items
            .Where(e => e.Target == $"experiment {experiment}").Select(e => (e.Action, e.Detail)).ToList();
        Assert.Equal([("permission.delete", $"username={user}"), ("permission.update", $"username={user} permission=MANAGE"),
            ("permission.create", $"username={user} permission=EDIT")], log);
    }

    static async Task<string?> PermissionAsync(HttpClient client, string experiment, string user)
    {
        var response = await client.GetAsync($"/api/2.0/mlflow/experiments/permissions/get?experiment_id={experiment}&username={user}");
        return response.IsSuccessStatusCode
            ? (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("experiment_permission").GetProperty("permission").GetString()
            : null;
    }
}
