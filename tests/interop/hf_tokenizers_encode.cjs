// Hugging Face's own tokenizer (the Rust `tokenizers` library through its npm binding, pinned in
// package.json) encoding and decoding texts with a tokenizer.json, for hf_tokenizers_test.cpp.
// Usage: node hf_tokenizers_encode.cjs TOKENIZER_JSON TEXTS_JSON OUT_JSON
//   TEXTS_JSON: a JSON array of strings. OUT_JSON gets, per text, {"ids": [...] (special tokens
//   added as the post-processor says), "decoded": the ids decoded with special tokens skipped};
//   OUT_JSON.tokenizer.json gets the tokenizer as Hugging Face itself saves it.
// Exits 77 when the tokenizers package is not installed, so the caller can skip.
'use strict';
const fs = require('fs');

let Tokenizer;
try {
  ({ Tokenizer } = require('tokenizers'));
} catch (e) {
  console.error(`the npm package tokenizers is not installed: ${e.message.split('\n')[0]}`);
  process.exit(77);
}

async function main() {
  const [tokenizerPath, textsPath, outPath] = process.argv.slice(2);
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
  const out = [];
  for (const text of texts) {
    const encoding = await tokenizer.encode(text, null, { addSpecialTokens: true });
    const ids = encoding.getIds();
    out.push({ ids, decoded: await tokenizer.decode(ids, true) });
  }
  fs.writeFileSync(outPath, JSON.stringify(out));
  tokenizer.save(`${outPath}.tokenizer.json`, true);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
