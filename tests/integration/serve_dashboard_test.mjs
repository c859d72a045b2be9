// `kiln serve`'s dashboard (GET /dashboard) in a real browser: headless Chromium (Debian's
// chromium) driven by the npm package playwright-core. It starts kiln serve on the tiny
// random-weight model with an API key and small queues, then
//   - checks how the page's files are served: without the key, their content types, the
//     Content-Security-Policy, ETag and 304 revalidation, 404 for a file the page lacks;
//   - checks prom.js (the page's reader of /metrics) against PromQL's histogram_quantile;
//   - opens /dashboard: it must say that the key is missing; enters the key: it must go live;
//   - runs a load (concurrent streamed completions, a burst beyond the queue for 429s, streams
//     cut short for cancellations, an unknown model for 4xx) while reading the charts' and
//     tiles' data-* attributes from the DOM: every chart must move, the model's row must show the
//     model loaded with exactly the requests the server accepted, and the page must log no
//     console error, throw nothing and have no request fail;
//   - saves screenshots (light and dark) next to the given path;
//   - enters a wrong key: the page must say that the server refused it.
//
// Usage: KILN_BIN=build/kiln node tests/integration/serve_dashboard_test.mjs [SCREENSHOT.png]
// Environment: KILN_DATA_DIR (default ../shared/data from the repository), KILN_CHROMIUM (default
// /usr/bin/chromium). Exits 77 (ctest's skip) without the model, Chromium or playwright-core
// (scripts/install-deps.sh --test installs both), 1 on a failed check.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SKIP, freshProfileDir, launchHeadless, requireChromium, testLog } from "./browser_support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const dataDir = process.env.KILN_DATA_DIR ?? path.resolve(repo, "../shared/data");
const modelPath = path.join(dataDir, "llama-2-tiny-random.gguf");
const MODEL = "llama-2-tiny-random";
const KEY = "sk-dashboard-test";
const kilnBin = process.env.KILN_BIN ?? path.join(repo, "build/kiln");
const screenshotPath = path.resolve(process.argv[2] ?? "serve_dashboard.png");
const LOAD_SECONDS = 8;

if (!fs.existsSync(modelPath)) {
  console.log(`SKIP: ${modelPath} is absent (set KILN_DATA_DIR)`);
  process.exit(SKIP);
}
const chromium = await requireChromium();
if (!fs.existsSync(kilnBin)) {
  console.error(`serve_dashboard_test: no kiln binary at ${kilnBin} (set KILN_BIN)`);
  process.exit(1);
}

const { failures, log, sleep, check, elapsed } = testLog();

