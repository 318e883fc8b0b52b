// swapd operator UI: one ES module, no dependencies, no build step.
//
// Data comes from swapd's JSON API (/v1/models, /api/gpus, /api/activity) and live updates
// from /api/events (server-sent events). Every URL is relative to the page, so the UI also
// works behind a proxy that mounts swapd under a prefix. Text from the server is only ever
// set as text (textContent), never parsed as HTML.

const ROOT = new URL("../", new URL(".", location.href));
const LIMITS = { activity: 100, swaps: 50, logLines: 1000, seen: 1000 };
const POLL_MS = 3000;
const RECONNECT_MAX_MS = 15000;
const EVENT_KINDS = ["model", "queue", "swap", "activity", "gpu"];
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#dc2626"];

const $ = (id) => document.getElementById(id);

const ui = {
  models: new Map(), // id -> model record (see modelFrom)
  rows: new Map(), // id -> {tr, cells}
  pending: new Map(), // id -> "load" | "unload"
  live: false,
  started: false,
  pollTimer: null,
  events: null, // {close()}
  seen: new Set(), // fingerprints of history events already shown (replays after reconnect)
  activityKeys: new Set(),
  swaps: [], // newest first: {at, model, phase, evict, evict_s, ready_s, total_s, error, tr}
};

class AuthError extends Error {}

// --- formatting ------------------------------------------------------------------------------

function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 ? String(value) : value.toFixed(1).replace(/\.0$/, "");
  return `${text} ${units[unit]}`;
}

function fmtSecs(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

function fmtTime(unixSeconds) {
  const date = unixSeconds ? new Date(unixSeconds * 1000) : new Date();
  return date.toLocaleTimeString([], { hour12: false });
}

function fmtNum(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return digits ? Number(value).toFixed(digits) : String(value);
}

// Model ids may contain "/": keep it as the path separator swapd's routes expect.
function encPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

function colorFor(model) {
  const ids = [...ui.models.keys()];
  let index = ids.indexOf(model);
  if (index < 0) {
    index = 0;
    for (const ch of model) index = (index * 31 + ch.charCodeAt(0)) >>> 0;
  }
  return PALETTE[index % PALETTE.length];
}

// --- DOM helpers -----------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "style") Object.assign(el.style, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function announce(text) {
  const region = $("announce");
  region.textContent = "";
  // A fresh text node in a later frame is announced even when the text repeats.
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}

function showAlert(text) {
  const box = $("alert");
  box.replaceChildren(
    h("span", { text }),
    " ",
    h("button", { type: "button", onclick: () => (box.hidden = true) }, "Dismiss"),
  );
  box.hidden = false;
}

function setConnection(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

// --- HTTP ------------------------------------------------------------------------------------

// With API keys set, the login cookie authenticates every call (EventSource included: it
// cannot send headers, which is why the cookie exists).
async function api(path, options = {}) {
  const resp = await fetch(new URL(path, ROOT), { credentials: "same-origin", ...options });
  if (resp.status === 401) throw new AuthError("API key required");
  return resp;
}

async function getJson(path) {
  const resp = await api(path, { headers: { Accept: "application/json" } });
  if (!resp.ok) return null; // an endpoint this swapd lacks: the section degrades
  return resp.json();
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body?.error?.message || `HTTP ${resp.status}`;
  } catch {
    return `HTTP ${resp.status}`;
  }
}

function handleFailure(err, what) {
  if (err instanceof AuthError) {
    showLogin();
    return;
  }
  if (err?.name === "AbortError") return;
  console.warn(what, err);
}

// Hands the complete lines of each chunk of a streamed text body to onLines, until the body
// ends (or the fetch is aborted: then it throws).
async function readLines(resp, onLines) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\n|\r/);
    buffer = lines.pop();
    if (lines.length) onLines(lines);
  }
  if (buffer) onLines([buffer]);
}

// --- login -----------------------------------------------------------------------------------

