// `kiln serve`'s chat page (GET /) in a real browser: headless Chromium (Debian's chromium)
// driven by the npm package playwright-core. It starts kiln serve with two models, kiln's default
// model (real text) and the tiny random-weight one (a greedy answer that runs for thousands of
// tokens, to be stopped), then
//   - checks how the page's files are served: without a key, their content types, the
//     Content-Security-Policy, ETag and 304 revalidation, 404 for files the page lacks;
//   - holds a conversation of three turns with a system prompt and sampling settings: each answer
//     must stream (its text grows over several animation frames), and each request must carry
//     the system prompt, every earlier turn as the page shows it, and the settings;
//   - stops a long answer: the server must cancel the request (its cancelled count rises, its log
//     line says the client closed and the generation was cancelled), and the conversation goes on;
//   - sends settings the server refuses: the page must show the server's error and give the
//     message back; starts a new chat: the next request holds the new turn only;
//   - saves screenshots (wide, narrow, dark) next to the given path, and checks the narrow layout;
//   - against a second server with an API key: the page loads without it, its API calls are
//     refused, it asks for the key, and works once given it;
//   - and throughout: no console error, exception or failed request beyond those a step expects.
//
// Usage: KILN_BIN=build/kiln node tests/integration/serve_chat_page_test.mjs [SCREENSHOT.png]
// Environment: KILN_DATA_DIR (default ../shared/data from the repository), KILN_CHROMIUM (default
// /usr/bin/chromium). Exits 77 (ctest's skip) without the tiny model, Chromium or playwright-core
// (scripts/install-deps.sh --test installs both), 1 on a failed check.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SKIP, freshProfileDir, launchHeadless, requireChromium, testLog } from "./browser_support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const dataDir = process.env.KILN_DATA_DIR ?? path.resolve(repo, "../shared/data");
const tinyPath = path.join(dataDir, "llama-2-tiny-random.gguf");
const defaultPath = path.join(repo, "models/kiln-default.gguf");
const KEY = "sk-chat-page-test";
const kilnBin = process.env.KILN_BIN ?? path.join(repo, "build/kiln");
const screenshotPath = path.resolve(process.argv[2] ?? "serve_chat_page.png");
const pageDir = path.join(repo, "src/serve/chat_page");
fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });

if (!fs.existsSync(tinyPath)) {
  console.log(`SKIP: ${tinyPath} is absent (set KILN_DATA_DIR)`);
  process.exit(SKIP);
}
const chromium = await requireChromium();
for (const [what, file] of [["kiln binary", kilnBin], ["default model", defaultPath]]) {
  if (!fs.existsSync(file)) {
    console.error(`serve_chat_page_test: no ${what} at ${file}`);
    process.exit(1);
  }
}

const { failures, log, sleep, check, elapsed } = testLog();