let server = null;
let context = null;
const userDataDir = freshProfileDir("dashboard");
async function cleanup() {
  if (context) await context.close().catch(() => {});
  if (server && server.exitCode === null) server.kill("SIGKILL");
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
// The whole test is bounded: a hang anywhere fails it instead of holding ctest.
const watchdog = setTimeout(async () => {
  console.error("FAIL: the test took over 120 s");
  await cleanup();
  process.exit(1);
}, 120000);

// ---- the server -------------------------------------------------------------------------------

const serverLog = [];
async function startServer() {
  // Small queues so that a burst gets 429s: 2 running and 2 waiting per model.
  server = spawn(kilnBin, ["serve", modelPath, "--port", "0", "-t", "1", "--api-key", KEY, "--max-running", "2",
    "--max-queued", "2"], { stdio: ["ignore", "pipe", "pipe"] });
  let port = 0, ready = false;
  const onData = (d) => {
    const text = d.toString();
    serverLog.push(text);
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
    if (m) port = Number(m[1]);
    if (/\bready\b/.test(text)) ready = true;
  };
  server.stdout.on("data", onData);
  server.stderr.on("data", onData);
  for (let i = 0; i < 300 && !(port && ready); i++) {
    if (server.exitCode !== null) break;
    await sleep(50);
  }
  if (!port || !ready) throw new Error(`kiln serve did not start:\n${serverLog.join("")}`);
  return `http://127.0.0.1:${port}`;
}

// ---- prom.js, the page's reader of /metrics ---------------------------------------------------

async function checkPromReader() {
  const prom = await import(path.join(repo, "src/serve/dashboard/prom.js"));
  const text = [
    "# HELP t_seconds A histogram.",
    "# TYPE t_seconds histogram",
    't_seconds_bucket{model="a",le="0.1"} 10',
    't_seconds_bucket{model="a",le="0.5"} 30',
    't_seconds_bucket{model="a",le="1"} 40',
    't_seconds_bucket{model="a",le="+Inf"} 40',
    't_seconds_bucket{model="b \\"x\\"",le="0.1"} 0',
    't_seconds_bucket{model="b \\"x\\"",le="0.5"} 0',
    't_seconds_bucket{model="b \\"x\\"",le="1"} 0',
    't_seconds_bucket{model="b \\"x\\"",le="+Inf"} 4',
    't_seconds_sum{model="a"} 12.5',
    'c_total{status="429"} 3 1700000000000',
    "g NaN",
  ].join("\n");
  const s = prom.parseMetrics(text);
  const near = (a, b) => Math.abs(a - b) < 1e-9;
  check(s.sum("c_total", { status: "429" }) === 3, "prom.js: a sample with a timestamp");
  check(Number.isNaN(s.sum("g")), "prom.js: NaN");
  check([...s.sumBy("t_seconds_bucket", "model").keys()].includes('b "x"'), "prom.js: escaped label values");
  const a = s.buckets("t_seconds", { model: "a" });
  // As PromQL: rank q*40 in the bucket that holds it, linearly inside it.
  check(near(prom.histogramQuantile(0.5, a), 0.3), `prom.js: p50 ${prom.histogramQuantile(0.5, a)} != 0.3`);
  check(near(prom.histogramQuantile(0.9, a), 0.8), `prom.js: p90 ${prom.histogramQuantile(0.9, a)} != 0.8`);
  check(near(prom.histogramQuantile(0.05, a), 0.02), "prom.js: p5 in the first bucket starts at 0");
  // Summed over models (sum by (le)): 4 observations beyond the last bound; p99 is that bound.
  check(prom.histogramQuantile(0.99, s.buckets("t_seconds")) === 1, "prom.js: a quantile in +Inf is the highest bound");
  check(Number.isNaN(prom.histogramQuantile(0.5, prom.bucketDeltas(a, a))), "prom.js: no observation is NaN");
  const later = a.map((b) => ({ le: b.le, count: b.count + (b.le >= 0.5 ? 10 : 0) }));
  check(near(prom.histogramQuantile(0.5, prom.bucketDeltas(later, a)), 0.3), "prom.js: the quantile of the deltas only");
  check(prom.counterDelta(5, 9) === 5 && prom.counterDelta(9, 5) === 4, "prom.js: counter resets");
  let threw = false;
  try {
    prom.parseMetrics('x{a="1" 2');
  } catch {
    threw = true;
  }
  check(threw, "prom.js: malformed text is refused");
}

// ---- how the page is served -------------------------------------------------------------------

async function checkServing(url) {
  const page = await fetch(`${url}/dashboard`);
  const html = await page.text();
  check(page.status === 200, `GET /dashboard without the key: ${page.status}`);
  check(page.headers.get("content-type") === "text/html; charset=utf-8", `/dashboard content type ${page.headers.get("content-type")}`);
  const csp = page.headers.get("content-security-policy") ?? "";
  check(/(^|;)\s*default-src 'self'(;|$)/.test(csp) && csp.includes("frame-ancestors 'none'"), `/dashboard CSP: ${csp}`);
  check(page.headers.get("x-content-type-options") === "nosniff", "/dashboard: nosniff");
  check(page.headers.get("cache-control") === "no-cache", `/dashboard Cache-Control: ${page.headers.get("cache-control")}`);
  check(html.includes('<script type="module" src="dashboard/dashboard.js">') && !/<script>|style=/.test(html),
    "/dashboard: scripts and styles are files, none inline");
  const etag = page.headers.get("etag");
  check(/^"[0-9a-f]{16}"$/.test(etag ?? ""), `/dashboard ETag: ${etag}`);
  const again = await fetch(`${url}/dashboard`, { headers: { "If-None-Match": etag } });
  check(again.status === 304 && (await again.text()) === "", `If-None-Match the ETag: ${again.status}`);
  const types = { "dashboard.js": "text/javascript; charset=utf-8", "prom.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml" };
  for (const [file, type] of Object.entries(types)) {
    const r = await fetch(`${url}/dashboard/${file}`);
    const body = await r.text();
    const source = fs.readFileSync(path.join(repo, "src/serve/dashboard", file), "utf8");
    check(r.status === 200 && r.headers.get("content-type") === type && body === source,
      `/dashboard/${file}: ${r.status} ${r.headers.get("content-type")}, ${body === source ? "" : "not "}the source file`);
  }
  const missing = await fetch(`${url}/dashboard/secrets.txt`);
  check(missing.status === 404, `/dashboard/secrets.txt: ${missing.status}`);
  const slash = await fetch(`${url}/dashboard/`, { redirect: "manual" });
  check(slash.status === 308 && slash.headers.get("location") === "../dashboard", `/dashboard/: ${slash.status}`);
  const post = await fetch(`${url}/dashboard`, { method: "POST", headers: { Authorization: `Bearer ${KEY}` } });
  check(post.status === 405, `POST /dashboard: ${post.status}`);
  const metrics = await fetch(`${url}/metrics`);
  check(metrics.status === 401, `/metrics without the key stays closed: ${metrics.status}`);
}

// ---- load -------------------------------------------------------------------------------------

const load = { accepted: 0, finished: 0, rejected: 0, cancelled: 0, notFound: 0, tokens: 0, other: [] };

// One streamed completion; `cut` closes it after its first token. Returns its status.
async function streamed(url, { maxTokens, cut = false, model = MODEL }) {
  const ac = new AbortController();
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: "The river ran past the old mill and", max_tokens: maxTokens, stream: true,
      temperature: 0.8, ignore_eos: true }),
    signal: ac.signal,
  });
  if (r.status !== 200) {
    await r.text();
    if (r.status === 429) load.rejected++;
    else if (r.status === 404) load.notFound++;
    else load.other.push(r.status);
    return r.status;
  }
  load.accepted++;
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      break;  // cut below
    }
    if (chunk.done) break;
    const events = decoder.decode(chunk.value, { stream: true }).split("\n").filter((l) => l.startsWith("data: {"));
    load.tokens += events.length;
    if (cut && events.length > 0) {
      ac.abort();
      load.cancelled++;
      return 200;
    }
  }
  load.finished++;
  return 200;
}