function showLogin(message = ui.started ? "The session ended: log in again." : "") {
  stopLive();
  ui.started = false;
  $("main").hidden = true;
  $("unload-all").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setConnection("offline", "locked");
  $("login-key").focus();
}

async function login(event) {
  event.preventDefault();
  const key = $("login-key").value;
  const error = $("login-error");
  const submit = $("login-submit");
  error.textContent = "";
  submit.disabled = true;
  try {
    const resp = await fetch(new URL("api/login", ROOT), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key }),
    });
    if (resp.status === 401 || resp.status === 403) {
      error.textContent = "Wrong API key.";
      $("login-key").select();
      return;
    }
    if (!resp.ok) {
      error.textContent = `Login failed: ${await errorText(resp)}`;
      return;
    }
    $("login-key").value = "";
    $("login").hidden = true;
    await boot();
  } catch (err) {
    error.textContent = `Login failed: ${err.message}`;
  } finally {
    submit.disabled = false;
  }
}

async function logout() {
  try {
    await fetch(new URL("api/logout", ROOT), { method: "POST", credentials: "same-origin" });
  } finally {
    location.reload();
  }
}

// {"required", "authenticated"}, or null from a swapd without the login endpoint.
async function loginStatus() {
  const resp = await fetch(new URL("api/login", ROOT), { credentials: "same-origin" });
  return resp.ok ? resp.json() : null;
}

// --- models ----------------------------------------------------------------------------------

function modelFrom(record, previous) {
  const meta = record.meta?.swapd || {};
  return {
    id: record.id,
    name: record.name || "",
    description: record.description || "",
    aliases: meta.aliases || [],
    state: meta.state || "stopped",
    reason: previous?.reason ?? null,
    gpus: "gpus" in meta ? meta.gpus : undefined,
    vram: meta.vram || null,
    vramMeasured: meta.vram_measured || null,
    inFlight: previous?.inFlight ?? 0,
    queued: previous?.queued ?? 0,
  };
}

function applyModelList(listing) {
  const next = new Map();
  for (const record of listing?.data || []) {
    const before = ui.models.get(record.id);
    const model = modelFrom(record, before);
    if (model.state !== "failed") model.reason = null;
    if (before && before.state !== model.state) announce(`${model.id} is ${model.state}`);
    next.set(model.id, model);
  }
  for (const id of ui.models.keys()) {
    if (!next.has(id)) {
      ui.rows.get(id)?.tr.remove();
      ui.rows.delete(id);
    }
  }
  ui.models = next;
  for (const model of next.values()) renderModel(model);
  // Keep rows in the listing's order.
  const body = $("models-body");
  for (const id of next.keys()) body.append(ui.rows.get(id).tr);
  $("models-empty").hidden = next.size > 0;
  updateLogSources();
  renderQueueSummary();
}

async function refreshModels() {
  try {
    const listing = await getJson("v1/models");
    if (listing) applyModelList(listing);
  } catch (err) {
    handleFailure(err, "models");
  }
}

function modelRow(id) {
  const state = h("span", { class: "badge", "data-testid": `state-${id}` });
  const reason = h("div", { class: "reason", "data-testid": `reason-${id}`, hidden: true });
  const sub = h("div", { class: "model-sub" });
  const load = h("button", {
    type: "button",
    class: "primary",
    "data-testid": `load-${id}`,
    "aria-label": `Load ${id}`,
    onclick: () => modelAction(id, "load"),
  }, "Load");
  const unload = h("button", {
    type: "button",
    "data-testid": `unload-${id}`,
    "aria-label": `Unload ${id}`,
    onclick: () => modelAction(id, "unload"),
  }, "Unload");
  const cells = {
    state,
    reason,
    sub,
    load,
    unload,
    gpus: h("td"),
    vram: h("td", { "data-testid": `vram-${id}` }),
    queue: h("td", { class: "num", "data-testid": `queue-${id}` }),
  };
  const tr = h(
    "tr",
    { "data-testid": "model-row", "data-model": id },
    h("td", {}, h("div", { class: "model-id", text: id }), sub, reason),
    h("td", {}, state),
    cells.gpus,
    cells.vram,
    cells.queue,
    h("td", { class: "actions" }, load, unload),
  );
  return { tr, cells };
}

