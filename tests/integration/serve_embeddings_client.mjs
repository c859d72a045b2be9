// The official openai npm client's embeddings.create against a running `kiln serve`: a string
// (the client asks for base64 and decodes it itself), explicit float and base64 (decoded here),
// an array of strings, token ids, dimensions, and typed 400s naming the field.
// Usage: node serve_embeddings_client.mjs BASE_URL MODEL [API_KEY]. Exits non-zero on any mismatch.
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: apiKey ?? "unused", maxRetries: 0, timeout: 30000 });

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));

// No encoding_format: the client requests base64 and hands back decoded floats.
const single = await client.embeddings.create({ model, input: "Hello world" });
assert.equal(single.object, "list");
assert.equal(single.model, model);
assert.equal(single.data.length, 1);
assert.equal(single.data[0].object, "embedding");
assert.equal(single.data[0].index, 0);
const width = single.data[0].embedding.length;
assert.ok(width > 0);
assert.ok(Math.abs(norm(single.data[0].embedding) - 1) < 1e-5, "unit length by default");
assert.ok(single.usage.prompt_tokens > 0);
assert.equal(single.usage.total_tokens, single.usage.prompt_tokens);

// Explicit float: JSON numbers, the same float32 values the base64 carried.
const floats = await client.embeddings.create({ model, input: "Hello world", encoding_format: "float" });
assert.equal(floats.data[0].embedding.length, width);
for (let i = 0; i < width; ++i) assert.equal(Math.fround(floats.data[0].embedding[i]), single.data[0].embedding[i], `dimension ${i}`);

// Explicit base64: the client returns the string; little-endian float32, decoded here.
const b64 = await client.embeddings.create({ model, input: "Hello world", encoding_format: "base64" });
assert.equal(typeof b64.data[0].embedding, "string");
const bytes = Buffer.from(b64.data[0].embedding, "base64");
assert.equal(bytes.length, 4 * width);
for (let i = 0; i < width; ++i) assert.equal(bytes.readFloatLE(4 * i), single.data[0].embedding[i], `dimension ${i}`);

// An array of strings: one vector per input, in order, batched by the server.
const texts = ["Hello world", "The prince said that the war was over", "ROMEO:"];
const many = await client.embeddings.create({ model, input: texts });
assert.equal(many.data.length, 3);
many.data.forEach((d, i) => {
  assert.equal(d.index, i);
  assert.equal(d.embedding.length, width);
  assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5);
});
assert.ok(cosine(many.data[0].embedding, single.data[0].embedding) > 0.99999, "the same text alone and in a batch");
assert.ok(cosine(many.data[0].embedding, many.data[1].embedding) < 0.9999, "different texts differ");
assert.ok(many.usage.prompt_tokens > single.usage.prompt_tokens);

// Token ids, and an array of token-id arrays.
const ids = await client.embeddings.create({ model, input: [5, 6, 7], encoding_format: "float" });
assert.equal(ids.data.length, 1);
assert.equal(ids.usage.prompt_tokens, 3);
const idLists = await client.embeddings.create({ model, input: [[5, 6, 7], [8]], encoding_format: "float" });
assert.equal(idLists.data.length, 2);
assert.equal(idLists.usage.prompt_tokens, 4);
assert.ok(cosine(idLists.data[0].embedding, ids.data[0].embedding) > 0.99999);

// dimensions: the leading ones, normalised again.
const short = await client.embeddings.create({ model, input: "Hello world", dimensions: 16, encoding_format: "float" });
assert.equal(short.data[0].embedding.length, 16);
assert.ok(Math.abs(norm(short.data[0].embedding) - 1) < 1e-5);
const lead = floats.data[0].embedding.slice(0, 16);
assert.ok(cosine(short.data[0].embedding, lead) > 0.999999);

// Bad input: a typed 400 naming the field.
async function expectBadRequest(body, param) {
  try {
    await client.embeddings.create({ model, ...body });
  } catch (e) {
    assert.ok(e instanceof OpenAI.BadRequestError, `${JSON.stringify(body)}: ${e}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, param, `${JSON.stringify(body)}: ${e.message}`);
    return;
  }
  assert.fail(`accepted: ${JSON.stringify(body)}`);
}
await expectBadRequest({ input: ["fine", ""] }, "input[1]");
await expectBadRequest({ input: [] }, "input");
await expectBadRequest({ input: "x", dimensions: width + 1 }, "dimensions");
await expectBadRequest({ input: "x", encoding_format: "int8" }, "encoding_format");
await expectBadRequest({ input: [[1, 2], [1, 999999]] }, "input[1]");
await expectBadRequest({ input: ["short", "word ".repeat(5000)] }, "input[1]");  // refused by its bytes
await expectBadRequest({ input: [[1, 2], Array(5000).fill(5)] }, "input[1]");  // by its tokens

try {
  await client.embeddings.create({ model: "no-such-model", input: "x" });
  assert.fail("an unknown model was accepted");
} catch (e) {
  assert.ok(e instanceof OpenAI.NotFoundError, String(e));
}
console.log(JSON.stringify({ ok: true, width }));
