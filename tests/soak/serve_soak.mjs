// The soak tier for `kiln serve`: one server under a long run of mixed traffic and abuse, then
// SIGTERM with requests still in flight. It starts the server itself on the tiny random-weight
// model and, concurrently for KILN_SOAK_SECONDS (default 600):
//   - plain and streamed /v1/completions and /v1/chat/completions at temperature 0 over a fixed
//     set of requests (prompts of various lengths, n = 1..3, logprobs on some), through Node's
//     http and through the official openai client; every 200 must equal the answer the same
//     request got alone at the start (text of each choice, finish_reason, logprobs, usage), a
//     stream reassembled from its events, which must end with [DONE];
//   - clients that close their connection mid-stream or while waiting (the server must count
//     each in /stats requests.cancelled_by_client);
//   - bursts beyond --max-running + --max-queued: 429 with Retry-After, honoured, retried until
//     the request succeeds;
//   - oversize bodies (413), headers (431), malformed JSON and HTTP (400), prompts too long for
//     the context (400), bad fields (400), wrong method, type and model: each its documented
//     status and an OpenAI-shaped error body;
//   - slow clients: streams read with long pauses, requests sent piece by piece within the
//     timeouts (answered) and stalled beyond them (408, or closed), and a few hundred idle
//     connections;
//   - three requests pipelined on one connection: three exact answers, in order;
//   - a small request (max_tokens 1) every 200 ms whose latency is recorded;
//   - the server's RSS, sampled every second from /proc.
// Then SIGTERM while long requests stream: every request the server accepted must still finish
// exactly, later ones must be refused cleanly (503 shutting_down, or the connection refused),
// and the server must exit 0 within its grace period with nothing alarming in its log.
//
// Usage: KILN_BIN=build/kiln node tests/soak/serve_soak.mjs [SUMMARY.json]
// Environment: KILN_DATA_DIR (default ../shared/data from the repository), KILN_SOAK_SECONDS,
// KILN_SOAK_IDLE_CONNECTIONS (default 300), KILN_SOAK_PEAK_RSS_MIB (default 256),
// KILN_SOAK_RSS_GROWTH_MIB (default 32). Exits 77 (ctest's skip) without the model, 1 on any
// violation, each described on stderr. Prints a one-line JSON summary and writes it to
// SUMMARY.json (default serve_soak_summary.json), the server's log beside it.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { fileURLToPath } from "node:url";

const SKIP = 77;
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const dataDir = process.env.KILN_DATA_DIR ?? path.resolve(repo, "../shared/data");
const modelPath = path.join(dataDir, "llama-2-tiny-random.gguf");
const MODEL = "llama-2-tiny-random";
const kilnBin = process.env.KILN_BIN ?? path.join(repo, "build/kiln");
const summaryPath = path.resolve(process.argv[2] ?? "serve_soak_summary.json");
const serverLogPath = summaryPath.replace(/\.json$/, "") + "_server.log";

const SECONDS = Number(process.env.KILN_SOAK_SECONDS ?? 600);
const IDLE_CONNECTIONS = Number(process.env.KILN_SOAK_IDLE_CONNECTIONS ?? 300);
const PEAK_RSS_MIB = Number(process.env.KILN_SOAK_PEAK_RSS_MIB ?? 256);
const RSS_GROWTH_MIB = Number(process.env.KILN_SOAK_RSS_GROWTH_MIB ?? 32);

// The server's limits: small queues so that bursts really overflow them, short timeouts so that
// slow clients run into them within the run.
const CTX = 4096;
const MAX_RUNNING = 8;
const MAX_QUEUED = 8;
const MAX_BODY = 256 * 1024;
const MAX_HEADER = 16 * 1024;
const READ_TIMEOUT = 5;
const IDLE_TIMEOUT = 15;
const GRACE = 30;

fs.rmSync(summaryPath, { force: true });  // a skipped or failed run leaves no figures of an older one
if (!fs.existsSync(modelPath)) {
  console.log(`SKIP: ${modelPath} is absent (set KILN_DATA_DIR)`);
  process.exit(SKIP);
}
if (!fs.existsSync(kilnBin)) {
  console.error(`serve_soak: no kiln binary at ${kilnBin} (set KILN_BIN)`);
  process.exit(1);
}
let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch (e) {
  console.error(`serve_soak: the npm package openai is missing (scripts/install-deps.sh --test installs it): ${e.message}`);
  process.exit(1);
}