function renderModel(model) {
  let row = ui.rows.get(model.id);
  if (!row) {
    row = modelRow(model.id);
    ui.rows.set(model.id, row);
    $("models-body").append(row.tr);
  }
  const { cells } = row;
  cells.state.textContent = model.state;
  cells.state.dataset.state = model.state;
  const sub = [model.name, model.aliases.length ? `aliases: ${model.aliases.join(", ")}` : ""];
  cells.sub.textContent = sub.filter(Boolean).join(" · ");
  cells.sub.title = model.description;
  cells.reason.textContent = model.reason || "";
  cells.reason.hidden = !model.reason;

  // null: not placed (stopped), or running on every GPU it can see (no `gpus` in the config).
  if (model.gpus === undefined || model.gpus === null) {
    const loaded = model.state === "ready" || model.state === "starting";
    cells.gpus.textContent = model.gpus === null && loaded ? "all" : "—";
  } else {
    cells.gpus.textContent = model.gpus.join(", ");
  }

  cells.vram.replaceChildren();
  if (model.vram) {
    cells.vram.append(
      h("div", { text: fmtBytes(model.vram.bytes) }),
      h("div", { class: "model-sub", text: model.vram.source, title: model.vram.detail || null }),
    );
  } else {
    cells.vram.append(h("span", { class: "muted", text: "unknown" }));
  }
  if (model.vramMeasured) {
    const measured = Object.values(model.vramMeasured).reduce((a, b) => a + b, 0);
    cells.vram.append(h("div", { class: "model-sub", text: `measured ${fmtBytes(measured)}` }));
  }

  cells.queue.textContent = `${model.inFlight} / ${model.queued}`;

  const pending = ui.pending.get(model.id);
  const loaded = model.state === "ready" || model.state === "starting";
  cells.load.disabled = pending === "load" || loaded;
  cells.load.setAttribute("aria-busy", String(pending === "load"));
  cells.unload.disabled =
    pending === "unload" || ((model.state === "stopped" || model.state === "failed") && !pending);
  cells.unload.setAttribute("aria-busy", String(pending === "unload"));
}

function renderQueueSummary() {
  let inFlight = 0;
  let queued = 0;
  let loaded = 0;
  for (const m of ui.models.values()) {
    inFlight += m.inFlight;
    queued += m.queued;
    if (m.state === "ready") loaded += 1;
  }
  $("queue-summary").textContent =
    `${loaded} of ${ui.models.size} loaded · ${inFlight} in flight · ${queued} queued`;
}

async function modelAction(id, action) {
  const model = ui.models.get(id);
  if (!model) return;
  ui.pending.set(id, action);
  renderModel(model);
  announce(`${action === "load" ? "Loading" : "Unloading"} ${id}`);
  const request = api(`api/models/${action}/${encPath(id)}`, { method: "POST" });
  // Without live events, show the load starting rather than only its end.
  if (!ui.live) setTimeout(refreshModels, 200);
  try {
    const resp = await request;
    if (!resp.ok) {
      const message = await errorText(resp);
      showAlert(`${action === "load" ? "Load" : "Unload"} of ${id} failed: ${message}`);
      announce(`${id}: ${action} failed`);
    }
  } catch (err) {
    if (err instanceof AuthError) showLogin();
    else showAlert(`${action} of ${id} failed: ${err.message}`);
  } finally {
    ui.pending.delete(id);
    await refreshModels();
  }
}

async function unloadAll() {
  const button = $("unload-all");
  button.disabled = true;
  try {
    const resp = await api("api/models/unload", { method: "POST" });
    if (!resp.ok) showAlert(`Unload all failed: ${await errorText(resp)}`);
    else announce("Unloaded every model");
  } catch (err) {
    handleFailure(err, "unload all");
  } finally {
    button.disabled = false;
    await refreshModels();
  }
}

