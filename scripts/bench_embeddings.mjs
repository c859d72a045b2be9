// Embedding throughput of kiln serve (/v1/embeddings) beside llama.cpp (node-llama-cpp@3.21.1's
// embedding API) on the same GGUF, the same texts and the same pooling, one after the other in
// one run so that neither competes with the other for the cores.
//
// usage: node scripts/bench_embeddings.mjs MODEL.gguf [--inputs N] [--words W] [--batch B]
//                                          [--threads T] [--reps R] [--kiln build/kiln]
//
// The texts are N consecutive pieces of W words of War and Peace (../shared/data). kiln gets them
// in requests of B inputs (the whole set by default), which its engine batches into forward passes;
// node-llama-cpp's LlamaEmbeddingContext embeds one text at a time (its API has no batch call).
// Both pool the last token's hidden state (what node-llama-cpp does for a model without
// <arch>.pooling_type; kiln serve runs with --pooling last), and the vectors are compared. Each
// side runs one warm-up text, then R timed passes over all texts; the best pass counts. Prints a
// table and one line of JSON with inputs/s, tokens/s and kiln's ratio to llama.cpp.
import {spawn} from "node:child_process";
import {readFileSync} from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function parseArgs(argv) {
  const a = {model: null, inputs: 64, words: 40, batch: 0, threads: 2, reps: 3, kiln: path.join(root, "build/kiln")};
  for (let i = 0; i < argv.length; ++i) {
    const flag = argv[i];
    const value = () => argv[++i];
    if (flag === "--inputs") a.inputs = Number(value());
    else if (flag === "--words") a.words = Number(value());
    else if (flag === "--batch") a.batch = Number(value());
    else if (flag === "--threads" || flag === "-t") a.threads = Number(value());
    else if (flag === "--reps") a.reps = Number(value());
    else if (flag === "--kiln") a.kiln = value();
    else if (flag.startsWith("-")) throw new Error(`unknown option ${flag}`);
    else a.model = flag;
  }
  if (!a.model) throw new Error("usage: bench_embeddings.mjs MODEL.gguf [--inputs N] [--words W] [--batch B] [--threads T] [--reps R]");
  if (a.batch <= 0) a.batch = a.inputs;
  return a;
}

function texts(n, words) {
  const data = process.env.KILN_DATA_DIR ?? path.join(root, "../shared/data");
  const all = readFileSync(path.join(data, "war-and-peace.txt"), "utf8").split(/\s+/).filter(Boolean);
  const start = 20000;  // past the front matter
  return Array.from({length: n}, (_, i) => all.slice(start + i * words, start + (i + 1) * words).join(" "));
}

const cosine = (a, b) => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / Math.sqrt(aa * bb);
};

async function startKiln(args) {
  const child = spawn(args.kiln, ["serve", args.model, "--port", "0", "-t", String(args.threads), "--pooling", "last",
    "--embd-normalize", "-1", "--log-format", "text", "-q"], {stdio: ["ignore", "ignore", "pipe"]});
  let log = "";
  const url = await new Promise((resolve, reject) => {
    child.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m && /ready/.test(log)) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`kiln serve exited (${code}): ${log}`)));
  });
  return {child, url};
}

async function embedKiln(url, model, inputs) {
  const r = await fetch(`${url}/v1/embeddings`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model, input: inputs, encoding_format: "float"}),
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`kiln: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

async function benchKiln(args, inputs) {
  const {child, url} = await startKiln(args);
  const model = path.basename(args.model, ".gguf");
  try {
    await embedKiln(url, model, [inputs[0]]);
    let best = Infinity, vectors = null, tokens = 0;
    for (let rep = 0; rep < args.reps; ++rep) {
      const t0 = process.hrtime.bigint();
      const out = [];
      tokens = 0;
      for (let i = 0; i < inputs.length; i += args.batch) {
        const body = await embedKiln(url, model, inputs.slice(i, i + args.batch));
        out.push(...body.data.map((d) => d.embedding));
        tokens += body.usage.prompt_tokens;
      }
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
      vectors = out;
    }
    return {seconds: best, vectors, tokens};
  } finally {
    child.kill("SIGTERM");
  }
}

async function benchLlamaCpp(args, inputs) {
  const llama = await getLlama({gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error});
  const model = await llama.loadModel({modelPath: args.model});
  const context = await model.createEmbeddingContext({threads: args.threads});
  const tokens = inputs.reduce((s, t) => s + context.calculateInputLength(t), 0);
  await context.getEmbeddingFor(inputs[0]);
  let best = Infinity, vectors = null;
  for (let rep = 0; rep < args.reps; ++rep) {
    const t0 = process.hrtime.bigint();
    const out = [];
    for (const t of inputs) out.push(Array.from((await context.getEmbeddingFor(t)).vector));
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    vectors = out;
  }
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return {seconds: best, vectors, tokens};
}

const args = parseArgs(process.argv.slice(2));
const inputs = texts(args.inputs, args.words);
const kiln = await benchKiln(args, inputs);
const ref = await benchLlamaCpp(args, inputs);
const minCos = Math.min(...kiln.vectors.map((v, i) => cosine(v, ref.vectors[i])));
const row = (name, r) => ({name, inputs_per_s: inputs.length / r.seconds, tokens_per_s: r.tokens / r.seconds, seconds: r.seconds, tokens: r.tokens});
const rows = [row("kiln serve", kiln), row("llama.cpp", ref)];
console.log(`model ${path.basename(args.model)}, ${inputs.length} inputs of ${args.words} words, threads ${args.threads}, kiln requests of ${args.batch}, best of ${args.reps}`);
for (const r of rows)
  console.log(`${r.name.padEnd(12)} ${r.inputs_per_s.toFixed(1).padStart(9)} inputs/s ${r.tokens_per_s.toFixed(0).padStart(8)} tok/s  (${r.tokens} tokens in ${r.seconds.toFixed(3)} s)`);
console.log(`kiln / llama.cpp: ${(ref.seconds / kiln.seconds).toFixed(2)}x; lowest cosine between their vectors ${minCos.toFixed(6)}`);
console.log(JSON.stringify({model: path.basename(args.model), inputs: inputs.length, words: args.words, threads: args.threads,
  kiln: rows[0], llamacpp: rows[1], ratio: ref.seconds / kiln.seconds, min_cosine: minCos}));
if (kiln.tokens !== ref.tokens) console.log(`note: token counts differ (kiln ${kiln.tokens}, llama.cpp ${ref.tokens})`);
