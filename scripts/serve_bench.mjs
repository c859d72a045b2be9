#!/usr/bin/env node
// Load generator for `kiln serve`: N concurrent streaming /v1/completions requests, each with a
// prompt of exactly P token ids and G new tokens (ignore_eos), from this second process over
// 127.0.0.1. Reports aggregate generated tokens/s, p50/p99 time to first token and inter-token
// latency, and memory: per idle connection and per active sequence (RSS from /stats).
//
//   node scripts/serve_bench.mjs --url http://127.0.0.1:8080 --model NAME --streams 1,4,16 [--prompt 128] [--gen 128]
//        [--idle-conns 256] [--arrival-rate R] [--json]
//
// --arrival-rate R: a mixed load: the streams of a level start R per second, evenly spaced, so
// new prompts are prefilled while earlier streams decode (0, the default: all at once).
//
// Every stream gets different random prompt ids (seeded), so the prefix cache does not make
// the prefill free. Each token arrives as its own chunk (logprobs: 0 forces a chunk even when a
// token releases no text), so the gaps between chunks are inter-token latencies.
import net from "node:net";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]?.startsWith("--") || all[i + 1] === undefined ? "1" : all[i + 1]]] : acc), []),
);
const url = args.url ?? "http://127.0.0.1:8080";
const model = args.model;
const levels = (args.streams ?? "1,4,16,64").split(",").map(Number);
const promptLen = Number(args.prompt ?? 128);
const genLen = Number(args.gen ?? 128);
const idleConns = Number(args["idle-conns"] ?? 0);
const asJson = args.json !== undefined;
const arrivalRate = Number(args["arrival-rate"] ?? 0);
const vocab = Number(args.vocab ?? 32000);
if (!model) {
  console.error("serve_bench: --model NAME is required");
  process.exit(2);
}

let seed = 12345;
function rand() {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
function prompt() {
  const ids = [1];
  while (ids.length < promptLen) ids.push(100 + Math.floor(rand() * (vocab - 100)));
  return ids;
}

async function stats() {
  return (await fetch(`${url}/stats`)).json();
}

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function oneStream(ids) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: ids, max_tokens: genLen, temperature: 0, ignore_eos: true, stream: true, logprobs: 0 }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buf = "";
  let tokens = 0;
  let ttft = NaN;
  let last = 0;
  const gaps = [];
  for await (const part of res.body) {
    buf += decoder.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      const c = j.choices?.[0];
      if (!c || !c.logprobs) continue;
      const now = performance.now();
      tokens += c.logprobs.tokens.length;
      if (tokens === c.logprobs.tokens.length) ttft = now - t0;
      else gaps.push(now - last);
      last = now;
    }
  }
  return { tokens, ttft, gaps, end: performance.now() };
}

async function level(n) {
  const prompts = Array.from({ length: n }, prompt);
  const before = await stats();
  let peakRss = before.memory.rss_bytes;
  let peakKv = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const s = await stats();
      peakRss = Math.max(peakRss, s.memory.rss_bytes);
      const e = s.models.find((m) => m.name === model)?.engine;
      if (e) peakKv = Math.max(peakKv, e.kv_blocks_used);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const t0 = performance.now();
  const results = await Promise.all(
    prompts.map(async (ids, i) => {
      if (arrivalRate > 0 && i > 0) await new Promise((r) => setTimeout(r, t0 + (1000 * i) / arrivalRate - performance.now()));
      return oneStream(ids);
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  sampling = false;
  await sampler;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  const ttfts = results.map((r) => r.ttft).sort((a, b) => a - b);
  const gaps = results.flatMap((r) => r.gaps).sort((a, b) => a - b);
  const after = await stats();
  const e = after.models.find((m) => m.name === model)?.engine ?? {};
  return {
    streams: n,
    arrival_rate: arrivalRate,
    prompt_tokens: promptLen,
    gen_tokens: genLen,
    generated: tokens,
    wall_s: +wall.toFixed(2),
    tok_per_s: +(tokens / wall).toFixed(1),
    ttft_p50_ms: +pct(ttfts, 50).toFixed(0),
    ttft_p99_ms: +pct(ttfts, 99).toFixed(0),
    itl_p50_ms: +pct(gaps, 50).toFixed(1),
    itl_p99_ms: +pct(gaps, 99).toFixed(1),
    rss_growth_per_seq_kib: +((peakRss - before.memory.rss_bytes) / n / 1024).toFixed(0),
    kv_blocks_peak: peakKv,
    kv_block_tokens: e.kv_block_tokens,
  };
}

async function idleConnections(n) {
  const before = (await stats()).memory.rss_bytes;
  const { hostname, port } = new URL(url);
  const sockets = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const s = net.connect(Number(port), hostname, () => resolve(s));
      s.on("error", reject);
    })),
  );
  await new Promise((r) => setTimeout(r, 300));
  const s = await stats();
  const open = s.connections.open;
  const after = s.memory.rss_bytes;
  for (const sock of sockets) sock.destroy();
  return { idle_connections: n, open_seen: open, rss_per_idle_conn_bytes: Math.round((after - before) / n) };
}

// Warm-up: page the weights in and start the engine's threads, so the first level's latency
// and memory growth measure serving, not loading.
{
  const saved = seed;
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: prompt().slice(0, 16), max_tokens: 2, temperature: 0 }),
  });
  if (r.status !== 200) throw new Error(`warm-up: HTTP ${r.status}: ${await r.text()}`);
  seed = saved;
}

const out = [];
if (idleConns > 0) out.push(await idleConnections(idleConns));
for (const n of levels) out.push(await level(n));
if (asJson) {
  console.log(JSON.stringify(out));
} else {
  for (const r of out) console.log(Object.entries(r).map(([k, v]) => `${k}=${v}`).join(" "));
}