function onModelEvent(data) {
  const model = ui.models.get(data.model);
  if (!model) return; // unlisted: not shown
  if (data.state === "exited") {
    // The child died on its own; the state that follows comes as its own event.
    if (data.reason) model.reason = data.reason;
    renderModel(model);
    return;
  }
  const changed = model.state !== data.state;
  model.state = data.state;
  model.reason = data.state === "failed" ? data.reason || model.reason : null;
  renderModel(model);
  renderQueueSummary();
  if (changed) announce(`${model.id} is ${data.state}`);
  // Placement and VRAM are decided when a model starts: fetch them once it is up.
  if (changed && (data.state === "ready" || data.state === "stopped")) scheduleModelRefresh();
}

let modelRefreshTimer = null;
function scheduleModelRefresh(delay = 300) {
  if (modelRefreshTimer !== null) return;
  modelRefreshTimer = setTimeout(() => {
    modelRefreshTimer = null;
    refreshModels();
  }, delay);
}

// A loaded model whose footprint is still a guess: swapd learns it from the GPU samples (no
// event says so), so the listing is fetched again while GPU samples arrive.
function waitingToLearn() {
  for (const m of ui.models.values()) {
    if (m.state === "ready" && m.vram?.source !== "learned" && m.vram?.source !== "config") {
      return true;
    }
  }
  return false;
}

function onQueueEvent(data) {
  const model = ui.models.get(data.model);
  if (!model) return;
  model.inFlight = data.in_flight ?? 0;
  model.queued = data.queued ?? 0;
  renderModel(model);
  renderQueueSummary();
}

// --- GPUs ------------------------------------------------------------------------------------

function renderGpus(view) {
  const box = $("gpus");
  box.replaceChildren();
  if (!view) {
    box.append(h("p", { class: "empty", text: "This swapd does not report GPUs." }));
    return;
  }
  if (view.monitor === "none" || !view.gpus?.length) {
    box.append(
      h("p", { class: "empty", "data-testid": "no-gpu" },
        "No NVIDIA GPU monitoring: swapd found no NVIDIA driver or GPU, ",
        "so models are placed by the groups in the config only."),
    );
    return;
  }
  for (const gpu of view.gpus) {
    const total = gpu.total_bytes || 1;
    const bar = h("div", {
      class: "bar",
      role: "img",
      "aria-label": `GPU ${gpu.index}: ${fmtBytes(gpu.used_bytes)} of ${fmtBytes(gpu.total_bytes)} used`,
    });
    const legend = h("div", { class: "legend" });
    for (const holder of gpu.models || []) {
      const bytes = holder.measured_bytes ?? holder.planned_bytes ?? 0;
      const color = colorFor(holder.model);
      const detail =
        `${holder.model}: measured ${fmtBytes(holder.measured_bytes)}, ` +
        `planned ${fmtBytes(holder.planned_bytes)}`;
      bar.append(
        h("div", {
          class: "seg",
          title: detail,
          style: { width: `${(100 * bytes) / total}%`, background: color },
        }),
      );
      legend.append(
        h("span", { title: detail },
          h("span", { class: "sw", style: { background: color } }),
          `${holder.model} ${fmtBytes(bytes)}`),
      );
    }
    if (gpu.other_processes_bytes) {
      bar.append(
        h("div", {
          class: "seg other",
          title: `other processes: ${fmtBytes(gpu.other_processes_bytes)}`,
          style: { width: `${(100 * gpu.other_processes_bytes) / total}%` },
        }),
      );
      legend.append(
        h("span", {}, h("span", { class: "sw other" }), `other ${fmtBytes(gpu.other_processes_bytes)}`),
      );
    }
    legend.append(h("span", {}, h("span", { class: "sw free" }), `free ${fmtBytes(gpu.free_bytes)}`));
    const busy =
      gpu.utilization_percent === null || gpu.utilization_percent === undefined
        ? ""
        : ` · ${gpu.utilization_percent} % busy`;
    box.append(
      h("div", { class: "gpu", "data-testid": `gpu-${gpu.index}` },
        h("div", { class: "gpu-head" },
          h("span", {}, h("span", { class: "gpu-name", text: `GPU ${gpu.index}` }), ` ${gpu.name}`),
          h("span", { class: "muted", text: `${fmtBytes(gpu.used_bytes)} / ${fmtBytes(gpu.total_bytes)}${busy}` }),
        ),
        bar,
        legend,
      ),
    );
  }
  const notes = [];
  if (!view.planning) notes.push("VRAM planning is off");
  if (view.headroom_bytes) notes.push(`headroom ${fmtBytes(view.headroom_bytes)}`);
  if (notes.length) box.append(h("p", { class: "empty", text: notes.join(" · ") }));
}

