// llama.cpp's tokenizer (vocabulary only, no weights) as an oracle for kiln's tokenizer tests:
// many texts through one process, so that a whole book's lines take seconds.
//
// usage: node tests/interop/llamacpp_tokenize.mjs MODEL.gguf REQUESTS.jsonl OUT.jsonl
//
// REQUESTS.jsonl holds one JSON object per line, one of
//   {"tokenize": "text", "special": false, "add_special": false}
//   {"detokenize": [ids...], "special": false}
// and OUT.jsonl gets one line per request, in the same order:
//   {"ids": [...]}     llama.cpp's tokens for the text. `special` parses the texts of control
//                      tokens ("<s>", "<|eot_id|>") into their ids; `add_special` adds BOS (and
//                      EOS) as the model's metadata asks, as llama_tokenize(add_special = true)
//                      does (node-llama-cpp always calls it with false and lets callers prepend).
//   {"text": "..."}    llama_detokenize(ids, remove_special = false, unparse_special = special).
// Texts cross into llama.cpp as UTF-8 through N-API, so they are always valid UTF-8 (a lone
// surrogate would arrive as U+FFFD); texts coming back are decoded by V8 the same way.
// On a usage or load error, or a malformed request: a line on stderr, exit 2.
// A GGUF without tensors (a vocabulary only) loads, but first node-llama-cpp simulates a full
// load to estimate memory, which makes llama.cpp log "missing tensor 'token_embd.weight'" and
// "failed to load model" on stderr; node-llama-cpp then falls back to its estimate and goes on.
//
// Runs on the CPU with the prebuilt binaries of node-llama-cpp@3.21.1 (installed at the
// repository root by `npm ci`); run it from inside the repository so that node finds it.
import fs from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function fail(message) {
  process.stderr.write(`llamacpp_tokenize: ${message}\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
if (argv.length !== 3) fail("usage: llamacpp_tokenize.mjs MODEL.gguf REQUESTS.jsonl OUT.jsonl");
const [modelPath, requestsPath, outPath] = argv;

try {
  const llama = await getLlama({
    gpu: false, build: "never", logLevel: LlamaLogLevel.error,
    logger: (level, message) => process.stderr.write(`llama.cpp: ${message}\n`),
  });
  const model = await llama.loadModel({modelPath, vocabOnly: true});
  const nVocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
  const lines = fs.readFileSync(requestsPath, "utf8").split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const out = [];
  lines.forEach((line, index) => {
    const where = `${requestsPath}:${index + 1}`;
    let request;
    try {
      request = JSON.parse(line);
    } catch (error) {
      throw new Error(`${where}: not JSON (${error.message})`);
    }
    if (typeof request.tokenize === "string") {
      const ids = Array.from(model.tokenize(request.tokenize, Boolean(request.special)));
      if (request.add_special) {
        if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ids.unshift(model.tokens.bos);
        if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) ids.push(model.tokens.eos);
      }
      out.push(JSON.stringify({ids}));
    } else if (Array.isArray(request.detokenize)) {
      for (const id of request.detokenize) {
        if (!Number.isInteger(id) || id < 0 || (nVocab != null && id >= nVocab))
          throw new Error(`${where}: ${id} is not a token id of this vocabulary`);
      }
      out.push(JSON.stringify({text: model.detokenize(request.detokenize, Boolean(request.special))}));
    } else {
      throw new Error(`${where}: expected {"tokenize": text} or {"detokenize": [ids]}`);
    }
  });
  fs.writeFileSync(outPath, out.length === 0 ? "" : out.join("\n") + "\n");
  await model.dispose();
  await llama.dispose();
} catch (error) {
  fail(error?.message ?? String(error));
}
