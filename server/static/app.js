// codeflow dashboard: vanilla JS, no build step. Speaks the /ws protocol (ARCHITECTURE.md
// "Interfaces"): subscribes to `runs`, `cache` and to `run:<id>` of the selected run, replays
// what it missed with `since` after a reconnect, and polls /api/cache-stats for the hit-rate
// chart.
"use strict";

const TERMINAL = new Set(["Completed", "Failed", "Crashed", "Cancelled", "Cached"]);
const WAITING = new Set(["Scheduled", "Late", "Pending"]);  // before the run's code starts
const HISTORY_MS = 24 * 3600 * 1000;  // runs of the last day are replayed on load
const CACHE_POLL_MS = 5000;
const CACHE_POINTS = 120;
const INVALIDATIONS_SHOWN = 12;
const HISTORY_POLL_MS = 15000;
const FAILED = new Set(["Failed", "Crashed"]);
const COLOURS = ["#3b6fe0", "#1f9d63", "#d98b12", "#7c5cd6", "#d64545", "#0e9aa7"];

const state = {
  token: readToken(),
  socket: null,
  retryMs: 500,
  lastId: {},            // room -> last event id received (the `since` of a reconnect)
  runs: new Map(),       // flow_run_id -> {id, flow, state, start, end, ts}
  selected: null,        // flow_run_id shown on the right
  pinned: false,         // the person clicked a run: stop following the newest
  run: null,             // details of the selected run
  cache: new Map(),      // namespace -> [{t, rate}]
  invalidations: [],     // newest first: cache.invalidated events of the last day
  history: null,         // /api/history: the last day's runs and index runs
  historyTimer: null,
  dirty: false,
};

function readToken() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("codeflow.token") || "";
  if (token) sessionStorage.setItem("codeflow.token", token);
  return token;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// ---- connection ------------------------------------------------------------------------

function connect() {
  if (!state.token) return setStatus("no token: open the URL printed by `codeflow serve`", "bad");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.socket = socket;
  setStatus("connecting…", "idle");
  socket.onopen = () => {
    state.retryMs = 500;
    setStatus("live", "ok");
    const since = `${Date.now() - HISTORY_MS}-0`;
    subscribe("runs", state.lastId.runs || since);
    subscribe("cache", state.lastId.cache || since);
    if (state.selected) subscribe(`run:${state.selected}`, state.lastId[`run:${state.selected}`] || runSince(state.selected));
  };
  socket.onmessage = (message) => onFrame(JSON.parse(message.data));
  socket.onclose = (close) => {
    if (state.socket !== socket) return;
    if (close.code === 4401 || close.code === 4403) return setStatus("token expired or refused", "bad");
    setStatus(`reconnecting in ${(state.retryMs / 1000).toFixed(1)} s…`, "bad");
    setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 10000);
  };
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function subscribe(room, since) {
  const message = { type: "subscribe", room };
  if (since) message.since = since;
  send(message);
}

function runSince(runId) {
  const run = state.runs.get(runId);
  const start = run && run.firstId ? run.firstId : `${Date.now() - HISTORY_MS}-0`;
  const [ms] = start.split("-");
  return `${Math.max(0, Number(ms) - 60000)}-0`;  // a minute before the run's first state
}

function setStatus(text, kind) {
  const node = document.getElementById("connection");
  node.textContent = text;
  node.className = `pill pill-${kind}`;
}

// ---- events ----------------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "error") return addActivity(Date.now() / 1000, `server: ${frame.code}: ${frame.message}`, true);
  if (frame.type !== "event") return;
  state.lastId[frame.room] = frame.id;
  const event = frame.event;
  if (frame.room === "runs") onRunState(frame.id, event);
  else if (frame.room === "cache") onInvalidation(event);
  else if (frame.room === `run:${state.selected}`) onRunEvent(event);
  scheduleRender();
}

