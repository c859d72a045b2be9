// llama.cpp's embeddings of texts, through node-llama-cpp's embedding API (LlamaEmbeddingContext),
// as an oracle for kiln's tests and benchmarks.
//
// usage:
//   node tests/interop/llamacpp_embed.mjs MODEL.gguf [--threads T] [--time] TEXT...
//   node tests/interop/llamacpp_embed.mjs MODEL.gguf [--threads T] [--time] --file TEXTS.json
//
// TEXTS.json holds a JSON array of strings. Prints exactly one line of JSON on stdout and exits 0:
//   {"vectors":[[...n_embd floats...], ...], "tokens":[n, ...], "seconds": s}
// vectors: getEmbeddingFor(text).vector for each text, in order: the text tokenized as plain text
//   with BOS prepended and EOS appended when the model's metadata asks for them, evaluated in a
//   fresh sequence, pooled by the model's own pooling type (the GGUF's <arch>.pooling_type; for
//   none, the last token's vector), not normalised.
// tokens: how many tokens each text became (calculateInputLength).
// seconds: the wall time of all getEmbeddingFor calls (with --time; loading excluded), else 0.
// On a usage or load error it prints "llamacpp_embed: <message>" on stderr and exits 2.
//
// Runs on the CPU with the prebuilt binaries of node-llama-cpp@3.21.1 (installed at the
// repository root by `npm ci`); run it from inside the repository so that node finds it.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function usage(message) {
  process.stderr.write(`llamacpp_embed: ${message}\n` +
      "usage: llamacpp_embed.mjs MODEL.gguf [--threads T] [--time] (TEXT... | --file TEXTS.json)\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = {model: null, texts: [], threads: 2, time: false, file: null};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--threads" || a === "-t") args.threads = Number(value());
    else if (a === "--file" || a === "-f") args.file = value();
    else if (a === "--time") args.time = true;
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else if (args.model === null) args.model = a;
    else args.texts.push(a);
  }
  if (args.model === null) usage("missing MODEL.gguf");
  if (args.file !== null) {
    const texts = JSON.parse(readFileSync(args.file, "utf8"));
    if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) usage(`${args.file}: not a JSON array of strings`);
    args.texts.push(...texts);
  }
  if (args.texts.length === 0) usage("no text given");
  if (!Number.isInteger(args.threads) || args.threads < 1) usage("--threads must be a positive integer");
  return args;
}

const args = parseArgs(process.argv.slice(2));
try {
  const llama = await getLlama({
    gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath: args.model});
  const context = await model.createEmbeddingContext({threads: args.threads});
  const tokens = args.texts.map((t) => context.calculateInputLength(t));
  const longest = Math.max(...tokens);
  if (longest > model.trainContextSize) throw new Error(`a text has ${longest} tokens, more than the context of ${model.trainContextSize}`);
  const vectors = [];
  const start = process.hrtime.bigint();
  for (const text of args.texts) vectors.push(Array.from((await context.getEmbeddingFor(text)).vector));
  const seconds = args.time ? Number(process.hrtime.bigint() - start) / 1e9 : 0;
  process.stdout.write(JSON.stringify({vectors, tokens, seconds}) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
} catch (error) {
  process.stderr.write(`llamacpp_embed: ${error?.message ?? error}\n`);
  process.exit(2);
}
