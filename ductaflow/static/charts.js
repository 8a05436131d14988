/* ductaflow's charts of one step, drawn with plotly.js (the global Plotly) from the JSON that
 * ductaflow.charts.chart_data(rows) returns (its docstring describes the charts and how they sample).
 *
 *   DuctaflowCharts.render(container, data)  ->  Promise (resolved once every chart is drawn)
 *
 * fills the element `container` with up to four charts and their selects: a metric against a column
 * (div.df-chart-metric: select.chart-y, select.chart-x), recorded series per instance
 * (div.df-chart-series: select.chart-series), parallel coordinates (div.df-chart-parallel:
 * select.chart-colour) and a timeline per worker (div.df-chart-timeline). Called again on the same
 * container with newer data, it redraws in place and keeps what was chosen in the selects.
 */
(function (root) {
  "use strict";
  const COLOURS = {success: "#2a7ab0", failed: "#c0392b", crashed: "#8e44ad", interrupted: "#e69f00",
                   running: "#d4ac0d", "unreadable record": "#7f7f7f", unknown: "#b0b0b0", mixed: "#e67e22"};
  const CONFIG = {displaylogo: false, responsive: true};
  const HEIGHT = 340;
  const STYLE = `.df-charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(440px,100%),1fr));
gap:12px;margin:.6em 0}.df-chart{border:1px solid #ddd;border-radius:4px;padding:6px 8px;min-width:0}
.df-chart h3{font-size:1em;margin:0 0 4px}.df-controls select{margin:0 .3em;max-width:40%}
.df-note{font-size:.85em;color:#666;margin:2px 0 0}.df-plot{width:100%}`;
  const colour = s => COLOURS[s] || COLOURS.unknown;
  const KINDS = ["metric", "series", "parallel", "timeline"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    node.append(...children);
    return node;
  }
  function fmt(v) {
    if (v == null) return "";
    if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en") : String(+v.toPrecision(6));
    return String(v);
  }
  const count = (n, what) => `${fmt(n)} ${what}${n === 1 ? "" : "s"}`;
  function range(n) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    return out;
  }
  function options(select, values, wanted) {  // the select offers values, keeping the choice if it can
    const chosen = values.includes(select.value) ? select.value : values.includes(wanted) ? wanted : values[0];
    select.replaceChildren(...values.map(v => el("option", {value: v}, v)));
    if (chosen != null) select.value = chosen;
  }
  function empty(text) {
    return {traces: [], layout: {xaxis: {visible: false}, yaxis: {visible: false},
      annotations: [{text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5}]}};
  }

  // (a) a metric against a column: a scatter, replicate means ± std, or one point per category
  function metricFigure(data, x, y) {
    const notes = [], cat = data.categories[x];
    if (cat) {
      const s = cat.stats[y] || {mean: [], std: [], n: []};
      const keep = range(cat.labels.length).filter(i => s.n[i] > 0);
      notes.push("one point per category: the mean ± standard deviation over its successful instances");
      if (cat.dropped) notes.push(`the ${fmt(cat.labels.length)} most frequent of ${
        fmt(cat.labels.length + cat.dropped)} categories`);
      if (!keep.length) return {...empty("no successful instance recorded " + y), notes};
      return {notes, traces: [{type: "scatter", mode: "markers", name: "mean ± std",
        x: keep.map(i => cat.labels[i]), y: keep.map(i => s.mean[i]),
        error_y: {type: "data", array: keep.map(i => s.std[i] || 0), visible: true},
        text: keep.map(i => `${x} = ${cat.labels[i]}<br>${y}: ${fmt(s.mean[i])}` +
          (s.std[i] == null ? "" : ` ± ${fmt(s.std[i])}`) + `<br>n = ${s.n[i]} successful of ${cat.count[i]}`),
        hovertemplate: "%{text}<extra></extra>", marker: {size: 10, color: COLOURS.success}}],
        layout: {xaxis: {type: "category", categoryorder: "array", categoryarray: cat.labels}}};
    }
    const S = data.sample.columns, R = data.replicates && data.replicates.columns;
    const grouped = !!R && x in R, traces = [];
    const own = range(S.instance.length).filter(i => S[x][i] != null && S[y][i] != null &&
                                                    !(grouped && S.replicate_of[i] != null));
    if (own.length) traces.push({type: "scatter", mode: "markers", name: "instances",
      x: own.map(i => S[x][i]), y: own.map(i => S[y][i]),
      text: own.map(i => `${S.instance[i]} (${S.status[i]})<br>${x}: ${fmt(S[x][i])}<br>${y}: ${fmt(S[y][i])}`),
      hovertemplate: "%{text}<extra></extra>", marker: {size: 7, color: own.map(i => colour(S.status[i]))}});
    if (grouped) {
      const mean = R[y + ".mean"] || [], std = R[y + ".std"] || [], n = R[y + ".n"] || [];
      const rows = range(R.replicate_of.length).filter(i => R[x][i] != null && mean[i] != null);
      traces.push({type: "scatter", mode: "markers", name: "replicates: mean ± std",
        x: rows.map(i => R[x][i]), y: rows.map(i => mean[i]),
        error_y: {type: "data", array: rows.map(i => std[i] || 0), visible: true},
        text: rows.map(i => `${R.replicate_of[i]}<br>${x}: ${fmt(R[x][i])}<br>${y}: ${fmt(mean[i])}` +
          (std[i] == null ? "" : ` ± ${fmt(std[i])}`) + `<br>n = ${n[i]} successful of ${R.replicates[i]}`),
        hovertemplate: "%{text}<extra></extra>", marker: {size: 10, symbol: "diamond", color: COLOURS.success}});
      notes.push("each replicated row: the mean ± standard deviation over its successful replicates");
      if (data.replicates.shown < data.replicates.of) notes.push(
        `${fmt(data.replicates.shown)} of ${count(data.replicates.of, "replicated row")} drawn`);
    }
    if (data.sample.shown < data.sample.of) notes.push(`a sample of ${fmt(data.sample.shown)} of ${
      count(data.sample.of, "instance")} is drawn (every ${fmt(data.sample.every)}th, and the smallest and ` +
      "largest value of each metric)");
    if (!traces.length) return {...empty(`no instance has both ${x} and ${y}`), notes};
    return {traces, notes, layout: {}};
  }

  // (b) a metric recorded as a list of numbers: one line per instance
  function seriesFigure(data, key) {
    const L = data.lines[key], notes = [];
    if (L.shown < L.of) notes.push(`${fmt(L.shown)} of ${count(L.of, "instance")} drawn (every ${
      fmt(L.every)}th): at most ${fmt(L.shown)} lines`);
    if (L.thinned) notes.push(`each line at most ${L.points} points, evenly spaced (the longest has ${
      fmt(L.longest)})`);
    const traces = L.y.map((ys, j) => ({type: "scatter", mode: "lines", name: L.instance[j], x: L.x[j], y: ys,
      line: {width: 1.5, dash: L.status[j] === "success" ? "solid" : "dot"},
      hovertemplate: `${L.instance[j]} (${L.status[j]})<br>%{x}: %{y}<extra></extra>`}));
    return {traces, notes, layout: {xaxis: {title: {text: key + ": position in the list"}},
                                    yaxis: {title: {text: key}}, showlegend: traces.length <= 12}};
  }

  // (c) parallel coordinates: the config columns that vary, and a metric as the last axis and the colour
  function parallelFigure(data, metric) {
    const S = data.sample.columns, keys = [...data.varying, ...(metric ? [metric] : [])], notes = [];
    const rows = range(S.instance.length).filter(i => keys.every(k => data.categories[k] || S[k][i] != null));
    const dimensions = keys.map(k => {
      const cat = data.categories[k];
      if (!cat) return {label: k, values: rows.map(i => S[k][i])};
      const labels = [...cat.labels, "(other)", "(none)"], at = new Map(labels.map((c, i) => [c, i]));
      const values = rows.map(i => S[k][i] == null ? at.get("(none)") : at.has(S[k][i]) ? at.get(S[k][i])
                                                                                       : at.get("(other)"));
      const used = [...new Set(values)].sort((a, b) => a - b);
      return {label: k, values, tickvals: used, ticktext: used.map(i => labels[i].slice(0, 24))};
    });
    const line = metric ? {color: rows.map(i => S[metric][i]), colorscale: "Viridis", showscale: true,
                           colorbar: {title: {text: metric}}} : {color: COLOURS.success};
    if (rows.length < data.instances) notes.push(`${fmt(rows.length)} of ${count(data.instances, "instance")
      } drawn` + (data.sample.shown < data.sample.of ? ` (a sample: every ${fmt(data.sample.every)}th)` : "") +
      (metric ? `, those with ${metric}` : ""));
    if (!rows.length) return {...empty("no instance has every value"), notes};
    return {traces: [{type: "parcoords", dimensions, line}], notes, layout: {margin: {l: 60, r: 40, t: 50, b: 20}}};
  }

  // (d) a timeline: a bar per instance from start to end, a lane per worker, coloured by status
  function timelineFigure(data) {
    const T = data.timeline, notes = [];
    const local = ms => ms - new Date(ms).getTimezoneOffset() * 60000;  // plotly's dates have no time zone
    const traces = [...new Set(T.status)].map(status => {
      const bars = range(T.status.length).filter(i => T.status[i] === status);
      return {type: "bar", orientation: "h", name: status, marker: {color: colour(status)},
        base: bars.map(i => local(T.start[i])), x: bars.map(i => Math.max(T.end[i] - T.start[i], 1)),
        y: bars.map(i => T.lanes[T.lane[i]]), textposition: "none", hovertemplate: "%{text}<extra></extra>",
        text: bars.map(i => `${T.label[i]} (${status})<br>${T.lanes[T.lane[i]]}<br>` +
          `${new Date(T.start[i]).toLocaleString()}, ${fmt(+((T.end[i] - T.start[i]) / 1000).toFixed(1))} s`)};
    });
    if (T.merged) notes.push(`neighbouring instances of a lane are merged into one bar (at most ${
      fmt(T.limit)} bars; hover a bar to see how many it holds)`);
    if (T.of < data.instances) notes.push(`${fmt(T.of)} of ${count(data.instances, "instance")} started`);
    return {traces, notes, layout: {barmode: "overlay", bargap: 0.25, height: Math.min(900, 140 + 26 * T.lanes.length),
      xaxis: {type: "date", title: {text: "local time"}},
      yaxis: {type: "category", categoryorder: "array", categoryarray: T.lanes, autorange: "reversed"}}};
  }

  function draw(box, figure, titles) {
    box.note.textContent = figure.notes.join("; ");
    box.note.hidden = !figure.notes.length;
    const base = {height: HEIGHT, margin: {l: 10, r: 10, t: 10, b: 10}, hovermode: "closest",
                  showlegend: figure.traces.length > 1};
    const layout = {...base, ...figure.layout};
    for (const axis of ["xaxis", "yaxis"]) {
      layout[axis] = {automargin: true, ...(titles && titles[axis] ? {title: {text: titles[axis]}} : {}),
                      ...(figure.layout || {})[axis]};
    }
    return root.Plotly.react(box.plot, figure.traces, layout, CONFIG);
  }

  const BOXES = {
    metric: {title: "A metric against a column", shows: d => d.metrics.length > 0,
      selects: d => [["chart-y", d.metrics, d.y], " against ", ["chart-x", [...d.configs, ...d.metrics], d.x]],
      draw: (box, d, [y, x]) => draw(box, metricFigure(d, x, y), {xaxis: x, yaxis: y})},
    series: {title: "Recorded series, one line per instance", shows: d => d.series.length > 0,
      selects: d => [["chart-series", d.series, d.series[0]]],
      draw: (box, d, [key]) => draw(box, seriesFigure(d, key))},
    parallel: {title: "The sweep in parallel coordinates", shows: d => d.varying.length > 0 &&
                                                                         d.varying.length + d.metrics.length > 1,
      selects: d => d.metrics.length ? ["colour: ", ["chart-colour", d.metrics, d.y]] : [],
      draw: (box, d, [metric]) => draw(box, parallelFigure(d, metric))},
    timeline: {title: "When each instance ran, per worker", shows: d => d.timeline.start.length > 0,
      selects: () => [], draw: (box, d) => draw(box, timelineFigure(d))},
  };

  function build(kind, data) {
    const spec = BOXES[kind], controls = el("div", {"class": "df-controls"});
    const box = {node: el("div", {"class": "df-chart df-chart-" + kind, "data-chart": kind}), selects: [],
                 plot: el("div", {"class": "df-plot"}), note: el("p", {"class": "df-note"})};
    for (const part of spec.selects(data)) {
      if (typeof part === "string") { controls.append(part); continue; }
      const select = el("select", {"class": part[0]});
      select.addEventListener("change", () => spec.draw(box, box.data, box.selects.map(s => s.value)));
      box.selects.push(select);
      controls.append(select);
    }
    box.node.append(el("h3", {}, spec.title), controls, box.plot, box.note);
    if (root.ResizeObserver) {  // the page's layout changed the chart's width: fit it again
      let width = null;
      new ResizeObserver(() => {
        const now = box.plot.clientWidth;
        if (width !== null && now !== width && box.plot.data) root.Plotly.Plots.resize(box.plot);
        width = now;
      }).observe(box.plot);
    }
    return box;
  }

  function render(container, data) {
    if (!root.Plotly) throw new Error("DuctaflowCharts needs plotly.js loaded first (the global Plotly)");
    if (!document.getElementById("df-charts-style")) {
      document.head.append(el("style", {id: "df-charts-style"}, STYLE));
    }
    const state = container.dfCharts || (container.dfCharts = {boxes: {}, grid: el("div", {"class": "df-charts"})});
    if (state.grid.parentNode !== container) container.replaceChildren(state.grid);
    const placed = [];
    for (const kind of KINDS) {
      let box = state.boxes[kind];
      const spec = BOXES[kind];
      const parts = spec.shows(data) ? spec.selects(data).filter(p => typeof p !== "string") : null;
      if (box && (!parts || box.selects.length !== parts.length)) {  // gone, or a select more or less
        root.Plotly.purge(box.plot);
        box.node.remove();
        box = state.boxes[kind] = null;
      }
      if (!parts) continue;
      if (!box) box = state.boxes[kind] = build(kind, data);
      state.grid.append(box.node);  // in the order of KINDS, every box placed before any is drawn
      box.data = data;
      parts.forEach(([, values, chosen], i) => options(box.selects[i], values, chosen));
      placed.push([kind, box]);
    }
    let drawn = Promise.resolve();  // one chart after another, the page free to respond in between
    for (const [kind, box] of placed) {
      drawn = drawn.then(() => new Promise(done => setTimeout(done)))
        .then(() => BOXES[kind].draw(box, box.data, box.selects.map(s => s.value)));
    }
    return drawn;
  }

  root.DuctaflowCharts = {render};
})(window);