async function runLoad(url) {
  const until = Date.now() + LOAD_SECONDS * 1000;
  const worker = async (i) => {
    while (Date.now() < until) {
      const status = await streamed(url, { maxTokens: 96 + 16 * i });
      if (status === 429) await sleep(50);
    }
  };
  const extras = async () => {
    await sleep(1500);
    // Beyond 2 running and 2 waiting: the rest are refused with 429.
    await Promise.all(Array.from({ length: 8 }, () => streamed(url, { maxTokens: 32 })));
    await sleep(1000);
    for (let i = 0; i < 3; i++) await streamed(url, { maxTokens: 200, cut: true });
    await streamed(url, { maxTokens: 8, model: "no-such-model" });
    await sleep(1500);
    await Promise.all(Array.from({ length: 8 }, () => streamed(url, { maxTokens: 32 })));
  };
  await Promise.all([worker(0), worker(1), worker(2), extras()]);
}

// ---- the page ---------------------------------------------------------------------------------

// What the page shows now, read from the DOM: each chart's latest values and point count, the
// tiles, the model rows and the status.
function readPage(page) {
  return page.evaluate(() => {
    const num = (v) => (v === undefined || v === "" ? null : Number(v));
    const charts = {};
    for (const f of document.querySelectorAll("figure[data-chart]")) {
      const values = {};
      for (const v of f.querySelectorAll(".legend-value")) values[v.dataset.series] = num(v.dataset.value);
      charts[f.dataset.chart] = { values, points: num(f.dataset.points), paths: f.querySelectorAll("path.line").length,
        label: f.querySelector("svg.plot")?.getAttribute("aria-label") ?? "" };
    }
    const tiles = {};
    for (const t of document.querySelectorAll("[data-tile]")) tiles[t.dataset.tile] = num(t.querySelector(".tile-value").dataset.value);
    const models = {};
    for (const row of document.querySelectorAll("#model-rows tr[data-model]")) {
      const m = {};
      for (const td of row.querySelectorAll("td[data-field]")) m[td.dataset.field] = td.dataset.field === "state" ? td.dataset.value : num(td.dataset.value);
      models[row.dataset.model] = m;
    }
    const status = document.querySelector("#status");
    return { charts, tiles, models, status: status.dataset.state, statusText: status.textContent };
  });
}

