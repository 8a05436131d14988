// The page of `ductaflow serve`: asks the server for changes every second and redraws what changed.
// Every sort, filter and page is done by the server (the run index); the page never holds more than 50 rows.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const state = {version: null, steps: [], step: null, sort: "instance", desc: false, where: "", status: "",
                 offset: 0, total: 0, instance: null, running: false, charts: false, chartsDue: 0,
                 chartsPause: 5000};
  const latest = {};  // the newest request of each kind: older answers arriving late are dropped

  async function ask(kind, url) {
    const ticket = (latest[kind] = (latest[kind] || 0) + 1);
    const response = await fetch(url, {cache: "no-store", credentials: "same-origin"});
    const body = await response.json().catch(() => ({error: response.statusText}));
    if (ticket !== latest[kind]) return null;
    if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), {status: response.status});
    return body;
  }
  const query = params => new URLSearchParams(params).toString();
  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    for (const child of children) node.append(child);
    return node;
  };

  function shown(value, column) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) {
      const last = value[value.length - 1];
      return value.length && typeof last !== "object" ? `${shown(last)} (${value.length} values)` : JSON.stringify(value);
    }
    if (typeof value === "object") return JSON.stringify(value);
    if (typeof value === "number") {
      if (column === "duration") return seconds(value);
      return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
    }
    if (column === "started" || column === "ended") return String(value).replace("T", " ").slice(0, 19);
    return String(value);
  }
  function seconds(s) {
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }
  const statusClass = status => String(status).split(" ")[0];

  // ---- steps ------------------------------------------------------------------------------------
  async function loadSteps() {
    const data = await ask("steps", "api/steps");
    if (!data) return;
    state.steps = data.steps;
    const names = data.steps.map(s => s.step);
    const wanted = decodeURIComponent((location.hash.match(/^#step=(.*)$/) || [])[1] || "");
    if (!names.includes(state.step)) state.step = names.includes(wanted) ? wanted : names[0] || null;
    drawSteps();
  }
  function drawSteps() {
    const nav = $("steps");
    nav.replaceChildren(...state.steps.map(step => {
      const counts = el("div", {className: "counts"}, ...Object.entries(step.counts).map(([status, n]) =>
        el("span", {className: `count count-${statusClass(status)}`, title: status},
           el("span", {className: `status ${statusClass(status)}`, textContent: status}), ` ${n}`)));
      const eta = step.eta_s === null || step.eta_s === undefined ? ""
        : step.eta_s < 1 ? "ETA: any moment" : `ETA: ${seconds(step.eta_s)}`;
      const button = el("button", {type: "button", className: "step" + (step.step === state.step ? " selected" : "")},
        el("div", {className: "name", textContent: step.step}),
        el("div", {className: "total", textContent: `${step.total} instance${step.total === 1 ? "" : "s"}`}),
        counts, el("div", {className: "eta", textContent: eta}));
      button.dataset.step = step.step;
      button.addEventListener("click", () => selectStep(step.step));
      return button;
    }));
    $("no-steps").hidden = state.steps.length > 0;
    $("step").hidden = !state.step;
    const step = state.steps.find(s => s.step === state.step);
    if (!step) return;
    $("step-name").textContent = step.step;
    const select = $("status"), statuses = Object.keys(step.counts);
    if (state.status && !statuses.includes(state.status)) statuses.push(state.status);
    const options = ["", ...statuses];
    if ([...select.options].map(o => o.value).join("\n") !== options.join("\n")) {
      select.replaceChildren(...options.map(s => el("option", {value: s, textContent: s || "every status"})));
      select.value = state.status;
    }
  }
  function selectStep(name) {
    if (name === state.step) return;
    Object.assign(state, {step: name, sort: "instance", desc: false, where: "", status: "", offset: 0,
                          instance: null});
    $("where").value = "";
    history.replaceState(null, "", "#step=" + encodeURIComponent(name));
    drawSteps();
    $("detail").hidden = true;
    loadRows();
    $("charts-body").replaceChildren();  // another step's charts and chosen axes go
    drawCharts(true);
  }

  // ---- rows -------------------------------------------------------------------------------------
  async function loadRows() {
    if (!state.step) return;
    let data;
    try {
      data = await ask("rows", "api/rows?" + query({step: state.step, sort: state.sort, desc: state.desc ? 1 : 0,
                                                     where: state.where, status: state.status, offset: state.offset}));
    } catch (error) {
      if (error.status !== 400) throw error;
      $("where-error").textContent = error.message;
      $("where-error").hidden = false;
      return;
    }
    if (!data) return;
    $("where-error").hidden = true;
    state.total = data.total;
    if (data.total && state.offset >= data.total) {  // the page emptied under us: show the last one
      state.offset = Math.floor((data.total - 1) / data.limit) * data.limit;
      return loadRows();
    }
    drawRows(data);
    if (!state.charts) loadCharts();  // plotly.js (4.6 MB) once the table is on screen
  }
  function drawRows(data) {
    const head = $("rows").tHead.rows[0];
    head.replaceChildren(...data.columns.map(column => {
      const th = el("th", {textContent: column.replace(/^(config|metric)\./, ""), title: column});
      th.dataset.column = column;
      if (column === state.sort) th.className = state.desc ? "sorted-desc" : "sorted-asc";
      th.addEventListener("click", () => sortBy(column));
      return th;
    }));
    $("rows").tBodies[0].replaceChildren(...data.rows.map(row => {
      const tr = el("tr", {className: row.instance === state.instance ? "selected" : ""});
      tr.dataset.instance = row.instance;
      tr.dataset.status = row.status;
      for (const column of data.columns) {
        const td = el("td", {textContent: shown(row[column], column)});
        td.dataset.column = column;
        if (typeof row[column] === "number") td.className = "num";
        if (column === "status") {
          td.replaceChildren(el("span", {className: `status ${statusClass(row.status)}`, textContent: row.status}));
          if (row.error) td.append(" ", el("span", {className: "error", textContent: row.error, title: row.error}));
        }
        tr.append(td);
      }
      tr.addEventListener("click", () => selectInstance(row.instance));
      return tr;
    }));
    const last = Math.min(data.offset + data.limit, data.total);
    const step = state.steps.find(s => s.step === state.step);
    $("matching").textContent = `${data.total} of ${step ? step.total : data.total} instances`;
    $("page").textContent = data.total ? `${data.offset + 1}–${last}` : "";
    $("prev").disabled = data.offset === 0;
    $("next").disabled = last >= data.total;
  }
  function sortBy(column) {
    state.desc = state.sort === column ? !state.desc : false;
    state.sort = column;
    state.offset = 0;
    loadRows();
  }

  // ---- one instance -----------------------------------------------------------------------------
  function selectInstance(name) {
    state.instance = name;
    for (const tr of $("rows").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.instance === name);
    loadInstance();
  }
  async function loadInstance() {
    if (!state.instance) return;
    let data;
    try {
      data = await ask("instance", "api/instance?" + query({step: state.step, instance: state.instance}));
    } catch (error) {
      if (error.status !== 404) throw error;
      $("detail").hidden = true;
      return;
    }
    if (!data) return;
    const row = data.row, detail = $("detail");
    detail.hidden = false;
    detail.dataset.instance = row.instance;
    detail.dataset.status = row.status;
    state.running = data.running;
    $("detail-name").textContent = `${row.step} / ${row.instance}`;
    $("detail-status").textContent = row.status;
    $("detail-status").className = `status ${statusClass(row.status)}`;
    const facts = ["reason", "started", "ended", "duration", "host", "pid", "seed", "note"]
      .filter(k => row[k] !== null && row[k] !== undefined && row[k] !== "");
    const configs = Object.keys(row).filter(k => k.startsWith("config.") || k.startsWith("metric."));
    $("detail-facts").replaceChildren(...[...facts, ...configs].flatMap(k =>
      [el("dt", {textContent: k}), el("dd", {textContent: shown(row[k], k)})]));
    $("detail-error").hidden = !row.error;
    $("detail-error").textContent = data.error || row.error || "";
    const labels = {notebook: "notebook (HTML)", config: "config.json", log: "log.txt"};
    $("detail-links").replaceChildren(
      ...Object.entries(data.links).map(([key, href]) =>
        el("a", {href, textContent: labels[key] || key, target: "_blank", rel: "noopener", className: `link-${key}`})),
      ...data.upstream.map(key => el("a", {href: "#step=" + encodeURIComponent(key.split("/")[0]),
                                           textContent: `upstream ${key}`, className: "link-upstream"})));
    $("log-live").hidden = !data.running;
    const log = $("log"), atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = data.log === null ? "(no log.txt)" : data.log;
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  // ---- charts (static/charts.js draws them with plotly.js, both served by this app) ----------------
  // Redrawn when the index changes, but at most every 5 s (or 5 times as long as the last took):
  // the charts of a big step read all its rows.
  function loadCharts() {
    state.charts = "loading";
    const plotly = el("script", {src: "static/plotly.min.js"});
    plotly.onload = () => {
      const charts = el("script", {src: "static/charts.js"});
      charts.onload = () => { state.charts = true; drawCharts(true); };
      document.body.append(charts);
    };
    document.body.append(plotly);
  }
  async function drawCharts(now) {
    if (state.charts !== true || !state.step) return;
    if (!now && Date.now() < state.chartsDue) { state.chartsStale = true; return; }
    state.chartsStale = false;
    state.chartsDue = Infinity;  // one drawing at a time
    const started = Date.now();
    try {
      const data = await ask("charts", "api/charts?" + query({step: state.step}));
      if (!data || data.step !== state.step) return;
      $("charts").hidden = false;
      const body = $("charts-body");
      if (!body.firstChild) body.append(el("div"));
      await DuctaflowCharts.render(body.firstChild, data.charts);
    } finally {
      state.chartsPause = Math.max(5000, 5 * (Date.now() - started));
      state.chartsDue = Date.now() + state.chartsPause;
    }
  }

  // ---- live -------------------------------------------------------------------------------------
  let typing = null;
  $("where").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.where = $("where").value.trim(); state.offset = 0; loadRows(); }, 250);
  });
  $("status").addEventListener("change", () => { state.status = $("status").value; state.offset = 0; loadRows(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(state.offset - 50, 0); loadRows(); });
  $("next").addEventListener("click", () => { state.offset += 50; loadRows(); });

  async function tick() {
    try {
      const now = await ask("version", "api/version");
      if (now) {
        $("problem").hidden = !now.problem;
        $("problem").textContent = now.problem || "";
        $("live").classList.remove("stale");
        $("live").textContent = "live: updated " + new Date(now.refreshed_at * 1000).toLocaleTimeString();
        if (now.version !== state.version) {
          state.version = now.version;
          await loadSteps();
          await Promise.all([loadRows(), loadInstance(), drawCharts()]);
        } else if (state.running) {
          await loadInstance();  // the log grows without the index changing
        }
        if (state.chartsStale && Date.now() >= state.chartsDue) drawCharts();
      }
    } catch (error) {
      $("live").classList.add("stale");
      $("live").textContent = "not connected: " + error.message;
    }
    setTimeout(tick, 1000);
  }
  window.addEventListener("hashchange", () => {
    const wanted = decodeURIComponent((location.hash.match(/^#step=(.*)$/) || [])[1] || "");
    if (wanted && state.steps.some(s => s.step === wanted)) selectStep(wanted);
  });
  tick();
})();