const servers = [];
let context = null;
const userDataDir = freshProfileDir("chat-page");
async function cleanup() {
  if (context) await context.close().catch(() => {});
  for (const s of servers) if (s.process.exitCode === null) s.process.kill("SIGKILL");
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
const watchdog = setTimeout(async () => {
  console.error("FAIL: the test took over 150 s");
  await cleanup();
  process.exit(1);
}, 150000);

// ---- the servers ------------------------------------------------------------------------------

async function startServer(extra) {
  // A long context lets the tiny model's greedy answer run for thousands of tokens (seconds), so
  // that Stop lands while it streams; --kv-tokens keeps the KV pools small.
  const child = spawn(kilnBin, ["serve", defaultPath, "--model", `tiny=${tinyPath}`, "--port", "0", "-t", "1", "-c", "32768",
    "--kv-tokens", "33000", ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  const server = { process: child, log: [], url: "" };
  servers.push(server);
  let port = 0, ready = false;
  const onData = (d) => {
    const text = d.toString();
    server.log.push(text);
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
    if (m) port = Number(m[1]);
    if (/\bready\b/.test(text)) ready = true;
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  for (let i = 0; i < 300 && !(port && ready); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  if (!port || !ready) throw new Error(`kiln serve did not start:\n${server.log.join("")}`);
  server.url = `http://127.0.0.1:${port}`;
  return server;
}

// The server's JSON log lines (it writes JSON when its output is not a terminal).
function logEvents(server) {
  return server.log.join("").split("\n").filter((l) => l.startsWith("{")).map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      return null;
    }
  }).filter(Boolean);
}

async function cancelledByClient(server, model, key) {
  const r = await fetch(`${server.url}/metrics`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  const text = await r.text();
  const line = text.split("\n").find((l) => l.startsWith("kiln_requests_cancelled_total{") && l.includes(`model="${model}"`) &&
    l.includes('reason="client"'));
  return line ? Number(line.split(" ").pop()) : 0;
}

// ---- how the page is served -------------------------------------------------------------------

async function checkServing(url) {
  const page = await fetch(`${url}/`);
  const html = await page.text();
  check(page.status === 200, `GET / without a key: ${page.status}`);
  check(page.headers.get("content-type") === "text/html; charset=utf-8", `/ content type ${page.headers.get("content-type")}`);
  const csp = page.headers.get("content-security-policy") ?? "";
  check(/(^|;)\s*default-src 'self'(;|$)/.test(csp) && csp.includes("frame-ancestors 'none'") && !csp.includes("unsafe"),
    `/ CSP: ${csp}`);
  check(page.headers.get("x-content-type-options") === "nosniff", "/: nosniff");
  check(html === fs.readFileSync(path.join(pageDir, "index.html"), "utf8"), "/ is src/serve/chat_page/index.html");
  check(html.includes('<script type="module" src="chat/chat.js">') && !/<script>|style=|https?:\/\//.test(html),
    "/: scripts and styles are files, none inline, nothing from another site");
  const etag = page.headers.get("etag");
  check(/^"[0-9a-f]{16}"$/.test(etag ?? ""), `/ ETag: ${etag}`);
  const again = await fetch(`${url}/`, { headers: { "If-None-Match": etag } });
  check(again.status === 304, `If-None-Match the ETag: ${again.status}`);
  const types = { "chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml" };
  check(JSON.stringify(fs.readdirSync(pageDir).sort()) === JSON.stringify([...Object.keys(types), "index.html"].sort()),
    "the test knows every file of the page");
  for (const [file, type] of Object.entries(types)) {
    const r = await fetch(`${url}/chat/${file}`);
    const body = await r.text();
    const source = fs.readFileSync(path.join(pageDir, file), "utf8");
    check(r.status === 200 && r.headers.get("content-type") === type && body === source,
      `/chat/${file}: ${r.status} ${r.headers.get("content-type")}, ${body === source ? "" : "not "}the source file`);
    check(!/https?:\/\/(?!www\.w3\.org)/.test(source), `/chat/${file} names no other site`);
  }
  for (const missing of ["/chat/index.html", "/chat/secrets.txt", "/chat/dashboard.js"]) {
    const r = await fetch(`${url}${missing}`);
    check(r.status === 404, `${missing}: ${r.status}`);
  }
  const post = await fetch(`${url}/`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  check(post.status === 405, `POST /: ${post.status}`);
}

// ---- the page ---------------------------------------------------------------------------------

// Every console error or warning, uncaught exception, failed request and error answer, with the
// step it came in; a step lists what it expects.
function watch(page) {
  const w = { phase: "load", problems: [] };
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") w.problems.push({ phase: w.phase, what: `console ${m.type()}: ${m.text()}` });
  });
  page.on("pageerror", (e) => w.problems.push({ phase: w.phase, what: `uncaught: ${e.message}` }));
  page.on("requestfailed", (r) => w.problems.push({ phase: w.phase, what: `request failed: ${r.url()} ${r.failure()?.errorText}`,
    failed: r.url() }));
  page.on("response", (r) => {
    if (r.status() >= 400) w.problems.push({ phase: w.phase, what: `${r.status()} for ${r.url()}`, status: r.status(), url: r.url() });
  });
  return w;
}

// The bodies and headers of the page's chat requests, in order.
function recordRequests(page) {
  const requests = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/chat/completions")) requests.push({ body: JSON.parse(r.postData() ?? "{}"), headers: r.headers() });
  });
  return requests;
}

// Starts counting, on every animation frame, the distinct lengths the newest answer's text takes.
function startFrameSampler(page) {
  return page.evaluate(() => {
    window.__lengths = [];
    const tick = () => {
      const texts = document.querySelectorAll('.msg[data-role="assistant"] .text');
      const last = texts[texts.length - 1];
      if (last) window.__lengths.push(last.textContent.length);
      window.__sampling = requestAnimationFrame(tick);
    };
    tick();
  });
}
async function stopFrameSampler(page) {
  return page.evaluate(() => {
    cancelAnimationFrame(window.__sampling);
    return window.__lengths;
  });
}

