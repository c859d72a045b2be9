// llama.cpp's per-token negative log-likelihoods on given chunks, as an oracle for kiln eval.
//
// usage: node tests/interop/llamacpp_perplexity.mjs MODEL.gguf --tokens FILE --ctx N [--threads T]
//
// FILE holds whitespace-separated token ids: a whole number of chunks of N tokens, exactly as
// they are evaluated (BOS already written at each chunk's start). Each chunk runs in a fresh
// context; like llama-perplexity, the logits at positions N/2 .. N-2 are scored against the
// token that follows. Prints one line of JSON on stdout and exits 0:
//   {"n_ctx":N,"n_chunks":C,"nll":[...C * (N - N/2 - 1) values, chunk-major...]}
// nll is -ln p(next token) with p the softmax of llama.cpp's raw logits over the whole
// vocabulary (temperature 0 selects the greedy chain, which leaves the candidates untouched;
// node-llama-cpp's addon then normalises them, in float). On error: a line on stderr, exit 2.
//
// Runs on the CPU with the prebuilt binaries of node-llama-cpp@3.21.1 (installed at the
// repository root by `npm ci`); run it from inside the repository so that node finds it.
import fs from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function usage(message) {
  process.stderr.write(`llamacpp_perplexity: ${message}\n` +
      "usage: llamacpp_perplexity.mjs MODEL.gguf --tokens FILE --ctx N [--threads T]\n");
  process.exit(2);
}

const argv = process.argv.slice(2);
const args = {model: null, tokens: null, ctx: null, threads: 2};
for (let i = 0; i < argv.length; ++i) {
  const a = argv[i];
  const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
  if (a === "--tokens") args.tokens = value();
  else if (a === "--ctx") args.ctx = Number(value());
  else if (a === "--threads" || a === "-t") args.threads = Number(value());
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else if (args.model === null) args.model = a;
  else usage(`unexpected argument ${a}`);
}
if (args.model === null || args.tokens === null) usage("give MODEL.gguf and --tokens FILE");
if (!Number.isInteger(args.ctx) || args.ctx < 4) usage("--ctx must be an integer >= 4");

try {
  const words = fs.readFileSync(args.tokens, "utf8").split(/\s+/).filter((w) => w.length > 0);
  const ids = words.map((w) => {
    if (!/^\d+$/.test(w)) throw new Error(`${args.tokens}: "${w}" is not a token id`);
    return Number(w);
  });
  if (ids.length === 0 || ids.length % args.ctx !== 0)
    throw new Error(`${args.tokens}: ${ids.length} tokens are not a whole number of chunks of ${args.ctx}`);
  const llama = await getLlama({
    gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath: args.model});
  const context = await model.createContext({
    contextSize: args.ctx, batchSize: args.ctx, threads: args.threads, sequences: 1,
  });
  const sequence = context.getSequence();
  const first = Math.floor(args.ctx / 2);
  const nll = [];
  for (let start = 0; start < ids.length; start += args.ctx) {
    const chunk = ids.slice(start, start + args.ctx);
    await sequence.clearHistory();
    const input = chunk.map((token, pos) => (pos >= first && pos < args.ctx - 1)
      ? [token, {generateNext: {probabilities: true, options: {temperature: 0}}}]
      : token);
    const out = await sequence.controlledEvaluate(input);
    for (let pos = first; pos < args.ctx - 1; ++pos) {
      const probs = out[pos]?.next?.probabilities;
      if (probs == null) throw new Error(`no probabilities at chunk ${start / args.ctx + 1} position ${pos}`);
      const p = probs.get(chunk[pos + 1]);
      if (p == null) throw new Error(`token ${chunk[pos + 1]} missing from the probabilities at position ${pos}`);
      nll.push(-Math.log(p));
    }
  }
  process.stdout.write(JSON.stringify({n_ctx: args.ctx, n_chunks: ids.length / args.ctx, nll}) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
} catch (error) {
  process.stderr.write(`llamacpp_perplexity: ${error?.message ?? error}\n`);
  process.exit(2);
}