async function refreshGpus() {
  try {
    renderGpus(await getJson("api/gpus"));
  } catch (err) {
    handleFailure(err, "gpus");
  }
}

// --- activity --------------------------------------------------------------------------------

function activityKey(r) {
  return `${r.at}|${r.model}|${r.endpoint}|${r.total_s}|${r.status}`;
}

function addActivity(record, { prepend = true } = {}) {
  const key = activityKey(record);
  if (ui.activityKeys.has(key)) return;
  ui.activityKeys.add(key);
  const failed = record.status >= 400 || record.error;
  const tr = h(
    "tr",
    { "data-testid": "activity-row" },
    h("td", { text: fmtTime(record.at) }),
    h("td", { text: record.model }),
    h("td", {}, h("code", { text: record.endpoint }), record.streamed ? h("span", { class: "model-sub", text: " stream" }) : null),
    h("td", { class: "num", title: record.error || null },
      h("span", { class: failed ? "badge small" : "", "data-state": failed ? "failed" : null, text: String(record.status) })),
    h("td", { class: "num", text: fmtSecs(record.queue_wait_s) }),
    h("td", { class: "num", text: fmtSecs(record.ttfb_s) }),
    h("td", { class: "num", text: fmtSecs(record.total_s) }),
    h("td", { class: "num", text: `${fmtNum(record.tokens_in)} / ${fmtNum(record.tokens_out)}` }),
    h("td", { class: "num", text: fmtNum(record.tokens_per_s, 1) }),
  );
  tr.dataset.key = key;
  const body = $("activity-body");
  if (prepend) body.prepend(tr);
  else body.append(tr);
  while (body.rows.length > LIMITS.activity) {
    ui.activityKeys.delete(body.lastElementChild.dataset.key);
    body.lastElementChild.remove();
  }
  $("activity-empty").hidden = true;
}

async function refreshActivity() {
  try {
    const data = await getJson(`api/activity?limit=${LIMITS.activity}`);
    if (!data) return;
    // Newest first; skip what is shown already.
    const fresh = (data.activity || []).filter((r) => !ui.activityKeys.has(activityKey(r)));
    for (const record of fresh.reverse()) addActivity(record);
  } catch (err) {
    handleFailure(err, "activity");
  }
}

// --- swaps -----------------------------------------------------------------------------------

function renderSwap(swap) {
  const result =
    swap.phase === "start" ? "loading" : swap.phase === "done" ? "done" : "failed";
  const badgeState = { loading: "starting", done: "ready", failed: "failed" }[result];
  const cells = [
    h("td", { text: fmtTime(swap.at) }),
    h("td", { text: swap.model }),
    h("td", { title: swap.error || swap.detail || null },
      h("span", { class: "badge small", "data-state": badgeState, text: result })),
    h("td", { text: swap.evict?.length ? swap.evict.join(", ") : "—" }),
    h("td", { class: "num", text: fmtSecs(swap.evict_s) }),
    h("td", { class: "num", text: fmtSecs(swap.ready_s) }),
    h("td", { class: "num", text: fmtSecs(swap.total_s) }),
  ];
  if (!swap.tr) swap.tr = h("tr", { "data-testid": "swap-row" });
  swap.tr.replaceChildren(...cells);
}