// Sets a field of the settings panel, opening the panel for it and closing it again.
async function setSetting(page, id, value) {
  const closed = await page.isHidden("#settings");
  if (closed) await page.click("#settings-toggle");
  await page.fill(`#${id}`, value);
  if (closed) await page.click("#settings-toggle");
}

const assistantCount = (page) => page.locator('.msg[data-role="assistant"]').count();
async function sendAndWait(page, text, stateName = "done") {
  const before = await assistantCount(page);
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
  await page.waitForFunction(([n, s]) => {
    const replies = document.querySelectorAll('.msg[data-role="assistant"]');
    return replies.length === n + 1 && replies[n].dataset.state === s;
  }, [before, stateName], { timeout: 30000 });
  return page.locator('.msg[data-role="assistant"] .text').nth(before).textContent();
}

async function conversation(page, server, requests) {
  // Settings: a system prompt, a seed and a temperature; the choices are kept in localStorage.
  await page.click("#settings-toggle");
  check(await page.isVisible("#settings"), "Settings opens the settings");
  await page.selectOption("#model", "kiln-default");
  await page.fill("#system", "You are a narrator of old stories.");
  await page.fill("#temperature", "0.7");
  await page.fill("#top-p", "0.9");
  await page.fill("#max-tokens", "48");
  await page.fill("#seed", "11");
  await page.click("#settings-toggle");

  // kiln's default model answers 48 tokens in a few tens of milliseconds, within two frames on
  // this page; a slow link (16 KB/s: each token's event is ~250 bytes) spreads each answer over
  // a second, so that the test sees whether the page renders the deltas as they arrive.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: 16 * 1024, uploadThroughput: -1 });
  const turns = ["Who is the prince?", "What did he say to Natasha?", "And then?"];
  const replies = [];
  for (const [i, turn] of turns.entries()) {
    await startFrameSampler(page);
    const reply = await sendAndWait(page, turn);
    const lengths = await stopFrameSampler(page);
    replies.push(reply);
    const distinct = new Set(lengths.filter((n) => n > 0));
    check(reply.length > 0, `turn ${i + 1}: an answer came back`);
    check(distinct.size >= 3, `turn ${i + 1}: the answer grew over several frames (lengths seen: ${[...distinct].join(", ")})`);
    const body = requests[requests.length - 1]?.body ?? {};
    check(body.stream === true && body.model === "kiln-default", `turn ${i + 1}: a streamed request for the picked model`);
    check(body.temperature === 0.7 && body.top_p === 0.9 && body.max_tokens === 48 && body.seed === 11,
      `turn ${i + 1}: the settings are sent: ${JSON.stringify(body)}`);
    const expected = [{ role: "system", content: "You are a narrator of old stories." }];
    for (let j = 0; j <= i; j++) {
      expected.push({ role: "user", content: turns[j] });
      if (j < i) expected.push({ role: "assistant", content: replies[j] });
    }
    check(JSON.stringify(body.messages) === JSON.stringify(expected),
      `turn ${i + 1}: the request carries the earlier turns as shown: ${JSON.stringify(body.messages)}`);
  }
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await cdp.detach();
  check((await page.locator(".msg").count()) === 6, "six messages are shown");
  check(await page.evaluate(() => JSON.parse(localStorage.getItem("kiln.chat.settings")).seed === "11"), "settings are kept");
  log(`three turns: ${replies.map((r) => JSON.stringify(r.slice(0, 40))).join(" / ")}`);
}

