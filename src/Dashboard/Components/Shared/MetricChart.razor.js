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
