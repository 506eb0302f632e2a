// The operator dashboard: one live stream (GET /api/v1/admin/dashboard/stream, Server-Sent
// Events read with fetch so the admin token travels in a header, never in a URL), plain SVG
// charts, and buttons that call the existing admin endpoints after a confirmation.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "ais.admin-token";
const WINDOW_SECONDS = 15 * 60;

// ----- token: from ?token= once (then out of the address bar), or pasted -----
(function takeTokenFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("token")) return;
  sessionStorage.setItem(TOKEN_KEY, params.get("token").trim());
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
})();

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

// ----- small DOM helpers (text only: data from the server is never parsed as HTML) -----
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}
const num = (n) => (n ?? 0).toLocaleString("en-US");
const ms = (v) => v == null ? "-" : (v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US")) + " ms";
const pct = (v) => v == null ? "-" : (v * 100).toFixed(1) + " %";
const usd = (micros) => micros == null ? "-" : "$" + (micros / 1e6).toFixed(micros < 1e6 ? 4 : 2);
const time = (iso) => iso ? new Date(iso).toLocaleString() : "-";

// ----- admin API calls -----
async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: Object.assign({ "Authorization": "Bearer " + token() },
      body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((data.error && data.error.message) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// Asks first; then calls, reports, and refreshes what the action changed.
async function act(question, method, path, body, done) {
  if (!window.confirm(question)) return;
  try {
    const result = await api(method, path, body);
    toast("Done: " + JSON.stringify(result));
    if (done) await done(result);
  } catch (e) {
    toast("Failed: " + e.message);
  }
  loadAudit();
}

// ----- the live stream -----
const view = { points: [], state: null, deadLetters: null, stream: null };

function setConn(text, cls) { const c = $("conn"); c.textContent = text; c.className = "conn " + (cls || ""); }

function showSignin(message) {
  document.body.dataset.state = message ? "refused" : "signed-out";
  $("signin").hidden = false;
  $("main").hidden = true;
  $("signout").hidden = true;
  $("signin-msg").textContent = message || "";
  $("token").value = "";
  setConn("not connected");
}

function refuse(status, message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (view.stream) view.stream.abort();
  showSignin(status === 403
    ? "This token is not an admin token: the dashboard needs a token with the admin role."
    : "The token was refused (" + status + "): " + message);
}

async function connect() {
  if (!token()) { showSignin(""); return; }
  if (view.stream) view.stream.abort();
  const controller = new AbortController();
  view.stream = controller;
  setConn("connecting…");
  let resp;
  try {
    resp = await fetch("/api/v1/admin/dashboard/stream", {
      headers: { "Authorization": "Bearer " + token(), "Accept": "text/event-stream" },
      signal: controller.signal,
    });
  } catch (e) {
    if (controller.signal.aborted) return;
    return retry(controller);
  }
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    return refuse(resp.status, (body.error && body.error.message) || resp.statusText);
  }
  if (!resp.ok || !resp.body) return retry(controller);
  document.body.dataset.state = "live";
  $("signin").hidden = true;
  $("main").hidden = false;
  $("signout").hidden = false;
  setConn("live", "live");
  loadDeadLetters();
  loadAudit();
  try {
    await readEvents(resp.body, onEvent);
  } catch (e) { /* dropped: reconnect below */ }
  if (!controller.signal.aborted) retry(controller);
}

function retry(controller) {
  if (controller.signal.aborted) return;
  setConn("reconnecting…", "down");
  setTimeout(() => { if (!controller.signal.aborted) connect(); }, 2000);
}

// Reads Server-Sent Events from a fetch body: blocks end at a blank line.
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) handle(event, data.join("\n"));
    }
  }
}

function onEvent(event, data) {
  if (event === "history") {
    const h = JSON.parse(data);
    view.points = h.points || [];
    if (h.latest) applyFrame(h.latest); else render();
  } else if (event === "tick") {
    applyFrame(JSON.parse(data));
  } else if (event === "error") {
    setConn("closed: " + data, "down");
    if (data.includes("expired")) refuse(401, data);
  }
}