async function stopAnswer(page, server, watcher) {
  await page.selectOption("#model", "tiny");
  await setSetting(page, "temperature", "0");
  await setSetting(page, "max-tokens", "30000");
  const before = await cancelledByClient(server, "tiny");
  const n = await assistantCount(page);
  watcher.phase = "stop";
  await page.fill("#prompt", "Tell me everything.");
  await page.click("#send");
  // Stop once the answer is visibly streaming (a few dozen tokens of the thousands asked for).
  await page.waitForFunction((i) => (document.querySelectorAll('.msg[data-role="assistant"] .text')[i]?.textContent.length ?? 0) > 100,
    n, { timeout: 20000 });
  check(await page.isEnabled("#stop") && await page.isDisabled("#send"), "Stop is enabled and Send disabled while answering");
  await page.click("#stop");
  await page.waitForFunction((i) => document.querySelectorAll('.msg[data-role="assistant"]')[i]?.dataset.state === "stopped", n,
    { timeout: 10000 });
  const stopped = await page.locator('.msg[data-role="assistant"] .text').nth(n).textContent();
  check(await page.isDisabled("#stop") && await page.isEnabled("#send"), "after Stop, Send is enabled again");
  // The server saw the connection close and cancelled the generation.
  let after = before;
  for (let i = 0; i < 100 && after === before; i++) {
    await sleep(50);
    after = await cancelledByClient(server, "tiny");
  }
  check(after === before + 1, `the server cancelled the request: kiln_requests_cancelled_total{reason="client"} ${before} -> ${after}`);
  let line;
  for (let i = 0; i < 40 && !line; i++) {
    line = logEvents(server).find((e) => e["url.path"] === "/v1/chat/completions" && e["kiln.client_closed"] === true);
    if (!line) await sleep(50);
  }
  check(line !== undefined && line["event.outcome"] === "failure" && / \(client closed\) /.test(line.message) &&
    line["kiln.timing.total_ms"] < 5000,
  `the request's log line says the client closed it, well before its 30000 tokens: ${JSON.stringify(line)?.slice(0, 600)}`);
  log(`stopped after ${stopped.length} characters, ${line?.["kiln.timing.total_ms"]} ms into the request`);
  // The stopped fetch is the one request allowed to fail here.
  watcher.phase = "after stop";
  const allowed = watcher.problems.filter((p) => p.phase === "stop");
  check(allowed.every((p) => p.failed?.endsWith("/v1/chat/completions")), `only the stopped request failed: ${JSON.stringify(allowed)}`);

  // The conversation goes on after a stop: the stopped text is part of it.
  await setSetting(page, "max-tokens", "16");
  const next = await sendAndWait(page, "Go on.");
  check(next.length > 0, "a turn after Stop is answered");
}

async function serverError(page, requests, watcher) {
  watcher.phase = "error";
  const shown = await page.locator(".msg").count();
  await setSetting(page, "temperature", "5");
  await page.fill("#prompt", "Too hot");
  await page.press("#prompt", "Enter");
  await page.waitForSelector("#error:not([hidden])", { timeout: 10000 });
  const message = await page.textContent("#error");
  check(/400/.test(message) && /temperature/.test(message), `the server's error is shown: ${message}`);
  check((await page.locator(".msg").count()) === shown, "the refused turn is not left in the conversation");
  check((await page.inputValue("#prompt")) === "Too hot", "the refused message is back in the box");
  const refused = watcher.problems.filter((p) => p.phase === "error");
  check(refused.every((p) => p.status === 400 || /status of 400/.test(p.what)), `only the 400 was seen: ${JSON.stringify(refused)}`);
  watcher.phase = "after error";
  await setSetting(page, "temperature", "0.7");
  await page.fill("#prompt", "");
}

async function newChat(page, requests) {
  await page.click("#new-chat");
  check((await page.locator(".msg").count()) === 0 && await page.isVisible("#empty"), "New chat empties the conversation");
  await sendAndWait(page, "Hello again.");
  const body = requests[requests.length - 1].body;
  check(body.messages.length === 2 && body.messages[1].content === "Hello again.",
    `after New chat the request holds the system prompt and the new turn only: ${JSON.stringify(body.messages)}`);
}

async function accessibility(page) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => (el.labels?.length ?? 0) === 0 && !el.textContent.trim() && !el.getAttribute("aria-label"))
    .map((el) => el.id || el.outerHTML.slice(0, 60)));
  check(unlabelled.length === 0, `every control has a label: ${unlabelled.join(", ")}`);
  check(await page.getAttribute("#conversation", "role") === "log" && await page.getAttribute("#error", "role") === "alert",
    "the conversation is a log region and errors are alerts");
}

// The conversation of kiln's default model, with the settings open (wide), then narrow and dark.
async function screenshots(page) {
  await page.click("#settings-toggle");
  await page.screenshot({ path: screenshotPath, fullPage: false });
  await page.click("#settings-toggle");
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(200);
  const narrow = await page.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    composer: document.querySelector("#composer").getBoundingClientRect().bottom <= window.innerHeight + 1,
    send: document.querySelector("#send").getBoundingClientRect().width > 0,
  }));
  check(narrow.overflow <= 0 && narrow.composer && narrow.send, `the narrow layout fits the screen: ${JSON.stringify(narrow)}`);
  await page.screenshot({ path: screenshotPath.replace(/\.png$/, "_narrow.png") });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 1100, height: 800 });
  await page.screenshot({ path: screenshotPath.replace(/\.png$/, "_dark.png") });
  await page.emulateMedia({ colorScheme: "light" });
  log(`screenshots: ${screenshotPath} (and _narrow, _dark)`);
}