async function main() {
  await checkPromReader();
  const url = await startServer();
  log(`kiln serve at ${url}`);
  await checkServing(url);

  context = await launchHeadless(chromium, userDataDir, { width: 1360, height: 1500 });
  const page = context.pages()[0] ?? (await context.newPage());
  // Every console error, uncaught exception, failed request and error answer, with the phase it
  // came in: 401s for /metrics are expected only while the key is missing or wrong.
  let phase = "no key";
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push({ phase, what: `console ${m.type()}: ${m.text()}` });
  });
  page.on("pageerror", (e) => problems.push({ phase, what: `uncaught: ${e.message}` }));
  page.on("requestfailed", (r) => problems.push({ phase, what: `request failed: ${r.url()} ${r.failure()?.errorText}` }));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push({ phase, what: `${r.status()} for ${r.url()}`, status: r.status(), url: r.url() });
  });
  const unexpected = (allowed401) =>
    problems.filter((p) => !(allowed401.includes(p.phase) &&
      (p.status === 401 || /status of 401/.test(p.what)) && (p.url === undefined || p.url.endsWith("/metrics"))));

  await page.goto(`${url}/dashboard`);
  await page.waitForSelector('#status[data-state="key-missing"]', { timeout: 10000 });
  // The listeners see the page's traffic: its first read, without a key, was refused.
  check(problems.some((p) => p.status === 401 && p.url.endsWith("/metrics")), "the 401 of the read without a key was seen");
  check(/needs its API key/.test(await page.textContent("#status")), "the page says the key is missing");
  check(await page.evaluate(() => document.activeElement?.id === "key"), "the key field has the focus when the key is missing");

  await page.fill("#key", KEY);
  await page.click('#key-form button[type="submit"]');
  phase = "live";
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10000 });
  check(await page.evaluate((k) => sessionStorage.getItem("kiln.dashboard.apiKey") === k, KEY), "the key is kept in sessionStorage");
  check((await page.inputValue("#key")) === "", "the key field is emptied once the key is taken");
  await sleep(2200);  // a few idle reads: rates need two

  const samples = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push(await readPage(page));
      await sleep(400);
    }
  })();
  log("load starts");
  await runLoad(url);
  log(`load done: ${JSON.stringify(load)}`);
  // Reads after the last request ended (on a loaded machine the page's next read may be late).
  await sleep(2500);
  await page.waitForFunction(([model, n]) => document.querySelector(`#model-rows tr[data-model="${model}"] td[data-field="requests"]`)
    ?.dataset.value === String(n), [MODEL, load.accepted], { timeout: 10000 }).catch(() => {});
  sampling = false;
  await sampler;
  const end = await readPage(page);
  await page.screenshot({ path: screenshotPath, fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  await sleep(1200);
  await page.screenshot({ path: screenshotPath.replace(/\.png$/, "_dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
  log(`screenshots: ${screenshotPath}`);

  // The load itself did what the checks below look for.
  check(load.accepted >= 10 && load.rejected > 0 && load.cancelled > 0 && load.notFound === 1 && load.other.length === 0,
    `the load: ${JSON.stringify(load)}`);

  // Every chart moved while the load ran, as its data-* attributes say.
  const series = (chart, key) => samples.map((s) => s.charts[chart]?.values[key]).filter((v) => v !== null && v !== undefined);
  const distinct = (values) => new Set(values.map((v) => v.toPrecision(6))).size;
  const max = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity);
  const tokens = series("tokens", "total");
  check(max(tokens) > 50 && distinct(tokens) >= 3, `tokens/s moved: ${tokens.slice(-12).map((v) => v.toFixed(0))}`);
  check(max(series("requests", "running")) >= 1, "requests running rose above 0");
  check(max(series("requests", "waiting")) >= 1 || max(series("requests", "running")) >= 2, "requests filled the batch or queued");
  for (const chart of ["ttft", "itl"])
    for (const q of ["p50", "p90", "p99"]) {
      const v = series(chart, q);
      check(v.length > 0 && v.every((x) => x > 0 && x < 60), `${chart} ${q} had values: ${v.slice(-5)}`);
    }
  const p50 = series("ttft", "p50"), p99 = series("ttft", "p99");
  check(samples.every((s) => {
    const v = s.charts.ttft.values;
    return v.p50 === null || (v.p50 <= v.p90 && v.p90 <= v.p99);
  }), "p50 <= p90 <= p99 at every read");
  check(p50.length > 0 && p99.length > 0, "time to first token percentiles shown");
  check(max(series("kv", "used")) > 0, "KV cache use rose above 0");
  check(max(series("errors", "rejected")) > 0, "429s shown");
  check(max(series("errors", "cancelled")) > 0, "cancellations shown");
  check(max(series("errors", "client")) > 0, "4xx shown");
  check(series("errors", "server").every((v) => v === 0), "no 5xx shown");
  check(max(samples.map((s) => s.tiles.tokens ?? 0)) > 0 && max(samples.map((s) => s.tiles.errors ?? 0)) > 0, "tiles moved");
  check(end.charts.tokens.points > samples[0].charts.tokens.points, "the charts grew by a point per read");
  check(Object.values(end.charts).every((c) => c.paths > 0 && c.label.includes("now:")), "every chart drew its lines and labels them");

  // The model's row: loaded, with exactly the generation requests the server accepted.
  const row = end.models[MODEL];
  check(row !== undefined, `a row for ${MODEL}: ${JSON.stringify(end.models)}`);
  if (row) {
    check(row.state === "loaded", `the row says ${row.state}`);
    check(row.requests === load.accepted, `the row counts ${row.requests} requests; the server accepted ${load.accepted}`);
    check(row.memory > 0, "the row shows the model's memory");
    check(max(samples.map((s) => s.models[MODEL]?.tokens ?? 0)) > 0, "the row's tokens/s moved");
    check(max(samples.map((s) => s.models[MODEL]?.running ?? 0)) >= 1, "the row's running moved");
    check(max(samples.map((s) => s.models[MODEL]?.kv ?? 0)) > 0, "the row's KV use moved");
  }
  const live = unexpected([]).filter((p) => p.phase === "live");
  check(live.length === 0, `no console error, exception or failed request while live: ${JSON.stringify(live.slice(0, 5))}`);

  // A wrong key: the page says so, and stops asking.
  phase = "wrong key";
  await page.fill("#key", "sk-not-the-key");
  await page.click('#key-form button[type="submit"]');
  await page.waitForSelector('#status[data-state="key-wrong"]', { timeout: 10000 });
  check(/refused this API key/.test(await page.textContent("#status")), "the page says the key was refused");
  check((await page.getAttribute("#key", "aria-invalid")) === "true", "the key field is marked invalid");
  await sleep(2500);
  const refusals = problems.filter((p) => p.phase === "wrong key" && p.status === 401).length;
  check(refusals === 1, `one refused read, then the page waits for a new key: ${refusals}`);

  // And the right key again.
  phase = "live again";
  await page.fill("#key", KEY);
  await page.click('#key-form button[type="submit"]');
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10000 });
  log(`console errors, failed requests and error answers seen: ${problems.length} (401s of /metrics are expected without the right key)`);
  const left = unexpected(["no key", "wrong key"]);
  check(left.length === 0, `no unexpected console error, exception or failed request: ${JSON.stringify(left.slice(0, 5))}`);
}

let code = 0;
try {
  await main();
} catch (e) {
  failures.push(e.stack ?? String(e));
  console.error(`FAIL: ${e.stack ?? e}`);
}
await cleanup();
clearTimeout(watchdog);
if (failures.length > 0) {
  console.error(`server log:\n${serverLog.join("").slice(-4000)}`);
  code = 1;
}
console.log(`serve_dashboard: ${failures.length === 0 ? "1 passed, 0 failed" : "0 passed, 1 failed"} (${failures.length} failed checks, ${elapsed()} s)`);
process.exit(code);
