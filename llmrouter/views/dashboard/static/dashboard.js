// The worker's dashboard: polls /dashboard/data/ (and /alerts/ when the worker has it) and draws uPlot charts.
// A fetch that fails turns the header (and the alerts panel, for /alerts/) red with what went wrong.
//
// Everything it shows is computed on the worker (llmrouter/views/dashboard/series.py); the page only keeps the
// points it was sent and draws them. window.dashboard is its state, for a person in the console and for the
// browser test, which waits on window.dashboard.filled (points with data, per chart) rather than on a clock.
"use strict";

const KEEP_POINTS = 600;
const LATENCY_PATHS = ["cache", "local", "cloud"];
const PALETTE = ["#2f6fde", "#e07b00", "#1b9e5a", "#b3261e", "#7b3fc4", "#00838f", "#c2185b", "#5b6475"];
const BREAKER_LEVEL = { closed: 0, half_open: 1, open: 2 };

const dashboard = (window.dashboard = {
  polls: 0, points: [], breakers: {}, spend: null, alerts: { source: null, firing: [], note: "", error: null },
  filled: {}, error: null, chartsAvailable: typeof window.uPlot === "function",
});
const charts = {};

function el(id) { return document.getElementById(id); }
function fmt(value, digits = 1, unit = "") { return value == null ? "–" : `${Number(value).toFixed(digits)}${unit}`; }
function last(list) { return list.length ? list[list.length - 1] : null; }

// One series per name; the chart is made again when the names change (uPlot's series are fixed at creation).
function draw(id, names, columns, opts = {}) {
  const count = dashboard.points.filter((_, i) => columns.some((c) => c[i] != null)).length;
  dashboard.filled[id] = count;
  const box = el(`chart-${id}`);
  box.dataset.points = String(count);
  if (!dashboard.chartsAvailable) return;
  const times = dashboard.points.map((p) => p.t);
  const data = [times, ...columns];
  const key = names.join("|");
  let chart = charts[id];
  if (!chart || chart.key !== key) {
    if (chart) chart.plot.destroy();
    box.textContent = "";
    const series = [{}, ...names.map((name, i) => ({
      label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
      ...(opts.stepped ? { paths: window.uPlot.paths.stepped({ align: 1 }) } : {}),
    }))];
    const plot = new window.uPlot({
      width: Math.max(300, box.clientWidth), height: 200, series,
      scales: { x: { time: true }, ...(opts.range ? { y: { range: opts.range } } : {}) },
      axes: [{}, { size: 50 }], legend: { live: false },
    }, data, box);
    chart = charts[id] = { plot, key };
  } else {
    chart.plot.setData(data);
  }
}

function column(get) { return dashboard.points.map((p) => { const v = get(p); return v == null ? null : v; }); }

function render() {
  const points = dashboard.points;
  const paths = [...new Set(points.flatMap((p) => Object.keys(p.throughput_by_path_per_s || {})))].sort();
  draw("throughput", ["all", ...paths, "errors"], [
    column((p) => p.throughput_per_s),
    ...paths.map((path) => column((p) => (p.throughput_by_path_per_s || {})[path] ?? 0)),
    column((p) => p.errors_per_s),
  ]);
  draw("cache_hit_rate", ["hit rate %"], [column((p) => (p.cache_hit_rate == null ? null : p.cache_hit_rate * 100))],
       { range: [0, 100] });
  for (const path of LATENCY_PATHS) {
    draw(`latency_${path}`, ["p50", "p95", "p99"],
         ["p50", "p95", "p99"].map((q) => column((p) => ((p.latency_ms || {})[path] || {})[q])));
  }
  draw("spend", ["USD"], [column((p) => p.spend_usd)]);
  // providers never called have no breaker here yet: no line for them
  const providers = [...new Set(points.flatMap((p) => Object.entries(p.breakers || {})
    .filter(([, state]) => state.here != null).map(([name]) => name)))].sort();
  draw("breakers", providers, providers.map((name) => column((p) => {
    const state = ((p.breakers || {})[name] || {}).here;
    return state in BREAKER_LEVEL ? BREAKER_LEVEL[state] : null;
  })), { stepped: true, range: [0, 2.2] });
  renderTiles(last(points));
  renderTables(last(points));
}

function renderTiles(point) {
  if (!point) return;
  const all = Object.values(point.latency_ms || {}).map((q) => q.p95).filter((v) => v != null);
  el("tile-throughput").textContent = fmt(point.throughput_per_s, 1, " req/s");
  el("tile-p95").textContent = all.length ? fmt(Math.max(...all), 0, " ms") : "–";
  el("tile-cache").textContent = point.cache_hit_rate == null ? "–" : fmt(point.cache_hit_rate * 100, 0, " %");
  el("tile-errors").textContent = point.error_rate == null ? "–" : fmt(point.error_rate * 100, 1, " %");
  el("tile-spend").textContent = fmt(point.spend_usd, 4, " $");
  el("tile-dlq").textContent = fmt(point.dead_letters, 0);
}