function onRunState(id, event) {
  const runId = event.flow_run_id;
  const run = state.runs.get(runId) || { id: runId, firstId: id, start: null, end: null, waiting: false };
  run.flow = event.flow_name || run.flow || "flow";
  if (event.state === "Running" && (run.start === null || run.waiting)) {
    run.start = event.ts;
    run.waiting = false;
  }
  if (WAITING.has(event.state) && (run.start === null || run.waiting)) {
    run.start = event.expected_start || event.ts;  // a scheduled run shows when it should start
    run.waiting = true;
  }
  if (run.start === null) run.start = event.ts;
  if (event.ts >= (run.ts || 0)) {  // events may arrive out of order: the newest state wins
    run.state = event.state;
    run.ts = event.ts;
    run.end = TERMINAL.has(event.state) ? event.ts : null;
  }
  state.runs.set(runId, run);
  if (TERMINAL.has(event.state)) refreshHistorySoon();
  if (!state.pinned && newestRunId() === runId && state.selected !== runId) select(runId, false);
}

function newestRunId() {
  let best = null;
  for (const run of state.runs.values()) if (!run.waiting && (!best || run.start > best.start)) best = run;
  return best ? best.id : null;
}

function select(runId, pinned) {
  if (state.selected === runId) return;
  if (state.selected) send({ type: "unsubscribe", room: `run:${state.selected}` });
  delete state.lastId[`run:${state.selected}`];
  state.selected = runId;
  state.pinned = state.pinned || pinned;
  state.run = { tasks: new Map(), progress: new Map(), sandbox: [], activity: [] };
  subscribe(`run:${runId}`, runSince(runId));
  scheduleRender();
}

function onRunEvent(event) {
  const run = state.run;
  if (event.kind === "flow_run.state") {
    addActivity(event.ts, `flow ${event.state}${event.message ? `: ${event.message}` : ""}`, event.state === "Failed" || event.state === "Crashed");
    const listed = state.runs.get(event.flow_run_id);
    if (!listed || (listed.ts || 0) <= event.ts) onRunState(state.lastId[`run:${state.selected}`], event);
  } else if (event.kind === "task_run.state") {
    onTaskState(run, event);
  } else if (event.kind === "progress") {
    onProgress(run, event);
  } else if (event.kind === "sandbox.result") {
    run.sandbox.unshift(event);
    addActivity(event.ts, `sandbox ${event.status}`, event.status !== "ok");
  } else if (event.kind === "cache.invalidated") {
    addActivity(event.ts, invalidationText(event), false);
  } else if (event.kind === "index.summary") {
    addActivity(event.ts, `indexed ${event.files_total ?? "?"} files, ${event.chunks_total ?? "?"} chunks`, false);
  }
}

function onInvalidation(event) {
  state.invalidations.unshift(event);
  state.invalidations.length = Math.min(state.invalidations.length, INVALIDATIONS_SHOWN);
}

function invalidationText(event) {
  // `count` is how many values went for `key` and `pattern`; tags and dependencies (and event
  // rules, made of them) stale every value under them at once, whatever their number.
  const what = [].concat(event.targets || []).join(", ");
  const removed = ["key", "pattern"].includes(event.strategy) ? ` (${event.count ?? "?"} removed)` : "";
  return `${event.namespace || "cache"}: invalidated by ${event.strategy || "?"} ${what}${removed}`;
}

function onTaskState(run, event) {
  const key = event.task_run_id || event.task_name;
  const task = run.tasks.get(key) || { name: event.task_name || key, start: event.ts, end: null, retries: 0, state: null };
  if (event.state === "Retrying" || event.state === "AwaitingRetry") task.retries += 1;
  if (event.ts >= (task.ts || 0)) {
    task.state = event.state;
    task.ts = event.ts;
  }
  task.start = Math.min(task.start, event.ts);
  task.end = TERMINAL.has(task.state) ? Math.max(task.end || 0, event.ts) : null;
  run.tasks.set(key, task);
  const bad = ["Failed", "Crashed", "Retrying"].includes(event.state);
  addActivity(event.ts, `${task.name} ${event.state}${event.message ? `: ${event.message}` : ""}`, bad);
}

