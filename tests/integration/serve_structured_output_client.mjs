// Structured outputs through the official openai npm client against a running `kiln serve`
// (a model with random weights, so only the grammar makes the answers parse): response_format
// json_schema (strict) and json_object; each answer is parsed and checked against its schema.
// Usage: node serve_structured_output_client.mjs BASE_URL MODEL. Exits non-zero on any mismatch.
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });

const schema = {
  type: "object",
  properties: {
    city: { type: "string", minLength: 1, maxLength: 12 },
    population: { type: "integer", minimum: 0, maximum: 40000000 },
    tags: { type: "array", items: { enum: ["coast", "capital", "river"] }, maxItems: 3 },
    founded: { type: "string", format: "date" },
  },
  required: ["city", "population", "tags"],
  additionalProperties: false,
};

for (let seed = 1; seed <= 4; ++seed) {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Describe a city as JSON." }],
    response_format: { type: "json_schema", json_schema: { name: "city", strict: true, schema } },
    temperature: 1,
    seed,
    max_tokens: 300,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, "stop", `seed ${seed}: ${c.message.content}`);
  const v = JSON.parse(c.message.content);
  assert.deepEqual(Object.keys(v).filter((k) => !["city", "population", "tags", "founded"].includes(k)), []);
  assert.equal(typeof v.city, "string");
  assert.ok([...v.city].length >= 1 && [...v.city].length <= 12, v.city);
  assert.ok(Number.isInteger(v.population) && v.population >= 0 && v.population <= 40000000, String(v.population));
  assert.ok(Array.isArray(v.tags) && v.tags.length <= 3 && v.tags.every((t) => ["coast", "capital", "river"].includes(t)));
  if ("founded" in v) assert.match(v.founded, /^\d{4}-\d\d-\d\d$/);
  // The keys come in the schema's order.
  const keys = Object.keys(v);
  assert.deepEqual(keys, ["city", "population", "tags", "founded"].filter((k) => keys.includes(k)));
}

// json_object: any JSON object, streamed.
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "JSON please." }],
  response_format: { type: "json_object" },
  temperature: 0.8,
  seed: 3,
  max_tokens: 400,
  stream: true,
});
let text = "";
let finish = null;
for await (const chunk of stream) {
  for (const c of chunk.choices) {
    text += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
if (finish === "stop") {
  const v = JSON.parse(text);
  assert.equal(typeof v, "object");
  assert.ok(v !== null && !Array.isArray(v));
} else {
  assert.equal(finish, "length");
  assert.ok(text.startsWith("{") || text.trimStart().startsWith("{"), text);
}

// A schema kiln cannot use: a typed 400 naming the field.
await assert.rejects(
  client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "integer", multipleOf: 3 } } },
  }),
  (e) => e.status === 400 && e.param === "response_format.json_schema.schema" && /multipleOf/.test(e.message),
);
console.log("structured outputs ok");
