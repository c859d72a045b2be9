// The dashboard of `kiln serve`: reads /metrics every second (with the API key the operator
// pasted, kept in sessionStorage), derives rates and latency percentiles from successive
// scrapes, and draws them as SVG charts. Every chart and tile also carries its latest numbers as
// data-* attributes and text, for screen readers and tests (not only pixels).
import { parseMetrics, counterDelta, bucketDeltas, histogramQuantile } from "./prom.js";

const POLL_MS = 1000;
const RETRY_MS = 3000;          // after a failed read
const FETCH_TIMEOUT_MS = 5000;
const SPAN_S = 300;             // the charts show the last five minutes
const LATENCY_WINDOW_S = 10;    // percentiles of the requests observed over this window
const ERROR_WINDOW_S = 60;      // the errors tile
const KEY_STORAGE = "kiln.dashboard.apiKey";
const SVG = "http://www.w3.org/2000/svg";

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) ?? "",
  scrapes: [],  // {t (seconds, client clock), scrape}: the recent reads, for windowed deltas
  points: [],   // what each read derived, for the charts
  paused: false,
  timer: 0,
  generation: 0,  // bumped when polling restarts, so a read in flight from before is dropped
};

// ---- formatting ------------------------------------------------------------------------------

const finite = (v) => typeof v === "number" && Number.isFinite(v);
const grouped = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

