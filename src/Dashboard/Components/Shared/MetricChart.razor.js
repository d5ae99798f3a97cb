// Plotly keeps a chart's height and caps a legend at part of it, scrolling the rest: with eight tracks on a phone the
// legend above the plot took most of the chart and the curves a strip. Here the chart grows by the legend's full
// height (Plotly's own measure, after it has wrapped the entries to the width), so the plot keeps its area at any width
// and with any number of tracks; the height follows every redraw and window resize (Plotly's afterplot).
const besidesLegend = 270; // px: the plot area and the axes' margins
const smallest = 300;

/** Fits the chart now and after each of Plotly's redraws (called again after a redraw the page asks for: a new plot
 *  replaces Plotly's event listeners). */
export function fitLegend(id) {
    const chart = document.getElementById(id);
    if (!chart) return; // the page has moved on
    if (!chart._fullLayout || !chart.on) {
        // Not plotted yet (Plotly.Blazor draws once Plotly's script has loaded, seconds on a busy machine): look again.
        setTimeout(() => fitLegend(id), 100);
        return;
    }
    if (chart._fitLegendOn !== chart.on) {
        chart._fitLegendOn = chart.on;
        chart.on("plotly_afterplot", () => fit(chart));
    }
    fit(chart);
}

function fit(chart) {
    const legend = chart._fullLayout.showlegend ? chart._fullLayout.legend : null;
    const wanted = Math.max(smallest, Math.ceil(besidesLegend + (legend?._height ?? 0)));
    if (Math.abs(chart.offsetHeight - wanted) < 2) return;
    chart.style.height = `${wanted}px`;
    Plotly.Plots.resize(chart);
}

/** Tells the component the step range a person zoomed to (box, scroll or axis drag) or that they zoomed out
 *  (double-click: null, null), a moment after the last change, so it can draw the exact points of that range.
 *  Called again after the page's redraws, as fitLegend is: a new plot replaces Plotly's event listeners. */
export function followZoom(id, component) {
    const chart = document.getElementById(id);
    if (!chart) return;
    if (!chart._fullLayout || !chart.on) {
        setTimeout(() => followZoom(id, component), 100);
        return;
    }
    if (chart._zoomOn === chart.on) return;
    chart._zoomOn = chart.on;
    let pending;
    chart.on("plotly_relayout", change => {
        let range;
        if (change["xaxis.autorange"]) range = [null, null];
        else if ("xaxis.range[0]" in change) range = [change["xaxis.range[0]"], change["xaxis.range[1]"]];
        else if (Array.isArray(change["xaxis.range"])) range = change["xaxis.range"];
        else return; // the page's own y-axis changes, a resize
        clearTimeout(pending);
        pending = setTimeout(() => component.invokeMethodAsync("Zoomed", range[0], range[1]).catch(() => { }), 150);
    });
}
