// llama.cpp's next-token log-probabilities at every position of a token sequence, and its greedy
// continuation, as an oracle for kiln's forward pass of each model family.
//
// usage:
//   node tests/interop/llamacpp_logprobs.mjs MODEL.gguf --tokens 1,2,3 [--top K] [-n N] [--kv-type f32|f16] [--threads T]
//
// Prints exactly one line of JSON on stdout and exits 0:
//   {"positions":[{"top":[[id,logprob],...K pairs, most likely first]}, ...one per input token],
//    "tokens":[...N greedy ids after the input]}
// positions[i] is the distribution of the token after input token i (temperature 1, no top-k,
// top-p or min-p: the model's own softmax), as log-probabilities, K most likely first.
// tokens: the N ids llama.cpp picks greedily after the whole input (end-of-generation tokens do
// not stop it). --kv-type f32 runs llama.cpp with an f32 KV cache (random models have near-ties
// that an f16 cache's rounding can flip). On a usage or load error it prints
// "llamacpp_logprobs: <message>" on stderr and exits 2.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function usage(message) {
  process.stderr.write(`llamacpp_logprobs: ${message}\n` +
      "usage: llamacpp_logprobs.mjs MODEL.gguf --tokens ID,ID,... [--top K] [-n N] [--kv-type f32|f16] [--threads T]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = {model: null, tokens: null, top: 8, n: 0, kvType: "f32", threads: 2};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--tokens") {
      args.tokens = value().split(",").map((s) => {
        if (!/^\d+$/.test(s.trim())) usage(`--tokens: "${s}" is not a non-negative integer id`);
        return Number(s);
      });
    } else if (a === "--top") args.top = Number(value());
    else if (a === "-n") args.n = Number(value());
    else if (a === "--kv-type") args.kvType = value();
    else if (a === "--threads" || a === "-t") args.threads = Number(value());
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (args.model === null) args.model = a;
    else usage(`unexpected argument ${a}`);
  }
  if (args.model === null) usage("missing MODEL.gguf");
  if (args.tokens === null || args.tokens.length === 0) usage("--tokens is required");
  if (!Number.isInteger(args.top) || args.top < 1) usage("--top must be a positive integer");
  if (!Number.isInteger(args.n) || args.n < 0) usage("-n must be a non-negative integer");
  if (args.kvType !== "f32" && args.kvType !== "f16") usage("--kv-type must be f32 or f16");
  return args;
}

const args = parseArgs(process.argv.slice(2));
try {
  const llama = await getLlama({
    gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath: args.model});
  const kv = args.kvType.toUpperCase();
  const context = await model.createContext({
    contextSize: Math.max(64, args.tokens.length + args.n + 8), batchSize: Math.max(args.tokens.length, 32),
    threads: args.threads, sequences: 1, flashAttention: false,
    experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv,
  });
  const sequence = context.getSequence();
  const items = args.tokens.map((t) => [t, {generateNext: {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}}}]);
  const results = await sequence.controlledEvaluate(items);
  const positions = results.map((r, i) => {
    const probs = r?.next?.probabilities;
    if (probs == null) throw new Error(`no probabilities for position ${i}`);
    const top = [];
    for (const [id, p] of probs) {
      top.push([id, Math.log(p)]);
      if (top.length >= args.top) break;
    }
    return {top};
  });
  const generated = [];
  if (args.n > 0) {
    let last = args.tokens[args.tokens.length - 1];
    // Greedy from the state the input left: evaluate() continues the sequence.
    await sequence.eraseContextTokenRanges([{start: args.tokens.length - 1, end: args.tokens.length}]);
    for await (const token of sequence.evaluate([last], {temperature: 0, yieldEogToken: true})) {
      generated.push(token);
      if (generated.length >= args.n) break;
    }
  }
  process.stdout.write(JSON.stringify({positions, tokens: generated}) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
} catch (error) {
  process.stderr.write(`llamacpp_logprobs: ${error?.message ?? error}\n`);
  process.exit(2);
}