function badge(state) {
  const span = document.createElement("span");
  span.className = `badge ${state || "unknown"}`;
  span.textContent = state || "–";
  return span;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

function renderTables(point) {
  const latency = el("latency-table").querySelector("tbody");
  latency.textContent = "";
  if (point) {
    for (const [path, q] of Object.entries(point.latency_ms || {}).sort()) {
      const rates = point.throughput_by_path_per_s || {};
      const levels = ["l1", "l2", "l3"].filter((level) => level in rates);
      const rate = path === "cache" && levels.length ? levels.reduce((sum, level) => sum + rates[level], 0) : rates[path];
      latency.appendChild(row([path, fmt(q.p50), fmt(q.p95), fmt(q.p99), rate == null ? "–" : fmt(rate)]));
    }
  }
  const breakers = el("breaker-table").querySelector("tbody");
  breakers.textContent = "";
  const spent = (dashboard.spend || {}).by_provider_usd || {};
  for (const [name, state] of Object.entries(dashboard.breakers).sort()) {
    breakers.appendChild(row([name, badge(state.here), badge(state.group), fmt(spent[name], 4)]));
  }
  const budgets = el("budgets");
  budgets.textContent = "";
  for (const [name, total] of Object.entries((dashboard.spend || {}).budgets || {})) {
    const p = document.createElement("p");
    p.textContent = `${name}: ${fmt(total.spent_usd, 4)} of ${fmt(total.budget_usd, 2)} USD spent`;
    budgets.appendChild(p);
  }
  for (const hint of (dashboard.spend || {}).hints || []) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = hint;
    budgets.appendChild(p);
  }
}

// /alerts/ belongs to the alerting stage; read whatever shape it has. A fetch that fails is shown as a failure,
// never as "none": an empty panel must mean that nothing fires.
function firingAlerts(body) {
  const list = Array.isArray(body) ? body : body.firing || body.alerts || [];
  return list.filter((a) => a && (a.state == null || a.state === "firing"));
}

// Throws, with what went wrong, unless the worker answered 2xx with JSON.
async function fetchJson(url) {
  const path = url.split("?")[0];
  let reply;
  try {
    reply = await fetch(url, { cache: "no-store" });
  } catch (error) {
    throw new Error(`could not reach ${path}: ${error.message || error}`);
  }
  if (!reply.ok) throw new Error(`${path} answered ${reply.status}`);
  try {
    return await reply.json();
  } catch (error) {
    throw new Error(`${path} answered something that is not JSON`);
  }
}

// The worker says where its alerts are (null: its windows are off, so it has no /alerts/ view).
async function pollAlerts(url) {
  if (url == null) {
    dashboard.alerts = { source: null, firing: [], note: "alerts are off on this worker (windows.enabled)", error: null };
    return;
  }
  try {
    dashboard.alerts = { source: url, firing: firingAlerts(await fetchJson(url)), note: "", error: null };
  } catch (error) {
    dashboard.alerts = { source: url, firing: [], note: "", error: error.message };
  }
}

function renderAlerts() {
  const box = el("alerts");
  box.textContent = "";
  el("alerts-panel").classList.toggle("failed", dashboard.alerts.error != null);
  if (dashboard.alerts.error != null) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `unknown: ${dashboard.alerts.error}`;
    box.appendChild(p);
    return;
  }
  for (const alert of dashboard.alerts.firing) {
    const div = document.createElement("div");
    div.className = "alert";
    const subject = alert.subject ? ` (${alert.subject})` : "";
    const value = alert.value == null ? "" : `: ${fmt(alert.value, 3)}`;
    const threshold = alert.threshold == null ? "" : ` over ${fmt(alert.threshold, 3)}`;
    div.textContent = `${alert.rule || alert.name || "alert"}${subject}${value}${threshold} ${alert.message || ""}`;
    box.appendChild(div);
  }
  if (!dashboard.alerts.firing.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = dashboard.alerts.note ? `none (${dashboard.alerts.note})` : "none";
    box.appendChild(p);
  }
}

function renderStatus(data) {
  const status = el("status");
  const failed = dashboard.error != null || dashboard.alerts.error != null;
  status.className = failed ? "status error" : "status";
  if (dashboard.error != null) {
    status.textContent = `cannot reach the worker: ${dashboard.error}`;
  } else {
    const updated = `updated ${new Date(data.now_s * 1000).toLocaleTimeString()}`;
    status.textContent = failed ? `${updated}; ${dashboard.alerts.error}` : updated;
  }
}

// Reads the next points and draws them; returns what the worker sent (throws what went wrong).
async function pollData() {
  const since = dashboard.points.length ? last(dashboard.points).t : "-inf";
  const data = await fetchJson(`/dashboard/data/?since=${since}`);
  dashboard.points = dashboard.points.concat(data.points).slice(-KEEP_POINTS);
  dashboard.breakers = data.breakers;
  dashboard.spend = data.spend;
  dashboard.polls += 1;
  dashboard.error = null;
  el("worker").textContent = `worker ${data.worker}`;
  if (!dashboard.chartsAvailable || !data.charts_installed) {
    const notice = el("notice");
    notice.hidden = false;
    notice.textContent = "The chart library is not installed on this worker (run infra/bootstrap.sh, or set "
      + "LLMROUTER_WEB_MODULES): figures are shown as text only.";
  }
  render();
  return data;
}

async function poll() {
  let data = null;
  try {
    data = await pollData();
  } catch (error) {
    dashboard.error = String(error.message || error);
  }
  if (data) {
    await pollAlerts(data.alerts_url);
  } else {  // the alerts live on the same worker: unknown now, not "none"
    dashboard.alerts = { ...dashboard.alerts, firing: [], error: `not read (${dashboard.error})` };
  }
  renderAlerts();
  renderStatus(data);
  setTimeout(poll, data ? Math.max(500, (data.interval_s || 1) * 1000) : 3000);
}

poll();