function onProgress(run, event) {
  const key = event.task_run_id || `${event.task_name || "flow"}:${event.unit || ""}`;
  const item = run.progress.get(key) || { name: event.task_name || event.unit || "progress", samples: [] };
  item.done = event.done;
  item.total = event.total;
  item.unit = event.unit || "";
  item.samples.push([event.ts, event.done]);
  while (item.samples.length > 2 && item.samples[0][0] < event.ts - 15) item.samples.shift();
  run.progress.set(key, item);
}

function addActivity(ts, text, error) {
  if (!state.run) return;
  state.run.activity.unshift({ ts, text, error });
  state.run.activity.length = Math.min(state.run.activity.length, 60);
  scheduleRender();
}

// ---- rendering -------------------------------------------------------------------------

function scheduleRender() {
  if (state.dirty) return;
  state.dirty = true;
  requestAnimationFrame(() => { state.dirty = false; render(); });
}

function render() {
  renderRuns();
  renderRun();
  renderCache();
  renderHistory();
}

function renderRuns() {
  const rows = [...state.runs.values()].sort((a, b) => b.start - a.start).slice(0, 50).map((run) => {
    const row = el("tr", { "data-run-id": run.id, class: run.id === state.selected ? "selected" : "" },
      el("td", {}, badge(run.state)),
      el("td", {}, el("div", { text: run.flow }), el("div", { class: "run-id", text: run.id })),
      el("td", { class: "num", text: clock(run.start) }),
      el("td", { class: "num", text: run.waiting ? "waiting" : duration((run.end || Date.now() / 1000) - run.start) }));
    row.addEventListener("click", () => select(run.id, true));
    return row;
  });
  document.getElementById("runs").replaceChildren(...rows);
  document.getElementById("runs-empty").hidden = rows.length > 0;
}

function renderRun() {
  const run = state.runs.get(state.selected);
  document.getElementById("run-title").textContent = run ? run.flow : "No run selected";
  document.getElementById("run-meta").textContent = run ? `${run.id} · started ${clock(run.start)} · ${duration((run.end || Date.now() / 1000) - run.start)}` : "";
  const stateNode = document.getElementById("run-state");
  stateNode.textContent = run ? run.state : "";
  stateNode.className = `badge state-${run ? run.state : ""}`;
  if (!state.run) return;
  renderProgress(state.run);
  renderTimeline(state.run, run);
  renderSandbox(state.run);
  document.getElementById("activity").replaceChildren(...state.run.activity.map((item) =>
    el("li", {}, el("time", { text: clock(item.ts) }), el("span", { class: item.error ? "error" : "", text: item.text }))));
}

function renderProgress(run) {
  const rows = [...run.progress.entries()].map(([key, item]) => {
    const pct = item.total ? Math.min(100, (100 * item.done) / item.total) : 0;
    const bar = el("div", { class: `bar${pct >= 100 ? " done" : ""}` }, el("span"));
    bar.firstChild.style.width = `${pct.toFixed(1)}%`;
    return el("div", { class: "progress-row", "data-progress": key },
      el("div", { class: "progress-label" },
        el("span", { text: item.name }),
        el("span", { class: "num progress-count", text: `${item.done} / ${item.total ?? "?"} ${item.unit}` })),
      bar,
      el("div", { class: "muted num progress-rate", text: rateText(item) }));
  });
  const node = document.getElementById("progress");
  if (rows.length) node.replaceChildren(...rows);
  else node.replaceChildren(el("p", { class: "empty", text: "No progress reported yet." }));
}

function rateText(item) {
  const [first, last] = [item.samples[0], item.samples[item.samples.length - 1]];
  if (!first || last[0] - first[0] < 0.5) return "";
  const rate = (last[1] - first[1]) / (last[0] - first[0]);
  if (rate <= 0) return "";
  const left = item.total ? (item.total - item.done) / rate : null;
  return `${rate.toFixed(rate < 10 ? 1 : 0)} ${item.unit}/s${left !== null && left > 0 ? ` · ETA ${duration(left)}` : ""}`;
}