async function withKey(page, server, watcher) {
  // The page itself is open; the API is not.
  const open = await fetch(`${server.url}/`);
  check(open.status === 200, `GET / with a key set, without the key: ${open.status}`);
  const models = await fetch(`${server.url}/v1/models`);
  check(models.status === 401, `/v1/models without the key: ${models.status}`);
  const chat = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "kiln-default", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
  check(chat.status === 401, `/v1/chat/completions without the key: ${chat.status}`);

  const requests = recordRequests(page);
  watcher.phase = "no key";
  await page.goto(`${server.url}/`);
  await page.waitForSelector("#key-form:not([hidden])", { timeout: 10000 });
  check(/needs its API key/.test(await page.textContent("#error")), "the page says the key is needed");
  check(await page.evaluate(() => document.activeElement?.id === "key"), "the key field has the focus");
  watcher.phase = "wrong key";
  await page.fill("#key", "sk-wrong");
  await page.click('#key-form button[type="submit"]');
  await page.waitForFunction(() => /refused this API key/.test(document.querySelector("#error").textContent), null, { timeout: 10000 });
  watcher.phase = "keyed";
  await page.fill("#key", KEY);
  await page.click('#key-form button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll("#model option")].some((o) => o.value === "kiln-default"), null,
    { timeout: 10000 });
  check(await page.isHidden("#key-form") && await page.isHidden("#error"), "the key form and the error close once the key works");
  check(await page.evaluate((k) => sessionStorage.getItem("kiln.chat.apiKey") === k, KEY), "the key is kept in sessionStorage");
  await page.selectOption("#model", "kiln-default");
  await setSetting(page, "max-tokens", "12");
  const reply = await sendAndWait(page, "Hello with a key.");
  check(reply.length > 0, "with the key, the page chats");
  check(requests.length === 1 && requests[0].headers.authorization === `Bearer ${KEY}`, "the chat request sends the key as Bearer");
  const refusals = watcher.problems.filter((p) => ["no key", "wrong key"].includes(p.phase));
  check(refusals.every((p) => p.status === 401 || /status of 401/.test(p.what)), `only 401s before the key: ${JSON.stringify(refusals)}`);
}

async function main() {
  const open = await startServer([]);
  log(`kiln serve at ${open.url}`);
  await checkServing(open.url);

  context = await launchHeadless(chromium, userDataDir, { width: 1100, height: 800 });
  const page = context.pages()[0] ?? (await context.newPage());
  const watcher = watch(page);
  const requests = recordRequests(page);
  await page.goto(`${open.url}/`);
  await page.waitForFunction(() => document.querySelectorAll("#model option").length === 2 &&
    [...document.querySelectorAll("#model option")].every((o) => o.value !== ""), null, { timeout: 10000 });
  check(await page.isHidden("#key-form"), "without a server key the page does not ask for one");
  check(await page.evaluate(() => document.activeElement?.id === "prompt"), "the message box has the focus");
  await accessibility(page);
  watcher.phase = "conversation";
  await conversation(page, open, requests);
  await screenshots(page);
  await stopAnswer(page, open, watcher);
  await serverError(page, requests, watcher);
  await newChat(page, requests);
  const unexpected = watcher.problems.filter((p) => !["stop", "error"].includes(p.phase));
  check(unexpected.length === 0, `no console error, exception or failed request: ${JSON.stringify(unexpected.slice(0, 5))}`);

  const keyed = await startServer(["--api-key", KEY]);
  log(`kiln serve with an API key at ${keyed.url}`);
  const keyPage = await context.newPage();
  const keyWatcher = watch(keyPage);
  await withKey(keyPage, keyed, keyWatcher);
  const left = keyWatcher.problems.filter((p) => !["no key", "wrong key"].includes(p.phase));
  check(left.length === 0, `no unexpected console error with the key: ${JSON.stringify(left.slice(0, 5))}`);
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
  for (const s of servers) console.error(`server log (${s.url}):\n${s.log.join("").slice(-3000)}`);
  code = 1;
}
console.log(`serve_chat_page: ${failures.length === 0 ? "1 passed, 0 failed" : "0 passed, 1 failed"} (${failures.length} failed checks, ${elapsed()} s)`);
process.exit(code);
