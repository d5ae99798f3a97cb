// Plotly keeps a chart's height and caps a legend at part of it, scrolling the rest: with eight tracks on a phone the
// legend above the plot took most of the chart and the curves a strip. Here the chart grows by the legend's full
// height (Plotly's own measure, after it has wrapped the entries to the width), so the plot keeps its area at any width
// and with any number of tracks; the height follows every redraw and window resize (Plotly's afterplot).
const besidesLegend = 270; // px: the plot area and the axes' margins
const smallest = 300;

/** Runs `listen` on the chart once per plot (a new plot replaces Plotly's event listeners; `marker` remembers which plot
 *  has them) and then `ready`, once Plotly has plotted it: until then (Plotly.Blazor draws once Plotly's script has
 *  loaded, seconds on a busy machine) it looks again every 100 ms. */
function whenPlotted(id, marker, listen, ready = () => { }) {
    const chart = document.getElementById(id);
    if (!chart) return; // the page has moved on
    if (!chart._fullLayout || !chart.on) {
        setTimeout(() => whenPlotted(id, marker, listen, ready), 100);
        return;
    }
    if (chart[marker] !== chart.on) {
        chart[marker] = chart.on;
        listen(chart);
    }
    ready(chart);
}

/** Fits the chart now and after each of Plotly's redraws (called again after a redraw the page asks for). */
export function fitLegend(id) {
    whenPlotted(id, "_fitLegendOn", chart => chart.on("plotly_afterplot", () => fit(chart)), fit);
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
    whenPlotted(id, "_zoomOn", chart => {
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
    });
}
