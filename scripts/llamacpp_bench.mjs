// llama.cpp (through node-llama-cpp@3.21.1, CPU) timing of prompt processing and greedy decode on
// a GGUF, repeated R times, printed as one line of JSON with mean and standard deviation.
//
// usage: node scripts/llamacpp_bench.mjs MODEL.gguf [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS] [--warmup W]
//                                          [--kv-type f16|q8_0|q4_0|q4_1]
//   defaults: -p 128 -n 64 -t 2 -r 3 --warmup 1 --kv-type f16
// --kv-type sets both the key and the value cache type (llama-bench's -ctk/-ctv, node-llama-cpp's
// experimentalKvCacheKeyType/ValueType); a quantized type turns flash attention on, which
// llama.cpp needs for a quantized V cache.
//
// Each repetition clears the sequence's KV cache, evaluates an N_PROMPT-token prompt (synthetic
// ids 100 + 7i mod 1000, no BOS) and then decodes N_GEN tokens greedily; end-of-generation tokens
// are fed back like any other token so every run decodes exactly N_GEN tokens.
//   prefill_tok_s = N_PROMPT / (time from the call to the first sampled token)
//   decode_tok_s  = (N_GEN - 1) / (time from the first to the last sampled token)
// W warm-up runs (page faults of the mmap'd weights, allocator growth) are done first and not
// counted. Standard deviations are sample deviations (n - 1), 0 when REPS is 1. Output fields:
//   {"engine":"llama.cpp","model":...,"n_prompt":...,"n_gen":...,"threads":...,"repetitions":...,"kv_type":...,
//    "prefill_tok_s_mean":...,"prefill_tok_s_std":...,"decode_tok_s_mean":...,"decode_tok_s_std":...,
//    "prefill_tok_s":[per run],"decode_tok_s":[per run]}
// Run it from inside the repository so that node finds node_modules/node-llama-cpp.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function usage(message) {
  process.stderr.write(`llamacpp_bench: ${message}\n` +
      "usage: llamacpp_bench.mjs MODEL.gguf [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS] [--warmup W] " +
      "[--kv-type f16|q8_0|q4_0|q4_1]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = {model: null, nPrompt: 128, nGen: 64, threads: 2, reps: 3, warmup: 1, kvType: "f16"};
  const flags = {"-p": "nPrompt", "-n": "nGen", "-t": "threads", "-r": "reps", "--warmup": "warmup"};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === "--kv-type") {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      args.kvType = argv[++i];
      if (!["f16", "q8_0", "q4_0", "q4_1"].includes(args.kvType)) usage(`--kv-type must be f16, q8_0, q4_0 or q4_1`);
    } else if (a in flags) {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) usage(`${a} must be a non-negative integer, got ${argv[i]}`);
      args[flags[a]] = v;
    } else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (args.model === null) args.model = a;
    else usage(`unexpected argument ${a}`);
  }
  if (args.model === null) usage("missing MODEL.gguf");
  if (args.nPrompt < 1) usage("-p must be at least 1");
  if (args.nGen < 2) usage("-n must be at least 2 (decode speed needs two sampled tokens)");
  if (args.threads < 1) usage("-t must be at least 1");
  if (args.reps < 1) usage("-r must be at least 1");
  return args;
}

function meanStd(xs) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.length > 1 ? xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1) : 0;
  return [mean, Math.sqrt(variance)];
}

const round2 = (x) => Math.round(x * 100) / 100;

const args = parseArgs(process.argv.slice(2));
try {
  // maxThreads 0 makes the context use exactly the requested thread count.
  const llama = await getLlama({
    gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath: args.model});
  const context = await model.createContext({
    contextSize: args.nPrompt + args.nGen + 16, batchSize: Math.max(args.nPrompt, 32), threads: args.threads,
    sequences: 1,
    ...(args.kvType === "f16" ? {} : {
      flashAttention: true, experimentalKvCacheKeyType: args.kvType.toUpperCase(),
      experimentalKvCacheValueType: args.kvType.toUpperCase(),
    }),
  });
  const sequence = context.getSequence();
  const prompt = Array.from({length: args.nPrompt}, (_, i) => 100 + (i * 7) % 1000);

  async function runOnce() {
    await sequence.clearHistory();
    const t0 = performance.now();
    let first = 0, n = 0;
    for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
      void token;
      if (n === 0) first = performance.now();
      if (++n >= args.nGen) break;
    }
    const t1 = performance.now();
    return {prefill: args.nPrompt / ((first - t0) / 1000), decode: (n - 1) / ((t1 - first) / 1000)};
  }

  for (let i = 0; i < args.warmup; ++i) await runOnce();
  const prefill = [], decode = [];
  for (let i = 0; i < args.reps; ++i) {
    const r = await runOnce();
    prefill.push(r.prefill);
    decode.push(r.decode);
  }
  const [pm, ps] = meanStd(prefill);
  const [dm, ds] = meanStd(decode);
  process.stdout.write(JSON.stringify({
    engine: "llama.cpp", model: args.model.split("/").pop(), n_prompt: args.nPrompt, n_gen: args.nGen,
    threads: args.threads, repetitions: args.reps, kv_type: args.kvType,
    prefill_tok_s_mean: round2(pm), prefill_tok_s_std: round2(ps),
    decode_tok_s_mean: round2(dm), decode_tok_s_std: round2(ds),
    prefill_tok_s: prefill.map(round2), decode_tok_s: decode.map(round2),
  }) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
} catch (error) {
  process.stderr.write(`llamacpp_bench: ${error?.message ?? error}\n`);
  process.exit(2);
}