function applyFrame(frame) {
  const last = view.points[view.points.length - 1];
  if (frame.point && (!last || frame.point.at > last.at)) view.points.push(frame.point);
  const oldest = (frame.point ? frame.point.at : 0) - WINDOW_SECONDS;
  while (view.points.length && view.points[0].at <= oldest) view.points.shift();
  const before = view.state && view.state.dead_letters;
  view.state = frame.state;
  render();
  if (view.state && before != null && view.state.dead_letters !== before) loadDeadLetters();
}

// ----- rendering -----
// A point's series is [submitted, completed, failed, retried, p50, p95, p99].
function render() {
  const key = $("series").value || "all";
  const totals = [0, 0, 0];
  for (const p of view.points) {
    const s = p.series[key];
    if (s) { totals[0] += s[0]; totals[1] += s[1]; totals[2] += s[2]; }
  }
  $("total-submitted").textContent = num(totals[0]);
  $("total-completed").textContent = num(totals[1]);
  $("total-failed").textContent = num(totals[2]);
  const recent = view.points.slice(-10);
  const rate = (i) => (recent.reduce((a, p) => a + ((p.series[key] || [])[i] || 0), 0) / Math.max(recent.length, 1)).toFixed(1) + "/s";
  $("rate-submitted").textContent = rate(0);
  $("rate-completed").textContent = rate(1);
  $("rate-failed").textContent = rate(2);
  updateSeriesChoices();
  drawChart($("chart-throughput"), key, [[0, "submitted"], [1, "completed"], [2, "failed"]]);
  drawChart($("chart-latency"), key, [[4, "p50"], [5, "p95"], [6, "p99"]]);
  if (view.state) renderState(view.state);
}

