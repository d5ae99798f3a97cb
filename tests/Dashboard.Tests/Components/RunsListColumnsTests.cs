using Bunit;
using EmaLab.Dashboard.Components.Pages;
using Microsoft.AspNetCore.Components;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>The runs page's metric columns: a summary chosen per column, kept in the address, the sort following it.</summary>
public sealed class RunsListColumnsTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    sealed class Sweep(EmaLabFactory factory) : MetricColumnSuite(factory);

    [Fact]
    public async Task A_column_shows_the_summary_chosen_sorts_by_it_and_the_address_keeps_both()
    {
        PageServices.Use(this, factory.Services);
        var (experiment, runs) = await new Sweep(factory).SweepAsync();
        var navigation = Services.GetRequiredService<NavigationManager>();
        navigation.NavigateTo($"?experiment={experiment}&cols=val_acc~raw~best&sort=val_acc~raw~best");
        var cut = Render<RunsList>();

        string Names() => string.Join(",", cut.FindAll("table.runs tbody tr").Select(r => r.QuerySelector("td:nth-child(2) a")!.TextContent));
        cut.WaitForAssertion(() => Assert.Equal("c,a,b,d", Names()));
        Assert.Equal(["0.95", "0.9", "0.8", "–"], cut.FindAll("td[data-column='val_acc~raw~best']").Select(c => c.TextContent));
        Assert.Equal("descending", cut.Find("th[data-column='val_acc~raw~best']").GetAttribute("aria-sort"));

        // The column's summary becomes "last": values, order and address follow.
        cut.Find("th[data-column='val_acc~raw~best'] select.column-summary").Change("Last");
        cut.WaitForAssertion(() => Assert.Equal("b,a,c,d", Names()));
        Assert.Equal(["0.8", "0.6", "0.1", "–"], cut.FindAll("td[data-column='val_acc~raw~last']").Select(c => c.TextContent));
        Assert.Contains("cols=val_acc~raw~last", Uri.UnescapeDataString(navigation.Uri));
        Assert.Contains("sort=val_acc~raw~last", Uri.UnescapeDataString(navigation.Uri));

        // A second click on the heading sorts the other way; a column is added from the picker and removed by its ×.
        cut.Find("th[data-column='val_acc~raw~last'] button.sort").Click();
        cut.WaitForAssertion(() => Assert.Equal("c,a,b,d", Names()));
        Assert.Contains("dir=asc", navigation.Uri);
        cut.Find("#column-series").Change("loss~raw");
        cut.Find("#column-summary").Change("Min");
        cut.Find("#add-column").Click();
        cut.WaitForAssertion(() => Assert.Equal(4, cut.FindAll("td[data-column='loss~raw~min']").Count));
        cut.Find("th[data-column='loss~raw~min'] button.remove-column").Click();
        cut.WaitForAssertion(() => Assert.Empty(cut.FindAll("td[data-column='loss~raw~min']")));
        Assert.DoesNotContain("loss", Uri.UnescapeDataString(navigation.Uri));
    }
}