function onSwapEvent(data, at) {
  let swap = null;
  if (data.phase !== "start") {
    swap = ui.swaps.find((s) => s.model === data.model && s.phase === "start") || null;
  }
  if (swap) {
    Object.assign(swap, data);
  } else {
    swap = { ...data, at: at || Date.now() / 1000 };
    ui.swaps.unshift(swap);
    renderSwap(swap);
    $("swaps-body").prepend(swap.tr);
    while (ui.swaps.length > LIMITS.swaps) ui.swaps.pop().tr.remove();
  }
  renderSwap(swap);
  $("swaps-empty").hidden = true;
}

// --- logs ------------------------------------------------------------------------------------

// Sources of GET /logs/stream[/SOURCE]: the combined log, swapd's own records ("proxy"), or one
// model's output as its child printed it.
const LOG_ALL = "all";
const LOG_SWAPD = "swapd";
const logs = { source: LOG_ALL, controller: null, retry: 0, timer: null };

function logStreamPath(source) {
  if (source === LOG_ALL) return "logs/stream";
  if (source === LOG_SWAPD) return "logs/stream/proxy";
  return `logs/stream/${encPath(source.slice("model:".length))}`;
}

function updateLogSources() {
  const select = $("log-source");
  const wanted = [
    [LOG_ALL, "all (swapd and models)"],
    [LOG_SWAPD, "swapd"],
    ...[...ui.models.keys()].map((id) => [`model:${id}`, id]),
  ];
  const have = [...select.options].map((o) => o.value);
  if (wanted.map(([value]) => value).join("\n") === have.join("\n")) return;
  const current = select.value;
  select.replaceChildren(...wanted.map(([value, text]) => h("option", { value, text })));
  select.value = wanted.some(([value]) => value === current) ? current : LOG_ALL;
  if (select.value !== current && ui.started) selectLogSource(select.value);
}

function appendLog(lines) {
  const pane = $("log");
  const fresh = lines.slice(-LIMITS.logLines);
  pane.append(...fresh.map((line) => document.createTextNode(`${line}\n`)));
  let excess = pane.childNodes.length - LIMITS.logLines;
  while (excess-- > 0) pane.firstChild.remove();
  if ($("log-follow").checked) pane.scrollTop = pane.scrollHeight;
}

function stopLogs() {
  logs.controller?.abort();
  logs.controller = null;
  clearTimeout(logs.timer);
}

function selectLogSource(source) {
  stopLogs();
  logs.source = source;
  logs.retry = 0;
  $("log").replaceChildren();
  streamLogs();
}

async function streamLogs() {
  const controller = new AbortController();
  logs.controller = controller;
  const status = $("log-status");
  status.textContent = "connecting…";
  try {
    const resp = await api(logStreamPath(logs.source), { signal: controller.signal });
    if (resp.status === 404) {
      status.textContent = "this swapd has no log stream";
      return;
    }
    if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
    logs.retry = 0;
    status.textContent = "live";
    $("log").replaceChildren(); // the stream starts with the recent history
    await readLines(resp, appendLog);
    throw new Error("log stream ended");
  } catch (err) {
    if (controller.signal.aborted || !ui.started) return;
    if (err instanceof AuthError) {
      showLogin();
      return;
    }
    logs.retry += 1;
    const delay = Math.min(1000 * 2 ** logs.retry, RECONNECT_MAX_MS);
    status.textContent = `reconnecting in ${Math.round(delay / 1000)} s`;
    logs.timer = setTimeout(() => {
      if (logs.controller === controller) streamLogs();
    }, delay);
  }
}

// --- live updates ----------------------------------------------------------------------------