function updateSeriesChoices() {
  const select = $("series");
  const known = new Set([...select.options].map((o) => o.value));
  const keys = new Set();
  for (const p of view.points) for (const k of Object.keys(p.series)) keys.add(k);
  for (const k of [...keys].sort()) {
    if (!known.has(k)) select.append(el("option", { value: k }, k.replace(/:/g, " ").replace("/", ", ")));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

function drawChart(target, key, lines) {
  const W = 600, H = 180, top = 8, bottom = 16, left = 36;
  const now = view.points.length ? view.points[view.points.length - 1].at : Math.floor(Date.now() / 1000);
  const x = (at) => left + (W - left) * (1 - (now - at) / WINDOW_SECONDS);
  let max = 0;
  for (const p of view.points) for (const [i] of lines) max = Math.max(max, (p.series[key] || [])[i] || 0);
  max = niceMax(max);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    nodes.push(svg("line", { class: "grid", x1: left, x2: W, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: 2, y: y(v) + 3 });
    label.textContent = v >= 100 ? Math.round(v) : +v.toFixed(1);
    nodes.push(label);
  }
  for (const [m, text] of [[15, "-15 min"], [10, "-10"], [5, "-5"], [0, "now"]]) {
    const t = svg("text", { x: Math.min(x(now - m * 60), W - 24), y: H - 3 });
    t.textContent = text;
    nodes.push(t);
  }
  for (const [i, cls] of lines) {
    const pts = view.points
      .filter((p) => p.series[key] && p.series[key][i] != null || i < 4)
      .map((p) => x(p.at).toFixed(1) + "," + y((p.series[key] || [])[i] || 0).toFixed(1));
    if (pts.length) nodes.push(svg("polyline", { class: cls, points: pts.join(" ") }));
  }
  target.replaceChildren(...nodes);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function renderState(s) {
  $("dead-letter-count").textContent = s.dead_letters == null ? "-" : num(s.dead_letters);
  $("month-spend").textContent = usd(s.month_spend_micros);
  $("month").textContent = s.month;
  fill($("queues").tBodies[0], s.queues.map((q) => {
    const ready = Object.fromEntries(q.ready);
    const state = q.paused ? "paused" : "running";
    const button = q.paused
      ? el("button", { onclick: () => act(`Resume queue ${q.name}?`, "POST", `/api/v1/admin/queues/${encodeURIComponent(q.name)}/resume`) }, "Resume")
      : el("button", { onclick: () => act(`Pause queue ${q.name}? Its tasks wait until it is resumed.`, "POST", `/api/v1/admin/queues/${encodeURIComponent(q.name)}/pause`) }, "Pause");
    return el("tr", { "data-queue": q.name },
      el("td", {}, q.name), el("td", {}, q.kind), el("td", { class: "state-" + state }, state),
      el("td", { class: "num" }, num(ready.critical)), el("td", { class: "num" }, num(ready.high)),
      el("td", { class: "num" }, num(ready.normal)), el("td", { class: "num" }, num(ready.low)),
      el("td", { class: "num" }, num(q.delayed)), el("td", {}, button));
  }));
  fill($("instances").tBodies[0], s.instances.map((i) => el("tr", {},
    el("td", {}, i.id + (i.this ? " (this)" : "")), el("td", {}, i.host),
    el("td", { class: "state-" + i.status }, i.status),
    el("td", { class: "num" }, i.pool ? num(i.pool.slots) : "-"),
    el("td", { class: "num" }, i.pool ? num(i.pool.limit) + (i.pool.adaptive ? " (adaptive)" : "") : "-"),
    el("td", { class: "num" }, i.pool ? num(i.pool.busy) : "-"),
    el("td", {}, time(i.last_heartbeat)))));
  const none = el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No AI provider configured (echo tasks need none)."));
  fill($("providers").tBodies[0], s.providers.length ? s.providers.map((p) => el("tr", { "data-provider": p.name },
    el("td", {}, p.name), el("td", { class: "state-" + (p.breaker || "unknown") }, (p.breaker || "unknown") + (p.failures ? ` (${p.failures} failures)` : "")),
    el("td", { class: "num" }, num(p.calls_1m)), el("td", { class: "num" }, pct(p.success_rate_1m)),
    el("td", { class: "num" }, ms(p.avg_latency_ms_1m)), el("td", {}, p.rate_limit || "none"),
    el("td", { class: "num" }, pct(p.headroom)), el("td", { class: "num" }, usd(p.spend_15m_micros)),
    el("td", {}, el("button", { onclick: () => act(`Reset the circuit breaker of ${p.name}? Calls to it resume at once on every instance.`, "POST", `/api/v1/admin/providers/${encodeURIComponent(p.name)}/reset`) }, "Reset breaker")))) : [none]);
}

// ----- dead letters -----
let deadLetters = [];

async function loadDeadLetters() {
  const q = new URLSearchParams({ page_size: "100" });
  if ($("dl-type").value.trim()) q.set("type", $("dl-type").value.trim());
  if ($("dl-class").value) q.set("error_class", $("dl-class").value);
  try {
    deadLetters = (await api("GET", "/api/v1/admin/dead-letters?" + q)).dead_letters || [];
  } catch (e) {
    toast("Dead letters: " + e.message);
    deadLetters = [];
  }
  renderDeadLetters();
}

function renderDeadLetters() {
  const needle = $("dl-search").value.trim().toLowerCase();
  const shown = deadLetters.filter((d) => !needle || [d.task_id, d.user_id, d.type, d.error && d.error.message]
    .some((f) => (f || "").toLowerCase().includes(needle)));
  $("dl-empty").hidden = shown.length > 0;
  $("dl-all").checked = false;
  fill($("dead-letters").tBodies[0], shown.map((d) => el("tr", { "data-task": d.task_id },
    el("td", {}, el("input", { type: "checkbox", class: "dl-pick", value: d.task_id, "aria-label": "select " + d.task_id })),
    el("td", {}, el("code", {}, d.task_id)), el("td", {}, d.type),
    el("td", {}, d.error ? d.error.class : "-"), el("td", {}, d.error ? d.error.message : "-"),
    el("td", {}, d.user_id), el("td", {}, time(d.completed_at)),
    el("td", {},
      el("button", { class: "dl-requeue", onclick: () => act(`Requeue task ${d.task_id}? It runs again with its attempts reset.`, "POST", "/api/v1/admin/dead-letters/requeue", { task_ids: [d.task_id] }, loadDeadLetters) }, "Requeue"),
      " ",
      el("button", { onclick: () => showHistory(d) }, "History")))));
}

function picked() { return [...document.querySelectorAll(".dl-pick:checked")].map((c) => c.value); }

async function showHistory(d) {
  const box = $("dl-history");
  box.hidden = false;
  const attempts = el("ol", {}, ...(d.history || []).map((h) =>
    el("li", {}, `${time(h.at)}: ${h.type}`, h.error ? ` (${h.error.class}: ${h.error.message})` : "")));
  const calls = el("ul", {}, el("li", { class: "muted" }, "loading provider calls…"));
  box.replaceChildren(el("h3", {}, "Task ", el("code", {}, d.task_id)),
    el("p", {}, `type ${d.type}, queue ${d.queue}, user ${d.user_id}, ${d.attempts} attempts, created ${time(d.created_at)}`),
    el("h4", {}, "Failed attempts"), attempts, el("h4", {}, "Provider calls"), calls,
    el("button", { onclick: () => { box.hidden = true; } }, "Close"));
  try {
    const r = await api("GET", `/api/v1/tasks/${encodeURIComponent(d.task_id)}/attempts`);
    calls.replaceChildren(...(r.attempts.length ? r.attempts.map((a) =>
      el("li", {}, `${time(a.at)}: ${a.provider} (${a.model}) ${a.outcome}, ${a.latency_ms} ms`, a.error ? `: ${a.error}` : "")) : [el("li", { class: "muted" }, "none (answered without a provider)")]));
  } catch (e) {
    calls.replaceChildren(el("li", { class: "error" }, e.message));
  }
}

// ----- audit log -----
async function loadAudit() {
  const status = $("audit-status");
  try {
    const r = await api("GET", "/api/v1/admin/audit?limit=50");
    status.textContent = r.entries.length ? "" : "No admin actions recorded yet.";
    fill($("audit").tBodies[0], r.entries.map((e) => el("tr", {},
      el("td", {}, time(e.at)), el("td", {}, e.actor), el("td", {}, e.action), el("td", {}, e.target),
      el("td", {}, typeof e.result === "string" ? e.result : JSON.stringify(e.result)), el("td", {}, el("code", {}, e.request_id || "")))));
  } catch (e) {
    status.textContent = e.status === 404 ? "audit log unavailable" : "audit log: " + e.message;
    fill($("audit").tBodies[0], []);
  }
}

// ----- wiring -----
$("signin-button").addEventListener("click", () => {
  const t = $("token").value.trim();
  if (!t) { $("signin-msg").textContent = "Paste a token first."; return; }
  sessionStorage.setItem(TOKEN_KEY, t);
  connect();
});
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (view.stream) view.stream.abort();
  showSignin("");
});
$("series").addEventListener("change", render);
$("dl-reload").addEventListener("click", loadDeadLetters);
$("dl-search").addEventListener("input", renderDeadLetters);
$("dl-all").addEventListener("change", (e) => {
  for (const c of document.querySelectorAll(".dl-pick")) c.checked = e.target.checked;
});
$("dl-requeue-selected").addEventListener("click", () => {
  const ids = picked();
  if (!ids.length) return toast("Select dead letters first.");
  act(`Requeue ${ids.length} selected task(s)?`, "POST", "/api/v1/admin/dead-letters/requeue", { task_ids: ids }, loadDeadLetters);
});
$("dl-purge-selected").addEventListener("click", () => {
  const ids = picked();
  if (!ids.length) return toast("Select dead letters first.");
  act(`Purge ${ids.length} selected task(s)? They and their events are deleted for good.`, "POST", "/api/v1/admin/dead-letters/purge", { task_ids: ids }, loadDeadLetters);
});
$("audit-reload").addEventListener("click", loadAudit);
connect();
