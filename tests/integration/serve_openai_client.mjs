// The official openai npm client against a running `kiln serve`: non-streaming and streaming
// chat and completions, usage in streams, n, logprobs, and a typed error for an unknown model.
// Usage: node serve_openai_client.mjs BASE_URL MODEL [API_KEY]. Exits non-zero on any mismatch.
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: apiKey ?? "unused", maxRetries: 0, timeout: 30000 });

const chat = await client.chat.completions.create({
  model,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello there" }],
  max_tokens: 8,
  temperature: 0,
});
assert.equal(chat.object, "chat.completion");
assert.match(chat.id, /^chatcmpl-/);
assert.equal(chat.model, model);
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(["stop", "length"].includes(chat.choices[0].finish_reason));
assert.ok(chat.usage.prompt_tokens > 0);
assert.ok(chat.usage.completion_tokens > 0 && chat.usage.completion_tokens <= 8);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
assert.equal(typeof chat.usage.prompt_tokens_details.cached_tokens, "number");

// Streaming chat with usage: the streamed text equals the non-streamed greedy text.
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello there" }],
  max_tokens: 8,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let finish = null;
let usage = null;
let sawRole = false;
for await (const chunk of stream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.role) sawRole = true;
    text += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
assert.ok(sawRole, "the first chunk carries the role");
assert.equal(text, chat.choices[0].message.content);
assert.equal(finish, chat.choices[0].finish_reason);
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);
assert.equal(usage.prompt_tokens, chat.usage.prompt_tokens);

// Completions, n = 2 with a seed, and logprobs in the completions shape.
const comp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0.9, seed: 7, n: 2, logprobs: 2 });
assert.equal(comp.object, "text_completion");
assert.equal(comp.choices.length, 2);
for (const c of comp.choices) {
  assert.equal(c.logprobs.tokens.length, c.logprobs.token_logprobs.length);
  assert.ok(c.logprobs.token_logprobs.every((x) => x <= 0));
  assert.ok(c.logprobs.top_logprobs.every((t) => Object.keys(t).length <= 2));
}
const again = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0.9, seed: 7, n: 2, logprobs: 2 });
assert.deepEqual(again.choices.map((c) => c.text), comp.choices.map((c) => c.text), "a seed reproduces the choices");

// Streaming completions.
const cstream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, stream: true });
let ctext = "";
for await (const chunk of cstream) for (const c of chunk.choices) ctext += c.text;
const cplain = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0 });
assert.equal(ctext, cplain.choices[0].text);

// Chat logprobs in the chat shape.
const lp = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
assert.ok(lp.choices[0].logprobs.content.length >= 1);
for (const e of lp.choices[0].logprobs.content) {
  assert.equal(typeof e.token, "string");
  assert.ok(Array.isArray(e.bytes));
  assert.equal(e.top_logprobs.length, 2);
}

// Models, and a typed 404 for an unknown one.
const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === model));
try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
  assert.fail("unknown model accepted");
} catch (e) {
  assert.ok(e instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${e}`);
  assert.equal(e.code, "model_not_found");
}
console.log("openai client: all checks passed");