function seenBefore(kind, id, raw) {
  // Replays of history (after a reconnect) repeat the id and the data.
  if (!id || (kind !== "swap" && kind !== "activity")) return false;
  const print = `${kind}|${id}|${raw}`;
  if (ui.seen.has(print)) return true;
  ui.seen.add(print);
  if (ui.seen.size > LIMITS.seen) ui.seen.delete(ui.seen.values().next().value);
  return false;
}

function onEvent(kind, raw, id) {
  if (seenBefore(kind, id, raw)) return;
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    return;
  }
  let at = null;
  // Accept the whole notice as well as its data: {"seq", "kind", "at", "data"}.
  if (data && typeof data === "object" && "kind" in data && "data" in data && "seq" in data) {
    kind = data.kind;
    at = data.at;
    data = data.data;
  }
  switch (kind) {
    case "model":
      onModelEvent(data);
      break;
    case "queue":
      onQueueEvent(data);
      break;
    case "swap":
      onSwapEvent(data, at);
      break;
    case "activity":
      addActivity(data);
      break;
    case "gpu":
      renderGpus(data);
      if (waitingToLearn()) scheduleModelRefresh(1000);
      break;
    default:
      break;
  }
}

function goLive() {
  ui.live = true;
  setConnection("live", "live");
  stopPolling();
}

function goPolling() {
  if (!ui.started) return;
  ui.live = false;
  setConnection("polling", "reconnecting…");
  startPolling();
}

// EventSource with the cookie (or without keys); it reconnects by itself after a dropped
// connection, and this reopens it (with backoff) when the server refused it outright.
function eventSourceConnection() {
  let source = null;
  let timer = null;
  let retry = 0;
  let closed = false;
  const open = () => {
    source = new EventSource(new URL("api/events", ROOT));
    source.onopen = () => {
      retry = 0;
      goLive();
      refreshAll();
    };
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, (e) => onEvent(kind, e.data, e.lastEventId));
    }
    source.onmessage = (e) => onEvent("message", e.data, e.lastEventId);
    source.onerror = () => {
      goPolling();
      if (source.readyState === EventSource.CLOSED && !closed) {
        retry += 1;
        timer = setTimeout(open, Math.min(1000 * 2 ** retry, RECONNECT_MAX_MS));
      }
    };
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
    },
  };
}

function startPolling() {
  if (ui.pollTimer) return;
  ui.pollTimer = setInterval(refreshAll, POLL_MS);
}

function stopPolling() {
  clearInterval(ui.pollTimer);
  ui.pollTimer = null;
}

function stopLive() {
  ui.events?.close();
  ui.events = null;
  stopPolling();
  stopLogs();
  ui.live = false;
}

function refreshAll() {
  return Promise.all([refreshModels(), refreshGpus(), refreshActivity()]);
}

// --- start -----------------------------------------------------------------------------------

async function boot() {
  let listing;
  let status;
  try {
    // Asked first: a data call without the key would answer 401 with a challenge, and a
    // browser may answer that with its own password dialog.
    status = await loginStatus();
    if (status?.required && !status.authenticated) {
      showLogin();
      return;
    }
    listing = await getJson("v1/models");
  } catch (err) {
    if (err instanceof AuthError) {
      showLogin();
      return;
    }
    setConnection("offline", "swapd unreachable");
    setTimeout(boot, 3000);
    return;
  }
  ui.started = true;
  $("login").hidden = true;
  $("main").hidden = false;
  $("unload-all").hidden = false;
  $("logout").hidden = !status?.required;
  applyModelList(listing);
  setConnection("connecting", "connecting…");
  startPolling();
  refreshGpus();
  refreshActivity();
  ui.events = eventSourceConnection();
  selectLogSource($("log-source").value);
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("unload-all").addEventListener("click", unloadAll);
  $("log-source").addEventListener("change", (e) => selectLogSource(e.target.value));
  $("log-clear").addEventListener("click", () => $("log").replaceChildren());
  boot();
}

init();
