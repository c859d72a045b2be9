// llama.cpp's tokenization and greedy continuation of a prompt, as an oracle for kiln's tests.
//
// usage:
//   node tests/interop/llamacpp_greedy.mjs MODEL.gguf --prompt "text" -n N [--special] [--threads T]
//   node tests/interop/llamacpp_greedy.mjs MODEL.gguf --tokens 1,2,3   -n N [--threads T]
//
// Prints exactly one line of JSON on stdout and exits 0:
//   {"prompt_tokens":[1,15043,3186],"tokens":[...N ids...]}
// prompt_tokens: with --prompt, llama.cpp's tokenization of the text with BOS prepended when the
//   model's metadata asks for it (as llama-cli does); the text is tokenized as plain text unless
//   --special is given, in which case spellings like "<s>" become their special tokens. With
//   --tokens the ids are used verbatim (no BOS is added: include it yourself if you want it).
// tokens: the N ids llama.cpp picks greedily (temperature 0, no top-k/top-p/penalties; ties go
//   to the lowest id) after the prompt. End-of-generation tokens do not stop it: they are
//   emitted and fed back like any other token, so there are always N ids.
// On a usage or load error it prints "llamacpp_greedy: <message>" on stderr and exits 2.
// llama.cpp's own log lines go to stderr (errors only), never to stdout.
//
// Runs on the CPU with the prebuilt binaries of the npm package node-llama-cpp@3.21.1 (installed
// at the repository root by `npm ci`); run it from inside the repository so that node finds it.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function usage(message) {
  process.stderr.write(`llamacpp_greedy: ${message}\n` +
      "usage: llamacpp_greedy.mjs MODEL.gguf (--prompt TEXT [--special] | --tokens ID,ID,...) -n N [--threads T]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = {model: null, prompt: null, tokens: null, n: null, special: false, threads: 2};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--prompt") args.prompt = value();
    else if (a === "--tokens") {
      const text = value();
      args.tokens = text === "" ? [] : text.split(",").map((s) => {
        if (!/^\d+$/.test(s.trim())) usage(`--tokens: "${s}" is not a non-negative integer id`);
        return Number(s);
      });
    } else if (a === "-n" || a === "--n-predict") args.n = Number(value());
    else if (a === "--threads" || a === "-t") args.threads = Number(value());
    else if (a === "--special") args.special = true;
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (args.model === null) args.model = a;
    else usage(`unexpected argument ${a}`);
  }
  if (args.model === null) usage("missing MODEL.gguf");
  if ((args.prompt === null) === (args.tokens === null)) usage("give exactly one of --prompt and --tokens");
  if (!Number.isInteger(args.n) || args.n < 0) usage("-n must be a non-negative integer");
  if (!Number.isInteger(args.threads) || args.threads < 1) usage("--threads must be a positive integer");
  return args;
}

const args = parseArgs(process.argv.slice(2));
try {
  // maxThreads 0 makes the context use exactly the requested thread count.
  const llama = await getLlama({
    gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath: args.model});
  let promptTokens;
  if (args.tokens !== null) {
    promptTokens = args.tokens;
  } else {
    promptTokens = Array.from(model.tokenize(args.prompt, args.special));
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) promptTokens.unshift(model.tokens.bos);
  }
  const vocabSize = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
  for (const id of promptTokens) {
    if (vocabSize != null && id >= vocabSize) throw new Error(`prompt token ${id} is outside the vocabulary of ${vocabSize}`);
  }
  if (promptTokens.length === 0) throw new Error("the prompt has no tokens (give a non-empty prompt or --tokens)");

  const generated = [];
  if (args.n > 0) {
    const context = await model.createContext({
      contextSize: promptTokens.length + args.n + 8, batchSize: Math.max(promptTokens.length, 32),
      threads: args.threads, sequences: 1,
    });
    const sequence = context.getSequence();
    // temperature 0 selects llama.cpp's greedy sampler; yieldEogToken keeps going past EOS.
    for await (const token of sequence.evaluate(promptTokens, {temperature: 0, yieldEogToken: true})) {
      generated.push(token);
      if (generated.length >= args.n) break;
    }
    await context.dispose();
  }
  process.stdout.write(JSON.stringify({prompt_tokens: promptTokens, tokens: generated}) + "\n");
  await model.dispose();
  await llama.dispose();
} catch (error) {
  process.stderr.write(`llamacpp_greedy: ${error?.message ?? error}\n`);
  process.exit(2);
}
