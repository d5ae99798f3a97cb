using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;

namespace EmaLab.Dashboard.E2E;

/// <summary>
/// A user who may only READ an experiment signs in and finds its runs, but no button that changes or deletes one — and
/// the API refuses the delete anyway.
/// </summary>
[Trait("Speed", "Browser")]
public sealed class ReadOnlyUserTests : IClassFixture<AccountsBrowserFixture>
{
    readonly AccountsBrowserFixture fixture;

    public ReadOnlyUserTests(AccountsBrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    const string Password = "a long enough passphrase";

    [Fact]
    public async Task A_read_user_signs_in_sees_the_run_and_finds_no_way_to_change_or_delete_it()
    {
        using var admin = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"ana:{AccountsBrowserFixture.AdminPassword}")));
        Assert.True((await admin.PostAsJsonAsync("api/2.0/mlflow/users/create", new { username = "rita", password = Password })).IsSuccessStatusCode);
        var created = await admin.PostAsJsonAsync("api/runs", new { name = "shared-run", dataset = "digits-8x8", model = "mlp",
            hidden = new[] { 16 }, steps = 20, evalInterval = 10, ema = new { decays = new[] { 0.9 } } });
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetInt64();
        for (var deadline = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < deadline; await Task.Delay(200))
            if ((await admin.GetFromJsonAsync<JsonElement>($"api/runs/{id}")).GetProperty("status").GetString() == "completed") break;

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions
            { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync($"runs/{id}");
        await Assertions.Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login"));
        await page.FillAsync("#userName", "rita");
        await page.FillAsync("#password", Password);
        await page.ClickAsync("button[type=submit]");
        await Assertions.Expect(page.GetByTestId("signed-in")).ToHaveTextAsync("rita");

        // The run page: everything to read, nothing to change.
        await Assertions.Expect(page.Locator("h1")).ToContainTextAsync("shared-run");
        // Its name, tags and notes are shown, with nothing to change them.
        await Assertions.Expect(page.GetByTestId("annotations").Locator("input, textarea, button")).ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Download" }).First).ToBeVisibleAsync();
        foreach (var button in new[] { "Cancel", "Resume", "Rename", "Delete", "Save notes" })
            await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = button, Exact = true })).ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Clone", Exact = true })).ToHaveCountAsync(0);
        await page.ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "16-read-user-run.png"), FullPage = true });

        // The runs list: the run, opened but not deleted.
        await page.GotoAsync("");
        await Assertions.Expect(page.Locator("tr", new() { HasText = "shared-run" })).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("tr", new() { HasText = "shared-run" }).GetByRole(AriaRole.Button, new() { Name = "Delete" }))
            .ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Users", Exact = true })).ToHaveCountAsync(0);

        // No way around the page: the API refuses the delete with the session's own cookie.
        var status = await page.EvaluateAsync<int>($"async () => (await fetch('api/runs/{id}', {{ method: 'DELETE' }})).status");
        Assert.Equal(403, status);
        Assert.Equal("completed", (await admin.GetFromJsonAsync<JsonElement>($"api/runs/{id}")).GetProperty("status").GetString());

        // The experiment's members are its managers' to see and change.
        await page.GotoAsync("experiments/0/members");
        await Assertions.Expect(page.GetByTestId("not-manager")).ToContainTextAsync("you have READ");
        await Assertions.Expect(page.GetByTestId("members")).ToHaveCountAsync(0);
    }
}