function formatRate(v) {
  if (!finite(v)) return "–";
  if (v === 0) return "0";
  return v < 1 ? v.toFixed(2) : v < 10 ? v.toFixed(1) : grouped.format(v);
}
function formatCount(v) {
  return finite(v) ? grouped.format(v) : "–";
}
function formatSeconds(v) {
  if (!finite(v)) return "–";
  if (v === 0) return "0";
  if (v < 1e-3) return `${(v * 1e6).toPrecision(3)} µs`;
  if (v < 1) return `${(v * 1e3).toPrecision(3)} ms`;
  return `${v.toPrecision(3)} s`;
}
function formatPercent(v) {
  return finite(v) ? `${v.toFixed(v < 10 ? 1 : 0)} %` : "–";
}
function formatBytes(v) {
  if (!finite(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}
function formatDuration(s) {
  if (!finite(s)) return "–";
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

// ---- what one read derives ---------------------------------------------------------------------

// The newest read at least `seconds` older than `t`, else the oldest one kept.
function readBefore(t, seconds) {
  let base = null;
  for (const r of state.scrapes) {
    if (r.t <= t - seconds + 0.05) base = r;
    else break;
  }
  return base ?? state.scrapes[0];
}

function quantiles(name, now, base) {
  const out = { p50: NaN, p90: NaN, p99: NaN };
  if (!base || base === now) return out;
  const deltas = bucketDeltas(now.scrape.buckets(name), base.scrape.buckets(name));
  out.p50 = histogramQuantile(0.5, deltas);
  out.p90 = histogramQuantile(0.9, deltas);
  out.p99 = histogramQuantile(0.99, deltas);
  return out;
}

// Answers by class of status, from kiln_requests_total: client errors (4xx but 429 and 499),
// server errors (5xx), rejections (429).
function statusCounts(scrape) {
  const out = { client: 0, server: 0, rejected: 0 };
  for (const [status, n] of scrape.sumBy("kiln_requests_total", "status")) {
    const code = Number(status);
    if (code === 429) out.rejected += n;
    else if (code >= 500) out.server += n;
    else if (code >= 400 && code !== 499) out.client += n;
  }
  return out;
}

function errorsBetween(now, base) {
  const a = statusCounts(now.scrape), b = statusCounts(base.scrape);
  return {
    client: counterDelta(a.client, b.client),
    server: counterDelta(a.server, b.server),
    rejected: counterDelta(a.rejected, b.rejected),
    cancelled: counterDelta(now.scrape.sum("kiln_requests_cancelled_total"), base.scrape.sum("kiln_requests_cancelled_total")),
  };
}

function modelsOf(now, prev) {
  const s = now.scrape;
  const dt = prev ? now.t - prev.t : 0;
  const names = [...s.sumBy("kiln_model_loaded", "model").keys()].filter((n) => n !== "").sort();
  return names.map((name) => {
    const m = { model: name };
    const blocks = s.sum("kiln_kv_cache_blocks", m);
    const loaded = s.sum("kiln_model_loaded", m) > 0;
    let st = "not loaded";
    if (s.sum("kiln_model_loading", m) > 0) st = "loading";
    else if (loaded) st = "loaded";
    else if (s.sum("kiln_model_consecutive_load_failures", m) > 0) st = "load failed";
    const tokens = prev && dt > 0
      ? counterDelta(s.sum("kiln_generated_tokens_total", m), prev.scrape.sum("kiln_generated_tokens_total", m)) / dt
      : NaN;
    return {
      name,
      state: st,
      running: s.sum("kiln_requests_running", m),
      waiting: s.sum("kiln_requests_waiting", m),
      tokens,
      kv: blocks > 0 ? (100 * (s.sum("kiln_kv_cache_blocks_used", m) - s.sum("kiln_kv_cache_blocks_cached", m))) / blocks : NaN,
      memory: loaded || st === "loading" ? s.sum("kiln_model_memory_bytes", m) : NaN,
      requests: s.sum("kiln_requests_accepted_total", m),
    };
  });
}

function derive(now) {
  const prev = state.scrapes.length > 1 ? state.scrapes[state.scrapes.length - 2] : null;
  const s = now.scrape;
  const dt = prev ? now.t - prev.t : 0;
  const perSecond = (name) =>
    prev && dt > 0 ? counterDelta(s.sum(name), prev.scrape.sum(name)) / dt : NaN;
  const blocks = s.sum("kiln_kv_cache_blocks");
  const latencyBase = readBefore(now.t, LATENCY_WINDOW_S);
  const errors = prev && dt > 0 ? errorsBetween(now, prev) : null;
  const rate = (v) => (errors ? v / dt : NaN);
  const errorBase = readBefore(now.t, ERROR_WINDOW_S);
  const recent = errorBase !== now ? errorsBetween(now, errorBase) : null;
  return {
    t: now.t,
    tokens: perSecond("kiln_generated_tokens_total"),
    running: s.sum("kiln_requests_running"),
    waiting: s.sum("kiln_requests_waiting"),
    ttft: quantiles("kiln_time_to_first_token_seconds", now, latencyBase),
    itl: quantiles("kiln_time_per_output_token_seconds", now, latencyBase),
    // Used blocks are held by requests or only by the prefix cache (reclaimable at once): the
    // first share is the pressure on the pool.
    kvUsed: blocks > 0 ? (100 * (s.sum("kiln_kv_cache_blocks_used") - s.sum("kiln_kv_cache_blocks_cached"))) / blocks : NaN,
    kvCached: blocks > 0 ? (100 * s.sum("kiln_kv_cache_blocks_cached")) / blocks : NaN,
    client: rate(errors?.client),
    server: rate(errors?.server),
    rejected: rate(errors?.rejected),
    cancelled: rate(errors?.cancelled),
    recentErrors: recent ? recent.client + recent.server + recent.rejected + recent.cancelled : NaN,
    rss: s.sum("process_resident_memory_bytes"),
    startTime: s.has("process_start_time_seconds") ? s.sum("process_start_time_seconds") : NaN,
    build: s.samples("kiln_build_info")[0]?.labels ?? null,
    models: modelsOf(now, prev),
  };
}

// ---- charts ------------------------------------------------------------------------------------

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

// The axis for values up to `v`: a round step (1, 2, 2.5 or 5 times a power of ten; whole numbers
// for counts) and a top that is a whole number of steps, at most 5.
function axis(v, integer) {
  const raw = Math.max(v, Number.MIN_VALUE) / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * p;
  for (const m of integer ? [1, 2, 5] : [1, 2, 2.5, 5]) {
    if (m * p >= raw * 0.999) {
      step = m * p;
      break;
    }
  }
  if (integer) step = Math.max(1, step);
  return { step, top: step * Math.max(1, Math.ceil(v / step - 1e-9)) };
}

class Chart {
  // series: [{key, label, value(point) -> number}]; format: value -> text; max: fixed top of the
  // axis (percent), else from the data.
  constructor(figure, { series, format, max = null, minTop = 1, integer = false }) {
    this.figure = figure;
    this.series = series;
    this.format = format;
    this.max = max;
    this.minTop = minTop;
    this.integer = integer;
    this.title = figure.querySelector("figcaption").textContent.trim();
    this.legend = document.createElement("ul");
    this.legend.className = "legend";
    this.values = series.map((s, i) => {
      const li = document.createElement("li");
      const swatch = el("svg", { width: 22, height: 10, "aria-hidden": "true", class: "swatch" });
      el("line", { x1: 1, y1: 5, x2: 21, y2: 5, class: `line s${i}` }, swatch);
      const label = document.createElement("span");
      label.textContent = s.label;
      const value = document.createElement("span");
      value.className = "legend-value";
      value.dataset.series = s.key;
      value.textContent = "–";
      li.append(swatch, label, value);
      this.legend.appendChild(li);
      return value;
    });
    this.svg = el("svg", { role: "img", class: "plot", preserveAspectRatio: "none" });
    this.readout = document.createElement("div");
    this.readout.className = "readout";
    this.readout.hidden = true;
    const plotWrap = document.createElement("div");
    plotWrap.className = "plot-wrap";
    plotWrap.append(this.svg, this.readout);
    figure.append(this.legend, plotWrap);
    this.svg.addEventListener("pointermove", (e) => this.hover(e));
    this.svg.addEventListener("pointerleave", () => this.hover(null));
  }

  render(points, now) {
    const width = Math.max(240, Math.round(this.svg.getBoundingClientRect().width || this.figure.clientWidth || 480));
    const height = 150;
    const m = { left: 54, right: 10, top: 8, bottom: 20 };
    const w = width - m.left - m.right, h = height - m.top - m.bottom;
    const from = now - SPAN_S;
    const visible = points.filter((p) => p.t >= from);
    let top = this.max, step = this.max / 4;
    if (top === null) {
      let hi = 0;
      for (const p of visible) for (const s of this.series) {
        const v = s.value(p);
        if (finite(v)) hi = Math.max(hi, v);
      }
      ({ top, step } = axis(Math.max(hi, this.minTop), this.integer));
    }
    const x = (t) => m.left + ((t - from) / SPAN_S) * w;
    const y = (v) => m.top + h - (Math.min(v, top) / top) * h;
    this.geometry = { x, from, w, m, visible };

    this.svg.replaceChildren();
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("height", height);
    const grid = el("g", { class: "grid" }, this.svg);
    for (let i = 0; i * step <= top * 1.0001; i++) {
      const v = i * step;
      el("line", { x1: m.left, x2: m.left + w, y1: y(v), y2: y(v) }, grid);
      const label = el("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, grid);
      label.textContent = this.format(v);
    }
    // A minute apart, or two on a narrow chart (the labels would run together).
    const every = w < 380 ? 120 : 60;
    for (let s = 0; s <= SPAN_S; s = s + every > SPAN_S && s < SPAN_S ? SPAN_S : s + every) {
      const label = el("text", { x: x(from + s), y: height - 4, "text-anchor": s === 0 ? "start" : s === SPAN_S ? "end" : "middle" }, grid);
      label.textContent = s === SPAN_S ? "now" : `−${(SPAN_S - s) / 60} min`;
    }
    this.series.forEach((s, i) => {
      let d = "", last = null;
      for (const p of visible) {
        const v = s.value(p);
        if (!finite(v)) { last = null; continue; }
        // A gap in the reads (paused, server away) stays a gap.
        const joined = last !== null && p.t - last <= (3 * POLL_MS) / 1000;
        d += `${joined ? "L" : "M"}${x(p.t).toFixed(1)} ${y(v).toFixed(1)}`;
        last = p.t;
      }
      if (d) el("path", { d, class: `line s${i}` }, this.svg);
    });
    this.cursor = el("line", { class: "cursor", y1: m.top, y2: m.top + h, x1: 0, x2: 0, visibility: "hidden" }, this.svg);

    // The latest value of each series, as text and as data-* attributes.
    const latest = points[points.length - 1];
    const summary = [];
    this.series.forEach((s, i) => {
      const v = latest ? s.value(latest) : NaN;
      this.values[i].textContent = this.format(v);
      this.values[i].dataset.value = finite(v) ? String(v) : "";
      this.figure.dataset[`latest${s.key[0].toUpperCase()}${s.key.slice(1)}`] = finite(v) ? String(v) : "";
      summary.push(`${s.label} ${this.format(v)}`);
    });
    this.figure.dataset.points = String(visible.length);
    this.svg.setAttribute("aria-label", `${this.title}, last 5 minutes; now: ${summary.join(", ")}`);
    if (this.hoverX !== undefined) this.hover({ clientX: this.hoverX });
  }

  // A readout of the read nearest the pointer (at clientX), kept across redraws.
  hover(e) {
    if (!e || !this.geometry) {
      this.hoverX = undefined;
      this.readout.hidden = true;
      this.cursor?.setAttribute("visibility", "hidden");
      return;
    }
    this.hoverX = e.clientX;
    const rect = this.svg.getBoundingClientRect();
    const scale = this.svg.viewBox.baseVal.width / (rect.width || 1);
    const { x, from, w, m, visible } = this.geometry;
    const t = from + (((e.clientX - rect.left) * scale - m.left) / w) * SPAN_S;
    let best = null;
    for (const p of visible) if (!best || Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
    if (!best) return this.hover(null);
    this.cursor.setAttribute("x1", x(best.t));
    this.cursor.setAttribute("x2", x(best.t));
    this.cursor.setAttribute("visibility", "visible");
    const when = new Date(best.t * 1000).toLocaleTimeString();
    this.readout.textContent = `${when}  ` + this.series.map((s) => `${s.label} ${this.format(s.value(best))}`).join("  ·  ");
    this.readout.hidden = false;
  }
}

// ---- the page ----------------------------------------------------------------------------------

const $ = (sel) => document.querySelector(sel);
const charts = [];

function setupCharts() {
  const chart = (name, options) => charts.push(new Chart($(`figure[data-chart="${name}"]`), options));
  chart("tokens", { series: [{ key: "total", label: "all models", value: (p) => p.tokens }], format: formatRate });
  chart("requests", {
    series: [
      { key: "running", label: "running", value: (p) => p.running },
      { key: "waiting", label: "waiting", value: (p) => p.waiting },
    ],
    format: formatCount,
    minTop: 4,
    integer: true,
  });
  const latency = (field) => ({
    series: ["p50", "p90", "p99"].map((q) => ({ key: q, label: q, value: (p) => p[field][q] })),
    format: formatSeconds,
    minTop: 0.01,
  });
  chart("ttft", latency("ttft"));
  chart("itl", latency("itl"));
  chart("kv", {
    series: [
      { key: "used", label: "held by requests", value: (p) => p.kvUsed },
      { key: "cached", label: "prefix cache only (reclaimable)", value: (p) => p.kvCached },
    ],
    format: formatPercent,
    max: 100,
  });
  chart("errors", {
    series: [
      { key: "client", label: "4xx", value: (p) => p.client },
      { key: "server", label: "5xx", value: (p) => p.server },
      { key: "rejected", label: "429 queue full", value: (p) => p.rejected },
      { key: "cancelled", label: "cancelled", value: (p) => p.cancelled },
    ],
    format: formatRate,
  });
}

function setTile(name, value, text) {
  const node = $(`[data-tile="${name}"] .tile-value`);
  node.textContent = text;
  node.dataset.value = finite(value) ? String(value) : "";
}

function renderModels(models) {
  const body = $("#model-rows");
  if (models.length === 0) {
    body.replaceChildren();
    const tr = body.insertRow();
    tr.className = "empty";
    const td = tr.insertCell();
    td.colSpan = 8;
    td.textContent = "No model is served.";
    return;
  }
  body.querySelector("tr.empty")?.remove();
  const rows = new Map([...body.rows].map((r) => [r.dataset.model, r]));
  for (const [name, row] of rows) if (!models.some((m) => m.name === name)) row.remove();
  models.forEach((m, i) => {
    let row = rows.get(m.name);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.model = m.name;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = m.name;
      row.appendChild(th);
      for (const field of ["state", "running", "waiting", "tokens", "kv", "memory", "requests"]) {
        const td = document.createElement("td");
        td.dataset.field = field;
        if (field !== "state") td.className = "num";
        row.appendChild(td);
      }
    }
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] ?? null);
    const cell = (field, value, text) => {
      const td = row.querySelector(`[data-field="${field}"]`);
      td.textContent = text;
      td.dataset.value = typeof value === "string" ? value : finite(value) ? String(value) : "";
    };
    cell("state", m.state, m.state);
    row.querySelector('[data-field="state"]').className = `state state-${m.state.replace(/ /g, "-")}`;
    cell("running", m.running, formatCount(m.running));
    cell("waiting", m.waiting, formatCount(m.waiting));
    cell("tokens", m.tokens, formatRate(m.tokens));
    cell("kv", m.kv, formatPercent(m.kv));
    cell("memory", m.memory, formatBytes(m.memory));
    cell("requests", m.requests, formatCount(m.requests));
  });
}

function render() {
  const latest = state.points[state.points.length - 1];
  if (!latest) return;
  const now = latest.t;
  for (const c of charts) c.render(state.points, now);
  setTile("tokens", latest.tokens, formatRate(latest.tokens));
  setTile("running", latest.running, formatCount(latest.running));
  setTile("waiting", latest.waiting, formatCount(latest.waiting));
  setTile("ttft", latest.ttft.p90, formatSeconds(latest.ttft.p90));
  setTile("itl", latest.itl.p90, formatSeconds(latest.itl.p90));
  setTile("kv", latest.kvUsed, formatPercent(latest.kvUsed));
  setTile("errors", latest.recentErrors, formatCount(latest.recentErrors));
  setTile("memory", latest.rss, formatBytes(latest.rss));
  setTile("uptime", now - latest.startTime, formatDuration(now - latest.startTime));
  $('[data-tile="errors"]').classList.toggle("alert", latest.recentErrors > 0);
  if (latest.build) {
    const b = latest.build;
    $("#build").textContent = `${b.version ?? ""} · ${b.git_sha ?? ""} · ${b.simd ?? ""}`;
  }
  renderModels(latest.models);
}

function setStatus(kind, text) {
  const node = $("#status");
  node.dataset.state = kind;
  if (node.textContent !== text) node.textContent = text;
  if (kind !== "live") $("#updated").textContent = "";
  const needKey = kind === "key-missing" || kind === "key-wrong";
  $("#key-form").classList.toggle("attention", needKey);
  $("#key").setAttribute("aria-invalid", kind === "key-wrong" ? "true" : "false");
}

function schedule(ms) {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(poll, ms);
}

async function poll() {
  const generation = state.generation;
  const headers = { Accept: "text/plain" };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  let response, text;
  try {
    // Relative: /metrics beside /dashboard, behind a proxy's prefix too.
    response = await fetch("metrics", { headers, cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    text = await response.text();
  } catch (e) {
    if (generation !== state.generation) return;
    setStatus("unreachable", `Cannot reach the server (${e.name === "TimeoutError" ? "no answer in 5 s" : "connection failed"}); retrying`);
    return schedule(RETRY_MS);
  }
  if (generation !== state.generation) return;
  if (response.status === 401) {
    // Polling stops until a key is given: asking again would fail the same way.
    if (state.key) setStatus("key-wrong", "The server refused this API key (401). Paste the right key.");
    else setStatus("key-missing", "This server needs its API key to show its metrics. Paste it above.");
    if (!state.key) $("#key").focus();
    return;
  }
  if (!response.ok) {
    setStatus("error", `/metrics answered ${response.status}; retrying`);
    return schedule(RETRY_MS);
  }
  let scrape;
  try {
    scrape = parseMetrics(text);
  } catch (e) {
    setStatus("error", `Could not read /metrics: ${e.message}`);
    return schedule(RETRY_MS);
  }
  const now = { t: Date.now() / 1000, scrape };
  state.scrapes.push(now);
  const keep = Math.max(LATENCY_WINDOW_S, ERROR_WINDOW_S) + 5;
  while (state.scrapes.length > 2 && state.scrapes[0].t < now.t - keep) state.scrapes.shift();
  state.points.push(derive(now));
  while (state.points.length && state.points[0].t < now.t - SPAN_S - 5) state.points.shift();
  render();
  setStatus("live", "Live");
  $("#updated").textContent = `read at ${new Date(now.t * 1000).toLocaleTimeString()}`;
  schedule(POLL_MS);
}

function restart() {
  state.generation++;
  // A new key may mean a different view: windows start again from the next read.
  state.scrapes = [];
  schedule(0);
}

function setup() {
  setupCharts();
  const input = $("#key");
  const showKeyState = () => {
    input.placeholder = state.key ? "key set (paste to replace)" : "paste the server's API key";
  };
  showKeyState();
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!key) return;
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    showKeyState();
    setStatus("starting", "Key set; reading /metrics…");
    restart();
  });
  $("#forget").addEventListener("click", () => {
    state.key = "";
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    restart();
  });
  $("#pause").addEventListener("click", (e) => {
    state.paused = !state.paused;
    e.currentTarget.setAttribute("aria-pressed", String(state.paused));
    e.currentTarget.textContent = state.paused ? "Resume" : "Pause";
    if (state.paused) {
      clearTimeout(state.timer);
      state.generation++;
      setStatus("paused", "Paused: the charts keep what they had");
    } else {
      restart();
    }
  });
  window.addEventListener("resize", () => render());
  poll();
}

setup();