function renderTimeline(run, flowRun) {
  const tasks = [...run.tasks.values()].sort((a, b) => a.start - b.start);
  const node = document.getElementById("timeline");
  if (!tasks.length) return node.replaceChildren(el("p", { class: "empty", text: "No task events yet." }));
  const t0 = Math.min(flowRun && flowRun.start ? flowRun.start : Infinity, ...tasks.map((t) => t.start));
  const t1 = Math.max(Date.now() / 1000, ...tasks.map((t) => t.end || 0));
  const span = Math.max(t1 - t0, 0.001);
  node.replaceChildren(...tasks.map((task) => {
    const bar = el("div", { class: `task-bar state-${task.state}` });
    bar.style.left = `${(100 * (task.start - t0)) / span}%`;
    bar.style.width = `${(100 * ((task.end || Date.now() / 1000) - task.start)) / span}%`;
    const name = el("div", { class: "task-name", title: task.name, text: task.name });
    if (task.retries) name.append(el("span", { class: "retries", text: `↻${task.retries}` }));
    return el("div", { class: "task-row", "data-task": task.name }, name,
      el("div", { class: "task-track" }, bar), el("div", { class: "task-state" }, badge(task.state)));
  }));
}

function renderSandbox(run) {
  document.getElementById("sandbox").replaceChildren(...run.sandbox.slice(0, 20).map((result) =>
    el("tr", {},
      el("td", {}, badge(result.status === "ok" ? "Completed" : "Failed", result.status)),
      el("td", { class: "num", text: String(result.exit_code ?? "–") }),
      el("td", { class: "num", text: result.duration_s !== undefined ? `${Number(result.duration_s).toFixed(2)} s` : "–" }),
      el("td", { text: result.cached ? "yes" : "no" }),
      el("td", { class: "num", text: clock(result.ts) }))));
  document.getElementById("sandbox-empty").hidden = run.sandbox.length > 0;
}

function badge(stateName, label) {
  return el("span", { class: `badge state-${stateName}`, text: label || stateName || "" });
}

// ---- cache hit rate --------------------------------------------------------------------

async function pollCache() {
  try {
    const reply = await fetch(`/api/cache-stats?token=${encodeURIComponent(state.token)}`, { cache: "no-store" });
    if (reply.ok) {
      const body = await reply.json();
      for (const [namespace, stats] of Object.entries(body.namespaces)) {
        const series = state.cache.get(namespace) || [];
        series.push({ t: body.ts, rate: stats.hit_rate, hits: stats.hits, misses: stats.misses });
        if (series.length > CACHE_POINTS) series.shift();
        state.cache.set(namespace, series);
      }
      scheduleRender();
    }
  } finally {
    setTimeout(pollCache, CACHE_POLL_MS);
  }
}

function renderCache() {
  const chart = document.getElementById("cache-chart");
  const [w, h] = [320, 160];
  const nodes = [0, 0.5, 1].flatMap((y) => [
    svg("line", { class: "grid", x1: 0, x2: w, y1: h - y * (h - 10) - 5, y2: h - y * (h - 10) - 5 }),
  ]);
  const all = [...state.cache.values()].flat();
  const tMin = Math.min(...all.map((p) => p.t));
  const tMax = Math.max(...all.map((p) => p.t), tMin + 1);
  const legend = [];
  [...state.cache.entries()].forEach(([namespace, series], i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = series.map((p) => `${(w * (p.t - tMin)) / (tMax - tMin)},${h - p.rate * (h - 10) - 5}`);
    if (points.length === 1) points.push(`${w},${points[0].split(",")[1]}`);
    nodes.push(svg("polyline", { points: points.join(" "), stroke: colour }));
    const last = series[series.length - 1];
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    legend.push(el("li", { "data-namespace": namespace },
      el("span", {}, swatch, namespace),
      el("span", { class: "num", text: `${(100 * last.rate).toFixed(1)}% of ${last.hits + last.misses}` })));
  });
  chart.replaceChildren(...nodes);
  document.getElementById("cache-legend").replaceChildren(...legend);
  document.getElementById("cache-empty").hidden = legend.length > 0;
  renderInvalidations();
}