// ---- bookkeeping ------------------------------------------------------------------------------

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);
const violations = [];
function violation(message) {
  violations.push(message);
  if (violations.length <= 50) console.error(`[${elapsed()}s] VIOLATION: ${message}`);
}
const log = (message) => console.error(`[${elapsed()}s] ${message}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// requests[kind][outcome] = count; outcome is the status or the client-side error.
const requests = {};
function tally(kind, outcome) {
  requests[kind] ??= {};
  requests[kind][outcome] = (requests[kind][outcome] ?? 0) + 1;
}
const totals = {
  retries_429: 0,
  completion_tokens_verified: 0,
  answers_verified: 0,
  disconnected_streams: 0,
  disconnected_waiting: 0,
  idle_closed_by_server: 0,
  post_signal_refused: 0,
};

// A fixed pseudo-random sequence, so that two runs send the same traffic mix.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(20240607);
const pick = (list) => list[Math.floor(random() * list.length)];

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// Prose of ordinary words: prompts of every length without a data file.
const WORDS = ("the a of and to in is was that it he for on with as his by at from her had but not be they " +
  "river mountain morning letter soldier village window garden winter evening horse bridge candle " +
  "quietly suddenly remembered walked answered looked thought carried opened listened").split(" ");
const prose = (() => {
  const r = rng(7);
  let s = "";
  while (s.length < 400000) {
    const n = 6 + Math.floor(r() * 10);
    const words = [];
    for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(r() * WORDS.length)]);
    s += words.join(" ") + ". ";
  }
  return s;
})();
const text = (from, bytes) => prose.slice(from, from + bytes);

// ---- the server -------------------------------------------------------------------------------

const serverArgs = [
  "serve", modelPath, "--port", "0", "--ctx", String(CTX),
  "--max-running", String(MAX_RUNNING), "--max-queued", String(MAX_QUEUED),
  "--max-body-bytes", String(MAX_BODY), "--max-header-bytes", String(MAX_HEADER),
  "--read-timeout", String(READ_TIMEOUT), "--idle-timeout", String(IDLE_TIMEOUT),
  "--grace-seconds", String(GRACE),
  "--log-format", "text",  // the checks below read its text lines
];
const serverLog = fs.createWriteStream(serverLogPath);
const server = spawn(kilnBin, serverArgs, { stdio: ["ignore", "pipe", "pipe"] });
let serverExit = null;
const serverExited = new Promise((resolve) =>
  server.on("exit", (code, signal) => {
    serverExit = { code, signal, at: Date.now() };
    resolve();
  }));
// Whatever ends this script, the server must not outlive it.
process.on("exit", () => {
  if (!serverExit) server.kill("SIGKILL");
});
for (const event of ["uncaughtException", "unhandledRejection"]) {
  process.on(event, (e) => {
    console.error(`serve_soak: FAILED: ${e?.stack ?? e}`);
    process.exit(1);
  });
}
let port = 0;
let ready = false;
let stderrTail = "";
const alarming = /internal error|AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer|terminate called|Assertion|Segmentation/;
const alarms = [];
const decoderErr = new StringDecoder("utf8");
server.stdout.on("data", (d) => serverLog.write(d));
server.stderr.on("data", (d) => {
  serverLog.write(d);
  const lines = (stderrTail + decoderErr.write(d)).split("\n");
  stderrTail = lines.pop();
  for (const line of lines) {
    const m = line.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) port = Number(m[1]);
    if (/kiln serve: ready/.test(line)) ready = true;
    if (alarming.test(line)) alarms.push(line);
  }
});
for (let i = 0; i < 1000 && !(port && ready) && !serverExit; i++) await sleep(10);
if (!port || !ready) {
  console.error(`serve_soak: the server did not start (see ${serverLogPath})`);
  server.kill("SIGKILL");
  process.exit(1);
}
log(`kiln serve pid ${server.pid} on port ${port}: ${serverArgs.join(" ")}`);

// ---- HTTP/1.1 over a raw socket (for the bytes no well-behaved client sends) ------------------

// An incremental response parser: framing by Content-Length, chunked encoding or the close.
class ResponseParser {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.state = "head";
    this.status = 0;
    this.headers = {};
    this.body = [];
    this.complete = false;
    this.onBody = null;
  }
  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.pump();
  }
  emit(bytes) {
    if (bytes.length === 0) return;
    this.body.push(bytes);
    if (this.onBody) this.onBody(bytes);
  }
  pump() {
    for (;;) {
      if (this.state === "head") {
        const end = this.buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const lines = this.buf.subarray(0, end).toString("latin1").split("\r\n");
        this.buf = this.buf.subarray(end + 4);
        this.status = Number(lines[0].split(" ")[1]);
        this.headers = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(":");
          this.headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        if (this.status >= 100 && this.status < 200) continue;
        if (/chunked/i.test(this.headers["transfer-encoding"] ?? "")) this.state = "size";
        else if (this.headers["content-length"] !== undefined) {
          this.remaining = Number(this.headers["content-length"]);
          this.state = "length";
          if (this.remaining === 0) this.finish();
        } else this.state = "close";
      } else if (this.state === "length") {
        const n = Math.min(this.remaining, this.buf.length);
        this.emit(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining === 0) this.finish();
        else return;
      } else if (this.state === "size") {
        const end = this.buf.indexOf("\r\n");
        if (end < 0) return;
        const size = parseInt(this.buf.subarray(0, end).toString("latin1"), 16);
        this.buf = this.buf.subarray(end + 2);
        if (size === 0) this.state = "trailer";
        else {
          this.remaining = size;
          this.state = "chunk";
        }
      } else if (this.state === "chunk") {
        const n = Math.min(this.remaining, this.buf.length);
        this.emit(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining > 0) return;
        this.state = "crlf";
      } else if (this.state === "crlf" || this.state === "trailer") {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        if (this.state === "trailer") this.finish();
        else this.state = "size";
      } else if (this.state === "close") {
        this.emit(this.buf);
        this.buf = Buffer.alloc(0);
        return;
      } else {
        return;  // done: what follows belongs to the next response (RawConn.responses)
      }
    }
  }
  finish() {
    this.complete = true;
    this.state = "done";
  }
  eof() {
    if (this.state === "close") this.finish();
  }
  text() {
    return Buffer.concat(this.body).toString("utf8");
  }
}

// One raw connection: send bytes as they are, parse the one response, wait for conditions.
// With pipelined requests, each complete response moves to `responses` and the next one parses
// from the bytes that followed it.
class RawConn {
  constructor() {
    this.parser = new ResponseParser();
    this.responses = [];
    this.closed = false;
    this.error = null;
    this.waiters = [];
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.setNoDelay(true);
    this.connected = new Promise((resolve) => {
      this.sock.once("connect", () => resolve(true));
      this.sock.once("error", () => resolve(false));
    });
    this.sock.on("data", (d) => {
      this.parser.feed(d);
      while (this.parser.complete && this.parser.buf.length > 0) {
        const rest = this.parser.buf;
        this.responses.push(this.parser);
        this.parser = new ResponseParser();
        this.parser.feed(rest);
      }
      this.wake();
    });
    this.sock.on("error", (e) => {
      this.error = e;
    });
    this.sock.on("close", () => {
      this.closed = true;
      this.parser.eof();
      this.wake();
    });
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  send(bytes) {
    return new Promise((resolve) => {
      if (this.closed || this.sock.destroyed) return resolve(false);
      this.sock.write(bytes, (err) => resolve(!err));
    });
  }
  // Resolves true once pred() holds, false after timeoutMs (or once the connection closed
  // without it).
  async until(pred, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (pred()) return true;
      if (this.closed || Date.now() >= deadline) return pred();
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.min(250, Math.max(1, deadline - Date.now())));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  destroy() {
    this.sock.destroy();
  }
}

function requestBytes(method, target, body, extraHeaders = "") {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  if (body !== undefined) head += `Content-Type: application/json\r\nContent-Length: ${b.length}\r\n`;
  head += extraHeaders + "\r\n";
  return Buffer.concat([Buffer.from(head, "latin1"), b]);
}

// ---- server-sent events and answers --------------------------------------------------------

class SseReader {
  constructor() {
    this.decoder = new StringDecoder("utf8");
    this.pending = "";
    this.events = [];
    this.done = false;
    this.afterDone = 0;
    this.malformed = [];
  }
  feed(bytes) {
    this.pending += this.decoder.write(bytes);
    for (let end; (end = this.pending.indexOf("\n\n")) >= 0;) {
      const block = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 2);
      const data = block.split("\n").map((l) => {
        if (!l.startsWith("data: ")) this.malformed.push(l);
        return l.slice(6);
      }).join("\n");
      if (this.done) this.afterDone++;
      else if (data === "[DONE]") this.done = true;
      else {
        try {
          this.events.push(JSON.parse(data));
        } catch {
          this.malformed.push(data.slice(0, 200));
        }
      }
    }
  }
}

// Keys in a fixed order, so that two answers compare as strings.
function canon(x) {
  if (Array.isArray(x)) return x.map(canon);
  if (x && typeof x === "object") {
    const out = {};
    for (const k of Object.keys(x).sort()) out[k] = canon(x[k]);
    return out;
  }
  return x;
}
const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));

// Usage without prompt_tokens_details.cached_tokens: that depends on what else is in the prefix
// cache at the time, not on the request.
const normUsage = (u) => (u ? { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens } : null);

// A whole (non-streamed) answer as {choices: [{index, text, finish_reason, logprobs}], usage};
// throws on a wrong shape.
function normalizeWhole(body, chat) {
  const expectObject = chat ? "chat.completion" : "text_completion";
  if (body.object !== expectObject) throw new Error(`object is ${body.object}, expected ${expectObject}`);
  if (!String(body.id).startsWith(chat ? "chatcmpl-" : "cmpl-")) throw new Error(`id ${body.id}`);
  if (body.model !== MODEL) throw new Error(`model ${body.model}`);
  if (!Array.isArray(body.choices)) throw new Error("no choices");
  const choices = body.choices.map((c) => {
    if (chat && c.message?.role !== "assistant") throw new Error("a chat choice without the assistant role");
    let logprobs = null;
    if (c.logprobs) {
      logprobs = chat ? c.logprobs.content
        : { tokens: c.logprobs.tokens, token_logprobs: c.logprobs.token_logprobs, top_logprobs: c.logprobs.top_logprobs, text_offset: c.logprobs.text_offset };
    }
    return { index: c.index, text: chat ? c.message.content : c.text, finish_reason: c.finish_reason, logprobs };
  });
  return { choices, usage: normUsage(body.usage) };
}

// The same from a stream's parsed events; throws on a wrong shape or an error event.
function normalizeStream(events, chat, includeUsage) {
  const expectObject = chat ? "chat.completion.chunk" : "text_completion";
  const byIndex = new Map();
  let usage = null;
  let id = null;
  for (const ev of events) {
    if (ev.error) throw new Error(`an error event: ${JSON.stringify(ev.error)}`);
    if (ev.object !== expectObject) throw new Error(`chunk object ${ev.object}`);
    if (id === null) id = ev.id;
    else if (ev.id !== id) throw new Error("chunks with different ids");
    if (ev.usage) {
      if (usage) throw new Error("two usage chunks");
      if (ev.choices.length !== 0) throw new Error("the usage chunk has choices");
      usage = ev.usage;
      continue;
    }
    if (includeUsage && ev.usage !== null) throw new Error("a chunk without 'usage': null");
    for (const c of ev.choices) {
      let ch = byIndex.get(c.index);
      if (!ch) byIndex.set(c.index, (ch = { index: c.index, text: "", finish_reason: null, logprobs: null, role: false }));
      if (ch.finish_reason) throw new Error(`choice ${c.index} continues after its finish_reason`);
      if (chat) {
        if (c.delta.role) {
          if (ch.role || ch.text !== "") throw new Error("the role chunk is not the first of its choice");
          ch.role = true;
        }
        ch.text += c.delta.content ?? "";
      } else {
        ch.text += c.text;
      }
      if (c.logprobs) {
        if (chat) (ch.logprobs ??= []).push(...c.logprobs.content);
        else {
          ch.logprobs ??= { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
          for (const k of ["tokens", "token_logprobs", "top_logprobs", "text_offset"]) ch.logprobs[k].push(...c.logprobs[k]);
        }
      }
      if (c.finish_reason) ch.finish_reason = c.finish_reason;
    }
  }
  if (includeUsage && !usage) throw new Error("no usage chunk");
  const choices = [...byIndex.values()].sort((a, b) => a.index - b.index).map((ch) => {
    if (chat && !ch.role) throw new Error(`choice ${ch.index} has no role chunk`);
    if (!ch.finish_reason) throw new Error(`choice ${ch.index} has no finish_reason`);
    return { index: ch.index, text: ch.text, finish_reason: ch.finish_reason, logprobs: ch.logprobs };
  });
  return { choices, usage: normUsage(usage) };
}

// An error answer must be OpenAI's shape: {"error": {message, type, param, code}}.
function checkErrorBody(where, bodyText, expect) {
  let body;
  try {
    body = JSON.parse(bodyText);
  } catch {
    return violation(`${where}: the error body is not JSON: ${String(bodyText).slice(0, 200)}`);
  }
  const e = body?.error;
  const keys = e && typeof e === "object" ? Object.keys(e).sort().join(",") : "";
  if (keys !== "code,message,param,type" || typeof e.message !== "string" || e.message === "" || typeof e.type !== "string" ||
      !(e.param === null || typeof e.param === "string") || typeof e.code !== "string")
    return violation(`${where}: not an OpenAI error body: ${String(bodyText).slice(0, 300)}`);
  if (expect.code && e.code !== expect.code) violation(`${where}: code ${e.code}, expected ${expect.code} (${e.message})`);
  if (expect.type && e.type !== expect.type) violation(`${where}: type ${e.type}, expected ${expect.type}`);
  if (expect.param !== undefined && e.param !== expect.param) violation(`${where}: param ${e.param}, expected ${expect.param}`);
  if (expect.message && !expect.message.test(e.message)) violation(`${where}: the message "${e.message}" does not match ${expect.message}`);
}

// ---- the requests and their reference answers -------------------------------------------------

const completion = (name, fields) => ({ name, chat: false, path: "/v1/completions", body: { model: MODEL, temperature: 0, ...fields } });
const chatReq = (name, fields) => ({ name, chat: true, path: "/v1/chat/completions", body: { model: MODEL, temperature: 0, ...fields } });
const conversation = {
  hi: [{ role: "user", content: "Hi" }],
  sea: [{ role: "system", content: "Be brief." }, { role: "user", content: "Tell me about the sea." }],
  long: [{ role: "system", content: "You summarise." }, { role: "user", content: text(1000, 2500) },
    { role: "assistant", content: "Sure." }, { role: "user", content: "Go on, in more detail." }],
};
// The everyday mix.
const MIX = [
  completion("c-short", { prompt: "Once upon a time", max_tokens: 8 }),
  completion("c-short-n3-lp", { prompt: "Once upon a time", max_tokens: 24, n: 3, logprobs: 3 }),
  completion("c-stop", { prompt: "The capital of France is", max_tokens: 16, n: 2, stop: [" the", "\n"] }),
  completion("c-300", { prompt: text(0, 300), max_tokens: 64 }),
  completion("c-1200-n2-lp", { prompt: text(300, 1200), max_tokens: 32, n: 2, logprobs: 1 }),
  completion("c-4000", { prompt: text(2000, 4000), max_tokens: 48 }),
  completion("c-two-prompts", { prompt: ["Hello", "Goodbye, and thank you"], max_tokens: 12, n: 2 }),
  completion("c-tokens", { prompt: [1, 15043, 3186, 29892, 920], max_tokens: 20 }),
  chatReq("chat-hi", { messages: conversation.hi, max_tokens: 8 }),
  chatReq("chat-hi-n3-lp", { messages: conversation.hi, max_tokens: 20, n: 3, logprobs: true, top_logprobs: 2 }),
  chatReq("chat-sea", { messages: conversation.sea, max_tokens: 40 }),
  chatReq("chat-long-n2", { messages: conversation.long, max_tokens: 24, n: 2 }),
  chatReq("chat-sea-lp0", { messages: conversation.sea, max_tokens: 64, logprobs: true, top_logprobs: 0 }),
];
// Long ones. A stream read with pauses: several MB (each token's event carries ten
// alternatives), more than the sockets buffer, so the server holds the rest while its client
// pauses; under the 8 MiB a server queues for one stream.
const SLOW_READ = chatReq("chat-slow-read", { messages: conversation.sea, max_tokens: 1500, n: 3, logprobs: true, top_logprobs: 10, ignore_eos: true });
// In flight at SIGTERM: seconds of generation each.
const FINAL = [
  completion("c-final-a", { prompt: text(500, 800), max_tokens: 3000, n: 2, ignore_eos: true }),
  completion("c-final-b", { prompt: "In the beginning", max_tokens: 3500, n: 2, ignore_eos: true, logprobs: 2 }),
  chatReq("chat-final", { messages: conversation.long, max_tokens: 3000, ignore_eos: true }),
];
// Cut off by its own client: long enough that the cut comes well before its end.
const DISCONNECT = completion("c-disconnect", { prompt: "The river", max_tokens: 3500, ignore_eos: true });
const PROBE = completion("c-probe", { prompt: "Hello", max_tokens: 1 });

const keepAlive = new http.Agent({ keepAlive: true, timeout: 5000 });  // free sockets close before the server's idle timeout
const probeAgent = new http.Agent({ keepAlive: true, timeout: 5000, maxSockets: 1 });
const openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, timeout: 300000 });

// One HTTP exchange through Node's http client: {status, headers, text, events?} or
// {error, gotHeaders}. onEvent sees each parsed stream event as it arrives.
function httpCall({ method = "POST", path: target, body, agent = keepAlive, stream = false, onHeaders }) {
  return new Promise((resolve) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {};
    let gotHeaders = false;
    let settled = false;
    const settle = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = http.request({ host: "127.0.0.1", port, method, path: target, agent, headers }, (res) => {
      gotHeaders = true;
      if (onHeaders) onHeaders(res);
      const sse = stream && res.statusCode === 200 ? new SseReader() : null;
      const parts = [];
      res.on("data", (d) => (sse ? sse.feed(d) : parts.push(d)));
      res.on("end", () => {
        if (!res.complete) return settle({ error: "truncated", gotHeaders, status: res.statusCode });
        settle({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString("utf8"), sse });
      });
      res.on("error", (e) => settle({ error: e.code ?? e.message, gotHeaders, status: res.statusCode }));
      res.on("close", () => {
        if (!res.complete) settle({ error: "truncated", gotHeaders, status: res.statusCode });
      });
    });
    req.on("error", (e) => settle({ error: e.code ?? e.message, gotHeaders }));
    if (payload) req.write(payload);
    req.end();
  });
}

// The reference answers: each request alone, before any other traffic.
const references = new Map();
async function reference(spec) {
  const r = await httpCall({ path: spec.path, body: spec.body });
  if (r.status !== 200) throw new Error(`reference ${spec.name}: ${r.status ?? r.error} ${r.text ?? ""}`);
  references.set(spec.name, normalizeWhole(JSON.parse(r.text), spec.chat));
}
for (const spec of [...MIX, SLOW_READ, ...FINAL, DISCONNECT, PROBE]) await reference(spec);
// A stream alone must reassemble to the same answer, or nothing later can be compared.
for (const spec of [MIX[1], MIX[9]]) {
  const r = await httpCall({ path: spec.path, body: { ...spec.body, stream: true, stream_options: { include_usage: true } }, stream: true });
  const got = normalizeStream(r.sse.events, spec.chat, true);
  if (!same(got, references.get(spec.name))) {
    console.error(`serve_soak: ${spec.name} streamed alone differs from its whole answer:\n${JSON.stringify(got)}\n${JSON.stringify(references.get(spec.name))}`);
    process.exit(1);
  }
}
log(`${references.size} reference answers`);

// ---- phases -----------------------------------------------------------------------------------

let phase = "run";        // run -> final (no new abuse; long requests start) -> signalled
let signalAt = 0;
const running = () => phase === "run";
const signalled = () => phase === "signalled";

// Compares one answer with its reference; counts its tokens.
function verify(where, spec, got) {
  const want = references.get(spec.name);
  const ok = got.usage === null ? same(got.choices, want.choices) : same(got, want);
  if (!ok) {
    violation(`${where} ${spec.name}: the answer differs from the reference\n  got  ${JSON.stringify(got).slice(0, 600)}\n  want ${JSON.stringify(want).slice(0, 600)}`);
    return false;
  }
  totals.answers_verified++;
  totals.completion_tokens_verified += want.usage.completion_tokens;
  return true;
}

// A 429 (queue_full, with Retry-After), which may come at any time: returns the seconds to wait
// before retrying, or undefined for any other answer.
function refusal(where, r) {
  if (r.status === 429) {
    checkErrorBody(where, r.text, { code: "queue_full", type: "rate_limit_error" });
    const ra = Number(r.headers?.["retry-after"]);
    if (!(ra >= 1)) violation(`${where}: 429 without a Retry-After of at least 1 s (${r.headers?.["retry-after"]})`);
    return ra >= 1 ? ra : 1;
  }
  return undefined;
}

// After SIGTERM a request may be refused: 503 shutting_down, the connection refused, or a
// kept-alive connection closed before the request was read (nothing of a response arrived).
function refusedAfterSignal(where, r) {
  if (!signalled()) return false;
  if (r.status === 503) {
    checkErrorBody(where, r.text, { code: "shutting_down" });
    totals.post_signal_refused++;
    return true;
  }
  if (r.error && !r.gotHeaders && ["ECONNREFUSED", "ECONNRESET", "EPIPE", "socket hang up"].includes(r.error)) {
    totals.post_signal_refused++;
    return true;
  }
  return false;
}

// One generation request through Node's http client, retried after each 429 until it is
// answered. Returns true when it got its exact answer.
async function generateHttp(kind, spec, { stream, includeUsage = true, agent = keepAlive }) {
  const body = stream ? { ...spec.body, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) } : spec.body;
  const where = `${kind} ${stream ? "stream" : "plain"}`;
  for (;;) {
    const r = await httpCall({ path: spec.path, body, agent, stream });
    tally(kind, r.status ?? r.error);
    const wait = refusal(where, r);
    if (wait !== undefined) {
      totals.retries_429++;
      await sleep(wait * 1000);
      if (signalled()) return false;
      continue;
    }
    if (refusedAfterSignal(where, r)) return false;
    if (r.status !== 200 || r.error) {
      violation(`${where} ${spec.name}: ${r.status ?? ""} ${r.error ?? ""} ${(r.text ?? "").slice(0, 300)}`);
      return false;
    }
    try {
      if (stream) {
        if (!r.sse.done) throw new Error("the stream ended without [DONE]");
        if (r.sse.afterDone) throw new Error("events after [DONE]");
        if (r.sse.malformed.length) throw new Error(`malformed events: ${r.sse.malformed.slice(0, 3).join(" | ")}`);
        return verify(where, spec, normalizeStream(r.sse.events, spec.chat, includeUsage));
      }
      return verify(where, spec, normalizeWhole(JSON.parse(r.text), spec.chat));
    } catch (e) {
      violation(`${where} ${spec.name}: ${e.message}`);
      return false;
    }
  }
}

// The same through the official openai client (fetch underneath), retrying 429s itself.
async function generateOpenAI(kind, spec, { stream }) {
  const where = `${kind} openai ${stream ? "stream" : "plain"}`;
  const api = spec.chat ? openai.chat.completions : openai.completions;
  for (;;) {
    let answered = false;  // a stream's head arrived: from then on it must finish
    try {
      if (stream) {
        const s = await api.create({ ...spec.body, stream: true, stream_options: { include_usage: true } });
        answered = true;
        const events = [];
        for await (const chunk of s) events.push(chunk);
        tally(kind, 200);
        return verify(where, spec, normalizeStream(events, spec.chat, true));
      }
      const body = await api.create(spec.body);
      tally(kind, 200);
      return verify(where, spec, normalizeWhole(body, spec.chat));
    } catch (e) {
      if (e instanceof OpenAI.RateLimitError) {
        tally(kind, 429);
        if (e.code !== "queue_full" || e.type !== "rate_limit_error") violation(`${where}: 429 ${e.type}/${e.code}`);
        const ra = Number(e.headers?.get?.("retry-after"));
        if (!(ra >= 1)) violation(`${where}: 429 without Retry-After`);
        totals.retries_429++;
        await sleep((ra >= 1 ? ra : 1) * 1000);
        if (signalled()) return false;
        continue;
      }
      if (signalled() && !answered && (e instanceof OpenAI.APIConnectionError || (e instanceof OpenAI.APIError && e.status === 503))) {
        tally(kind, e.status ?? "connection");
        totals.post_signal_refused++;
        return false;
      }
      tally(kind, e.status ?? e.constructor.name);
      violation(`${where} ${spec.name}: ${e.constructor.name} ${e.status ?? ""} ${e.message}`);
      return false;
    }
  }
}

// ---- traffic ----------------------------------------------------------------------------------

// Steady clients: one request after another from the everyday mix, a quarter through openai.
async function steadyClient(id) {
  const r = rng(1000 + id);
  while (!signalled() || Date.now() - signalAt < 3000) {
    if (signalled()) await sleep(100);  // refusals come fast: no busy loop
    const spec = MIX[Math.floor(r() * MIX.length)];
    const stream = r() < 0.5;
    if (r() < 0.25) await generateOpenAI("steady", spec, { stream });
    else await generateHttp("steady", spec, { stream, includeUsage: r() < 0.7 });
  }
}

// Bursts of one-shot connections, more than the model runs and queues at once.
async function bursts() {
  await sleep(20000);
  while (running()) {
    const tasks = [];
    for (let i = 0; i < 24; i++) {
      const spec = pick(MIX);
      tasks.push(generateHttp("burst", spec, { stream: random() < 0.5, agent: false }));
    }
    await Promise.all(tasks);
    for (let i = 0; i < 40 && running(); i++) await sleep(500);
  }
}

// Clients that go away: mid-stream after the first event, and while waiting for a whole answer.
async function disconnects() {
  let turn = 0;
  while (running()) {
    await sleep(800);
    const streamed = turn++ % 3 !== 2;
    const c = new RawConn();
    if (!(await c.connected)) {
      violation(`disconnect: cannot connect: ${c.error?.code}`);
      continue;
    }
    const body = streamed ? { ...DISCONNECT.body, stream: true } : DISCONNECT.body;
    await c.send(requestBytes("POST", DISCONNECT.path, JSON.stringify(body)));
    if (!streamed) {
      await sleep(100);
      const answered = c.parser.status !== 0;
      c.destroy();
      tally("disconnect_waiting", answered ? `answered ${c.parser.status}` : "closed");
      if (!answered) totals.disconnected_waiting++;
      continue;
    }
    const sse = new SseReader();
    c.parser.onBody = (b) => sse.feed(b);
    await c.until(() => c.parser.status !== 0 && (c.parser.status !== 200 || sse.events.length > 0), 30000);
    if (c.parser.status === 200 && sse.events.length > 0 && !sse.done) {
      c.destroy();
      tally("disconnect_stream", "closed mid-stream");
      totals.disconnected_streams++;
      continue;
    }
    await c.until(() => c.parser.complete, 10000);
    c.destroy();
    tally("disconnect_stream", c.parser.status || c.error?.code || "no answer");
    if (c.parser.status === 429) refusal("disconnect", { status: 429, text: c.parser.text(), headers: c.parser.headers });
    else violation(`disconnect: the stream got ${c.parser.status || "no answer"} ${c.parser.text().slice(0, 200)}`);
  }
}

// Requests the server must refuse, each with its documented status and an OpenAI error body.
const tooLongByTokens = text(10000, 30000);     // ~6000 tokens: tokenized, then refused
const tooLongByBytes = text(50000, 200000);     // refused by its size before tokenizing
const ABUSE = [
  { name: "body over --max-body-bytes", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: text(0, MAX_BODY + 1000) })),
    status: 413, code: "request_too_large", closes: true },
  { name: "Content-Length over the limit, no body", bytes: () => Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n`),
    status: 413, code: "request_too_large", closes: true },
  { name: "headers over --max-header-bytes", bytes: () => requestBytes("GET", "/v1/models", undefined, `X-Filler: ${"x".repeat(MAX_HEADER + 100)}\r\n`),
    status: 431, code: "headers_too_large", closes: true },
  { name: "malformed JSON", bytes: () => requestBytes("POST", "/v1/completions", '{"model": "llama-2-tiny-random", "prompt": '),
    status: 400, code: "invalid_json" },
  { name: "JSON that is not an object", bytes: () => requestBytes("POST", "/v1/chat/completions", "[1, 2, 3]"), status: 400, code: "invalid_json" },
  { name: "malformed request line", bytes: () => Buffer.from("HELLO THERE\r\n\r\n"), status: 400, code: "malformed_request", closes: true },
  { name: "malformed header", bytes: () => Buffer.from("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n"),
    status: 400, code: "malformed_request", closes: true },
  { name: "TLS handshake bytes", bytes: () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]),
    status: 400, code: "malformed_request", closes: true },
  { name: "bad Content-Length", bytes: () => Buffer.from("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n"),
    status: 400, code: "malformed_request", closes: true },
  { name: "prompt too long for the context (tokens)", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: tooLongByTokens, max_tokens: 4 })),
    status: 400, code: "invalid_value", param: "prompt", message: /the prompt has \d+ tokens; the model's context/ },
  { name: "prompt too long for the context (bytes)", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: tooLongByBytes })),
    status: 400, code: "invalid_value", param: "prompt", message: /the prompt has \d+ bytes/ },
  { name: "chat too long for the context", bytes: () => requestBytes("POST", "/v1/chat/completions", JSON.stringify({ model: MODEL, messages: [{ role: "user", content: tooLongByTokens }], max_tokens: 4 })),
    status: 400, code: "invalid_value", param: "messages" },
  { name: "temperature out of range", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "x", temperature: 7 })),
    status: 400, code: "invalid_value", param: "temperature" },
  { name: "n = 0", bytes: () => requestBytes("POST", "/v1/chat/completions", JSON.stringify({ model: MODEL, messages: conversation.hi, n: 0 })),
    status: 400, code: "invalid_value", param: "n" },
  { name: "max_tokens a string", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "x", max_tokens: "ten" })),
    status: 400, code: "invalid_value", param: "max_tokens" },
  { name: "empty messages", bytes: () => requestBytes("POST", "/v1/chat/completions", JSON.stringify({ model: MODEL, messages: [] })),
    status: 400, code: "invalid_value", param: "messages" },
  { name: "no prompt", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL })), status: 400, code: "invalid_value", param: "prompt" },
  { name: "no model", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ prompt: "x" })), status: 400, code: "invalid_value", param: "model" },
  { name: "stream not a boolean", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "x", stream: "yes" })),
    status: 400, code: "invalid_value", param: "stream" },
  { name: "top_logprobs without logprobs", bytes: () => requestBytes("POST", "/v1/chat/completions", JSON.stringify({ model: MODEL, messages: conversation.hi, top_logprobs: 2 })),
    status: 400, code: "invalid_value", param: "top_logprobs" },
  { name: "more choices than the queue holds", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "x", n: MAX_QUEUED + 1, max_tokens: 2 })),
    status: 400, code: "too_many_choices", param: "n" },
  { name: "a token id outside the vocabulary", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: MODEL, prompt: [1, 99999] })),
    status: 400, code: "invalid_value", param: "prompt" },
  { name: "unknown model", bytes: () => requestBytes("POST", "/v1/completions", JSON.stringify({ model: "no-such-model", prompt: "x" })),
    status: 404, code: "model_not_found", param: "model" },
  { name: "wrong method", bytes: () => requestBytes("GET", "/v1/completions"), status: 405, code: "method_not_allowed" },
  { name: "unknown path", bytes: () => requestBytes("GET", "/v2/everything"), status: 404, code: "not_found" },
  { name: "a form body", bytes: () => Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b`),
    status: 415, code: "unsupported_media_type" },
];
async function abuse() {
  let i = 0;
  while (running()) {
    const a = ABUSE[i++ % ABUSE.length];
    const c = new RawConn();
    await c.connected;
    await c.send(a.bytes());
    const got = await c.until(() => c.parser.complete, 20000);
    tally("abuse", c.parser.status || c.error?.code || "no answer");
    if (!got || c.parser.status !== a.status) {
      violation(`abuse "${a.name}": ${c.parser.status || "no answer"} (${c.error?.code ?? ""}), expected ${a.status}: ${c.parser.text().slice(0, 200)}`);
    } else {
      checkErrorBody(`abuse "${a.name}"`, c.parser.text(), { code: a.code, param: a.param, message: a.message });
      if (a.closes && !(await c.until(() => c.closed, 5000))) violation(`abuse "${a.name}": the connection stayed open after the ${a.status}`);
    }
    c.destroy();
    await sleep(150);
  }
}

// Three requests written at once on one connection (HTTP/1.1 pipelining): three answers, in
// order, each exact (or 429).
async function pipelining() {
  const specs = [MIX[0], MIX[7], PROBE];
  while (running()) {
    await sleep(2000);
    const c = new RawConn();
    await c.connected;
    await c.send(Buffer.concat(specs.map((spec) => requestBytes("POST", spec.path, JSON.stringify(spec.body)))));
    const all = () => c.responses.length + (c.parser.complete ? 1 : 0) >= specs.length;
    await c.until(all, 60000);
    const answers = [...c.responses, c.parser].slice(0, specs.length);
    c.destroy();
    for (let i = 0; i < specs.length; i++) {
      const a = answers[i];
      tally("pipelined", a?.complete ? a.status : "no answer");
      if (!a?.complete) {
        violation(`pipelined request ${i + 1} of ${specs.length}: no complete answer (${c.error?.code ?? "connection closed"})`);
        break;
      }
      if (a.status === 429) refusal("pipelined", { status: 429, text: a.text(), headers: a.headers });
      else if (a.status !== 200) violation(`pipelined ${specs[i].name}: ${a.status} ${a.text().slice(0, 200)}`);
      else {
        try {
          verify("pipelined", specs[i], normalizeWhole(JSON.parse(a.text()), specs[i].chat));
        } catch (e) {
          violation(`pipelined ${specs[i].name}: ${e.message}`);
        }
      }
    }
  }
}

// A stream read with long pauses: the server must queue what the client does not take and
// finish it exactly.
async function slowReader(spec, pauses) {
  for (;;) {
    const c = new RawConn();
    await c.connected;
    const sse = new SseReader();
    c.parser.onBody = (b) => sse.feed(b);
    await c.send(requestBytes("POST", spec.path, JSON.stringify({ ...spec.body, stream: true, stream_options: { include_usage: true } })));
    await c.until(() => c.parser.status !== 0, 60000);
    for (let i = 0; i < pauses && !c.parser.complete && !c.closed; i++) {
      c.sock.pause();
      await sleep(2500);
      c.sock.resume();
      await sleep(100);
    }
    await c.until(() => c.parser.complete, 120000);
    c.destroy();
    tally("slow_reader", c.parser.status || c.error?.code || "no answer");
    if (signalled() && c.parser.status === 0 && !c.parser.complete) {
      totals.post_signal_refused++;  // sent after the signal (a 429 retry): refused
      return;
    }
    if (signalled() && c.parser.status === 503) {
      checkErrorBody("slow reader", c.parser.text(), { code: "shutting_down" });
      totals.post_signal_refused++;
      return;
    }
    if (c.parser.status === 429) {
      const wait = refusal("slow reader", { status: 429, text: c.parser.text(), headers: c.parser.headers });
      totals.retries_429++;
      await sleep(wait * 1000);
      continue;
    }
    if (c.parser.status !== 200 || !c.parser.complete || !sse.done) {
      return violation(`slow reader ${spec.name}: ${c.parser.status} complete=${c.parser.complete} done=${sse.done} ${c.error?.code ?? ""}`);
    }
    try {
      return verify("slow reader", spec, normalizeStream(sse.events, spec.chat, true));
    } catch (e) {
      return violation(`slow reader ${spec.name}: ${e.message}`);
    }
  }
}

// Requests sent a few bytes at a time: within the timeouts they are answered; a body that stops
// gets 408, headers that stop get the connection closed (or 408).
async function slowSender(kind) {
  const c = new RawConn();
  await c.connected;
  const spec = MIX[0];
  const bytes = requestBytes("POST", spec.path, JSON.stringify(spec.body));
  const headEnd = bytes.indexOf("\r\n\r\n") + 4;
  const head = bytes.subarray(0, headEnd), body = bytes.subarray(headEnd);
  const started = Date.now();
  if (kind === "within") {
    for (let i = 0; i < 4; i++) {
      await c.send(head.subarray(Math.floor((i * head.length) / 4), Math.floor(((i + 1) * head.length) / 4)));
      await sleep(500);
    }
    for (let i = 0; i < 4; i++) {
      await c.send(body.subarray(Math.floor((i * body.length) / 4), Math.floor(((i + 1) * body.length) / 4)));
      await sleep(READ_TIMEOUT * 1000 / 8);
    }
    await c.until(() => c.parser.complete, 60000);
    c.destroy();
    tally("slow_sender_within", c.parser.status || c.error?.code || "no answer");
    if (c.parser.status === 429) return;  // the queue was full: a fair answer, not what this checks
    if (c.parser.status !== 200) return violation(`slow sender within the timeouts: ${c.parser.status} ${c.parser.text().slice(0, 200)}`);
    try {
      verify("slow sender", spec, normalizeWhole(JSON.parse(c.parser.text()), spec.chat));
    } catch (e) {
      violation(`slow sender: ${e.message}`);
    }
  } else if (kind === "body") {
    await c.send(head);
    await c.send(body.subarray(0, body.length >> 1));
    await c.until(() => c.parser.complete || c.closed, (READ_TIMEOUT + 5) * 1000);
    const took = (Date.now() - started) / 1000;
    tally("slow_sender_body_stalls", c.parser.status || (c.closed ? "closed" : "no answer"));
    if (c.parser.status !== 408) violation(`a stalled body: ${c.parser.status || "no answer"} after ${took.toFixed(1)} s, expected 408 within ${READ_TIMEOUT} s`);
    else checkErrorBody("a stalled body", c.parser.text(), { code: "request_timeout" });
    c.destroy();
  } else {
    await c.send(head.subarray(0, head.length >> 1));
    await c.until(() => c.closed, (IDLE_TIMEOUT + 5) * 1000);
    const took = (Date.now() - started) / 1000;
    tally("slow_sender_header_stalls", c.parser.status || (c.closed ? "closed" : "open"));
    if (!c.closed) violation(`stalled headers: the connection is still open after ${took.toFixed(1)} s (--idle-timeout ${IDLE_TIMEOUT})`);
    else if (c.parser.status && c.parser.status !== 408) violation(`stalled headers: answered ${c.parser.status}`);
    c.destroy();
  }
}
async function slowClients() {
  let turn = 0;
  while (running()) {
    const k = turn % 4;
    // The header stall takes the idle timeout: it runs beside the others, every other round.
    if (k === 0) await slowReader(SLOW_READ, 3);
    else if (k === 1) await slowSender("within");
    else if (k === 2) await slowSender("body");
    else if (Math.floor(turn / 4) % 2 === 0) slowSenderTasks.push(slowSender("headers"));
    turn++;
    await sleep(1000);
  }
}
const slowSenderTasks = [];

// Idle connections that never send a byte; reopened when the server closes them.
// They stay open through SIGTERM, which must close them at once.
const idle = new Set();
let idleAtSignal = 0;
let lastIdleClose = 0;
function openIdle() {
  if (signalled()) return;
  const s = net.connect(port, "127.0.0.1");
  idle.add(s);
  s.on("error", () => {});
  s.on("close", () => {
    idle.delete(s);
    if (signalled()) lastIdleClose = Date.now();
    else totals.idle_closed_by_server++;
    if (!signalled()) setTimeout(openIdle, 100 + Math.floor(random() * 2000));  // spread the waves of timeouts
  });
}
async function idleConnections() {
  for (let i = 0; i < IDLE_CONNECTIONS; i++) {
    openIdle();
    if (i % 20 === 19) await sleep(50);
  }
}

// A small request every 200 ms; its latency is what a light user sees during the abuse.
const probeLatencies = [];
let probeRefused = 0;
async function latencyProbe() {
  while (!signalled()) {
    const start = performance.now();
    const r = await httpCall({ path: PROBE.path, body: PROBE.body, agent: probeAgent });
    const ms = performance.now() - start;
    tally("probe", r.status ?? r.error);
    if (r.status === 200) {
      probeLatencies.push(ms);
      try {
        verify("probe", PROBE, normalizeWhole(JSON.parse(r.text), false));
      } catch (e) {
        violation(`probe: ${e.message}`);
      }
    } else if (r.status === 429) {
      refusal("probe", r);
      probeRefused++;
    } else if (!refusedAfterSignal("probe", r)) {
      violation(`probe: ${r.status ?? r.error} ${(r.text ?? "").slice(0, 200)}`);
    }
    await sleep(Math.max(0, 200 - ms));
  }
}

// The server's memory, every second.
const rss = [];  // [seconds since the traffic started, VmRSS MiB, VmHWM MiB]
let trafficStart = 0;
let serverCpuSeconds = 0;
function readMemory() {
  try {
    // utime and stime, fields 14 and 15 of /proc/PID/stat (after the parenthesised name), in ticks.
    const stat = fs.readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ");
    serverCpuSeconds = (Number(stat[11]) + Number(stat[12])) / 100;
    const status = fs.readFileSync(`/proc/${server.pid}/status`, "utf8");
    const kib = (field) => Number(status.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
    return [kib("VmRSS") / 1024, kib("VmHWM") / 1024];
  } catch {
    return null;
  }
}
const rssTimer = setInterval(() => {
  if (serverExit || !trafficStart) return;
  const m = readMemory();
  if (m) rss.push([(Date.now() - trafficStart) / 1000, m[0], m[1]]);
}, 1000);

// /stats now and then: the gauges must stay sane.
let maxOpenConnections = 0;
async function statsOf() {
  const r = await httpCall({ method: "GET", path: "/stats", agent: false });
  return r.status === 200 ? JSON.parse(r.text) : null;
}
async function statsPoller() {
  while (running()) {
    const s = await statsOf();
    if (!s) violation("GET /stats failed");
    else {
      maxOpenConnections = Math.max(maxOpenConnections, s.connections.open);
      const q = s.requests;
      if (q.active < 0 || q.queued < 0 || q.running < 0 || q.queued > MAX_QUEUED || q.running > MAX_RUNNING)
        violation(`/stats out of range: ${JSON.stringify(q)}`);
    }
    await sleep(5000);
  }
}

// ---- the run ----------------------------------------------------------------------------------

const before = await statsOf();
trafficStart = Date.now();
log(`traffic for ${SECONDS} s`);
await idleConnections();
const steady = Array.from({ length: 5 }, (_, i) => steadyClient(i));
const probe = latencyProbe();
const abusers = [bursts(), disconnects(), abuse(), slowClients(), pipelining(), statsPoller()];
const progress = setInterval(() => {
  const m = rss.at(-1);
  log(`${totals.answers_verified} answers verified, ${totals.retries_429} retries, probe p99 ${percentile([...probeLatencies].sort((a, b) => a - b), 99)?.toFixed(1)} ms, ` +
    `RSS ${m?.[1].toFixed(1)} MiB, ${violations.length} violations`);
}, 30000);
await sleep(SECONDS * 1000);

// Final phase: the abuse stops (its requests finish), then long requests start and, while they
// stream, SIGTERM.
phase = "final";
log("final phase: abuse stops");
await Promise.all(abusers);
await Promise.all(slowSenderTasks);
await sleep(1000);
const after = await statsOf();
const cancelled = after.requests.cancelled_by_client - before.requests.cancelled_by_client;
// Every stream cut after its first event was running; a client that left while waiting may have
// been answered 429 first (not a job), so those count at most once each.
if (cancelled < totals.disconnected_streams || cancelled > totals.disconnected_streams + totals.disconnected_waiting)
  violation(`/stats cancelled_by_client grew by ${cancelled}; the clients closed ${totals.disconnected_streams} streams and ${totals.disconnected_waiting} waiting requests`);

const finalTasks = [];
const accepted = [];  // streams whose 200 arrived before the signal
for (const spec of FINAL) {
  finalTasks.push((async () => {
    for (;;) {
      let headersAt = 0;
      const body = { ...spec.body, stream: true, stream_options: { include_usage: true } };
      const r = await httpCall({ path: spec.path, body, agent: false, stream: true, onHeaders: (res) => {
        headersAt = Date.now();
        if (res.statusCode === 200) accepted.push(spec.name);
      } });
      tally("final", r.status ?? r.error);
      const wait = refusal("final", r);
      if (wait !== undefined && !signalled()) {
        totals.retries_429++;
        await sleep(wait * 1000);
        continue;
      }
      if (r.status === 200 && !r.error) {
        try {
          if (!r.sse.done) throw new Error("the stream ended without [DONE]");
          verify("final", spec, normalizeStream(r.sse.events, spec.chat, true));
        } catch (e) {
          violation(`final ${spec.name} (accepted ${headersAt && signalAt ? ((signalAt - headersAt) / 1000).toFixed(2) + " s before the signal" : ""}): ${e.message}`);
        }
      } else if (!refusedAfterSignal("final", r)) {
        violation(`final ${spec.name}: ${r.status ?? ""} ${r.error ?? ""} ${(r.text ?? "").slice(0, 200)}`);
      }
      return;
    }
  })());
}
finalTasks.push(slowReader(SLOW_READ, 3));
for (let i = 0; i < 200 && accepted.length < FINAL.length; i++) await sleep(50);
await sleep(300);
const inFlight = (await statsOf())?.http?.requests_in_flight ?? 0;
log(`SIGTERM with ${accepted.length} of ${FINAL.length} long streams accepted, ${inFlight} requests in flight`);
if (accepted.length === 0) violation("no long stream was accepted before the signal: the shutdown checked nothing");
// A request whose headers arrived before the signal and its body after: whether it is
// answered or refused, it must be one or the other, cleanly.
const straddler = new RawConn();
await straddler.connected;
const straddleBytes = requestBytes("POST", PROBE.path, JSON.stringify(PROBE.body));
await straddler.send(straddleBytes.subarray(0, straddleBytes.length - 10));
await sleep(100);
idleAtSignal = idle.size;
phase = "signalled";
signalAt = Date.now();
server.kill("SIGTERM");
const straddled = (async () => {
  await sleep(300);
  await straddler.send(straddleBytes.subarray(straddleBytes.length - 10));
  await straddler.until(() => straddler.parser.complete, 60000);
  const st = straddler.parser.status;
  tally("body_across_the_signal", st || straddler.error?.code || "no answer");
  if (st === 200) verify("body across the signal", PROBE, normalizeWhole(JSON.parse(straddler.parser.text()), false));
  else if (st === 503) checkErrorBody("body across the signal", straddler.parser.text(), { code: "shutting_down" });
  else violation(`a body that arrived after the signal: ${st || "no answer"} ${straddler.parser.text().slice(0, 200)}`);
  straddler.destroy();
})();

// New connections after the signal: refused (or 503 shutting_down in the moment before the
// listener closes).
const postSignal = (async () => {
  for (let i = 0; i < 20; i++) {
    await sleep(100);
    const r = await httpCall({ path: PROBE.path, body: PROBE.body, agent: false });
    tally("after_signal", r.status ?? r.error);
    if (r.status === 200) {
      try {
        verify("after signal", PROBE, normalizeWhole(JSON.parse(r.text), false));
      } catch (e) {
        violation(`after the signal: ${e.message}`);
      }
    } else if (!refusedAfterSignal("after the signal", r)) {
      violation(`a request after the signal: ${r.status ?? ""} ${r.error ?? ""} ${(r.text ?? "").slice(0, 200)}`);
    }
  }
})();

const exitTimeout = sleep((GRACE + 10) * 1000).then(() => "timeout");
if ((await Promise.race([serverExited.then(() => "exited"), exitTimeout])) === "timeout") {
  violation(`the server did not exit within ${GRACE + 10} s of SIGTERM`);
  server.kill("SIGKILL");
  await serverExited;
}
const shutdownSeconds = (serverExit.at - signalAt) / 1000;
// The grace period, plus the server's own last moments (2 s for the last writes, then closing).
if (shutdownSeconds > GRACE + 3) violation(`the server took ${shutdownSeconds.toFixed(1)} s to exit after SIGTERM (--grace-seconds ${GRACE})`);
if (serverExit.code !== 0) violation(`the server exited with ${serverExit.code ?? serverExit.signal}`);
await Promise.all([...finalTasks, postSignal, straddled, probe, ...steady]);
if (idle.size > 0) violation(`${idle.size} idle connections still open after the server exited`);
const idleClosedAfter = lastIdleClose ? (lastIdleClose - signalAt) / 1000 : null;
if (idleAtSignal > 0 && !(idleClosedAfter <= Math.min(2, shutdownSeconds)))
  violation(`the last of ${idleAtSignal} idle connections closed ${idleClosedAfter} s after SIGTERM (the server exited after ${shutdownSeconds} s)`);
clearInterval(rssTimer);
clearInterval(progress);
serverLog.end();
await new Promise((r) => serverLog.on("finish", r));
const serverLogText = fs.readFileSync(serverLogPath, "utf8");
for (const line of alarms) violation(`server log: ${line}`);
if (!/kiln serve: stopped\s*$/m.test(serverLogText)) violation("the server's log does not end with a clean 'stopped'");

// Memory: a peak under the bound, and the RSS of the last minute no more than a margin above
// the RSS after the first minute (a fifth of the run for short runs).
const peakHwm = Math.max(...rss.map((r) => r[2]));
const span = rss.length ? rss.at(-1)[0] : 0;
const warm = Math.min(60, span / 5);
const rssAfterWarmup = rss.find((r) => r[0] >= warm)?.[1] ?? NaN;
const late = rss.filter((r) => r[0] >= span - warm).map((r) => r[1]);
const rssLate = late.length ? Math.max(...late) : NaN;
const rssTrafficMax = Math.max(...rss.map((r) => r[1]));
fs.writeFileSync(summaryPath.replace(/\.json$/, "") + "_rss.tsv", rss.map((r) => r.map((x) => x.toFixed(1)).join("\t")).join("\n") + "\n");
if (!(peakHwm < PEAK_RSS_MIB)) violation(`peak RSS ${peakHwm.toFixed(1)} MiB, bound ${PEAK_RSS_MIB} MiB`);
if (!(rssLate <= rssAfterWarmup + RSS_GROWTH_MIB))
  violation(`RSS grew from ${rssAfterWarmup.toFixed(1)} MiB (first ${warm.toFixed(0)} s) to ${rssLate.toFixed(1)} MiB (last minute); bound +${RSS_GROWTH_MIB} MiB`);

const sorted = [...probeLatencies].sort((a, b) => a - b);
const engine = after.models[0].engine;
const summary = {
  soak_seconds: SECONDS,
  wall_seconds: Number(((Date.now() - trafficStart) / 1000).toFixed(1)),
  requests,
  retries_429: totals.retries_429,
  answers_verified: totals.answers_verified,
  completion_tokens_verified: totals.completion_tokens_verified,
  engine_generated_tokens: engine.generated_tokens_total,
  engine_requests: engine.requests_total,
  engine_preemptions: engine.preemptions_total,
  http_requests: after.http.requests_total,
  server_cpu_seconds: serverCpuSeconds,
  connections_total: after.connections.total,
  max_open_connections: maxOpenConnections,
  cancelled_by_client: cancelled,
  client_disconnects: { mid_stream: totals.disconnected_streams, waiting: totals.disconnected_waiting },
  idle_closed_by_server: totals.idle_closed_by_server,
  probe_ms: { count: sorted.length, p50: Number(percentile(sorted, 50)?.toFixed(1)), p99: Number(percentile(sorted, 99)?.toFixed(1)),
    max: Number(sorted.at(-1)?.toFixed(1)), refused_429: probeRefused },
  rss_mib: { peak_hwm: Number(peakHwm.toFixed(1)), max_during_traffic: Number(rssTrafficMax.toFixed(1)), after_warmup: Number(rssAfterWarmup.toFixed(1)), last_minute_max: Number(rssLate.toFixed(1)) },
  shutdown: { accepted_long_streams: accepted.length, in_flight_at_signal: inFlight, idle_connections_at_signal: idleAtSignal,
    idle_closed_within_s: idleClosedAfter, exit_code: serverExit.code,
    seconds: Number(shutdownSeconds.toFixed(2)), refused_after_signal: totals.post_signal_refused },
  violations: violations.length,
};
const line = JSON.stringify(summary);
console.log(line);
fs.writeFileSync(summaryPath, line + "\n");
log(`summary in ${summaryPath}, server log in ${serverLogPath}`);
if (violations.length) {
  console.error(`serve_soak: FAILED with ${violations.length} violation(s); the first:`);
  for (const v of violations.slice(0, 10)) console.error(`  - ${v}`);
  process.exit(1);
}
console.error("serve_soak: passed");
process.exit(0);