function renderInvalidations() {
  const items = state.invalidations.map((event) => el("li", { "data-namespace": event.namespace || "" },
    el("time", { text: clock(event.ts) }),
    el("span", { text: `${invalidationText(event)}${event.repo_id ? ` · repo ${event.repo_id}` : ""}` })));
  document.getElementById("invalidations").replaceChildren(...items);
  document.getElementById("invalidations-empty").hidden = items.length > 0;
}

// ---- history -----------------------------------------------------------------------------

async function pollHistory() {
  clearTimeout(state.historyTimer);
  try {
    const reply = await fetch(`/api/history?token=${encodeURIComponent(state.token)}`, { cache: "no-store" });
    if (reply.ok) {
      state.history = await reply.json();
      scheduleRender();
    }
  } finally {
    state.historyTimer = setTimeout(pollHistory, HISTORY_POLL_MS);
  }
}

function refreshHistorySoon() {  // a run just ended: its duration and summary are in
  clearTimeout(state.historyTimer);
  state.historyTimer = setTimeout(pollHistory, 1000);
}

function renderHistory() {
  const history = state.history;
  if (!history) return;
  const runs = history.runs.filter((r) => r.duration_s !== null && r.start !== null);
  const hits = history.index_runs.filter((r) => r.embedding_hit_rate !== null);
  plot("history-durations", runs.map((r) => ({ t: r.start, v: r.duration_s, bad: FAILED.has(r.state) })), null);
  plot("history-hits", hits.map((r) => ({ t: r.ts, v: r.embedding_hit_rate })), 1);
  const sorted = runs.map((r) => r.duration_s).sort((a, b) => a - b);
  const failed = runs.filter((r) => FAILED.has(r.state)).length;
  document.getElementById("history-runs").textContent = runs.length
    ? `${plural(runs.length, "run")} · p50 ${duration(sorted[Math.floor((sorted.length - 1) / 2)])} · ${failed} failed`
    : "No finished runs in the last day.";
  const last = hits[hits.length - 1];
  document.getElementById("history-hit-rate").textContent = last
    ? `last index run ${(100 * last.embedding_hit_rate).toFixed(1)}% · ${plural(hits.length, "run")}`
    : "No index runs in the last day.";
}

function plot(id, points, yMax) {  // points over time: dots, joined by a line when yMax is set
  const node = document.getElementById(id);
  const [w, h] = [320, 110];
  const top = yMax || Math.max(...points.map((p) => p.v), 0.001);
  const tMin = Math.min(...points.map((p) => p.t));
  const tMax = Math.max(...points.map((p) => p.t), tMin + 1);
  const xy = points.map((p) => [points.length === 1 ? w / 2 : (w - 8) * (p.t - tMin) / (tMax - tMin) + 4, h - 4 - (h - 8) * Math.min(p.v / top, 1), p]);
  const nodes = [svg("line", { class: "grid", x1: 0, x2: w, y1: h - 4, y2: h - 4 })];
  if (yMax && xy.length > 1) nodes.push(svg("polyline", { points: xy.map(([x, y]) => `${x},${y}`).join(" "), stroke: COLOURS[2] }));
  for (const [x, y, p] of xy) nodes.push(svg("circle", { cx: x, cy: y, r: 2.5, class: p.bad ? "dot bad" : "dot" }));
  node.replaceChildren(...nodes);
  node.dataset.points = String(points.length);
}

// ---- helpers -----------------------------------------------------------------------------

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function clock(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString([], { hour12: false }) : "–";
}

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

setInterval(() => { if ([...state.runs.values()].some((r) => !r.end)) scheduleRender(); }, 1000);
connect();
pollCache();
pollHistory();
render();
