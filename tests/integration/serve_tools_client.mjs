// The official openai npm client against `kiln serve --chat-template serve_tools_template.jinja`
// (a Hermes/Qwen2.5-style template): tool calls non-streamed and streamed (deltas accumulated as
// clients do), the tool-role round trip reaching the template, chat_template_kwargs, assistant
// prefill, reasoning_content, /v1/responses plain and streamed, and 400s naming the field.
// The test model's weights are tiny, so the calls are forced: by an assistant prefill that holds
// the call, or by tool_choice naming a function (the model then writes the arguments).
// Usage: node serve_tools_client.mjs BASE_URL MODEL. Exits non-zero on any mismatch.
import OpenAI from "openai";
import assert from "node:assert/strict";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30000 });

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather in a city",
      parameters: { type: "object", properties: { city: { type: "string", maxLength: 8 } }, required: ["city"] },
    },
  },
];
const call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>';
const prefilled = [
  { role: "user", content: "weather?" },
  { role: "assistant", content: call },
];

// Accumulates a chat stream as clients do: content, reasoning and tool calls by index.
async function accumulate(stream) {
  const out = { content: "", reasoning: "", calls: [], finish: null };
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      const d = c.delta;
      if (d.content) {
        assert.ok(!d.content.includes("<tool_call"), `markup leaked into content: ${d.content}`);
        out.content += d.content;
      }
      if (d.reasoning_content) out.reasoning += d.reasoning_content;
      for (const t of d.tool_calls ?? []) {
        assert.equal(typeof t.index, "number");
        if (!out.calls[t.index]) {
          assert.match(t.id, /^call_/, "the first delta of a call carries its id");
          assert.equal(t.type, "function");
          assert.equal(typeof t.function.name, "string");
          out.calls[t.index] = { id: t.id, name: t.function.name, arguments: "" };
        } else {
          assert.equal(t.id, undefined, "the id is sent once");
        }
        out.calls[t.index].arguments += t.function.arguments ?? "";
      }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

// 1. A call in the answer (held in the prefill; the model only adds a token or two after it).
const plain = await client.chat.completions.create({ model, messages: prefilled, tools, max_tokens: 2, temperature: 0 });
const msg = plain.choices[0].message;
assert.equal(msg.tool_calls.length, 1);
assert.match(msg.tool_calls[0].id, /^call_/);
assert.equal(msg.tool_calls[0].type, "function");
assert.equal(msg.tool_calls[0].function.name, "get_weather");
assert.equal(typeof msg.tool_calls[0].function.arguments, "string", "arguments are a JSON string");
assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: "Oslo" });
assert.ok(msg.content === null || !msg.content.includes("tool_call"), "the prefill's markup is not content");
assert.ok(["tool_calls", "length"].includes(plain.choices[0].finish_reason));

// 2. The same streamed: the accumulated deltas are the non-streamed message.
const streamed = await accumulate(
  await client.chat.completions.create({ model, messages: prefilled, tools, max_tokens: 2, temperature: 0, stream: true }),
);
assert.equal(streamed.calls.length, 1);
assert.equal(streamed.calls[0].name, "get_weather");
assert.equal(streamed.calls[0].arguments, msg.tool_calls[0].function.arguments);
assert.equal(streamed.content, msg.content ?? "");
assert.equal(streamed.finish, plain.choices[0].finish_reason);

// 3. tool_choice naming a function: the model writes the arguments token by token, held to the
// function's parameters by a grammar, so they parse and validate even from this story model;
// streamed pieces concatenate to the non-streamed arguments (greedy, so both runs write the same).
const forcedBody = {
  model,
  messages: [{ role: "user", content: "weather?" }],
  tools,
  tool_choice: { type: "function", function: { name: "get_weather" } },
  max_tokens: 60,
  temperature: 0,
};
const forced = await client.chat.completions.create(forcedBody);
assert.equal(forced.choices[0].finish_reason, "tool_calls");
assert.equal(forced.choices[0].message.tool_calls[0].function.name, "get_weather");
const forcedArgs = JSON.parse(forced.choices[0].message.tool_calls[0].function.arguments);
assert.deepEqual(Object.keys(forcedArgs), ["city"]);
assert.ok(typeof forcedArgs.city === "string" && [...forcedArgs.city].length <= 8, JSON.stringify(forcedArgs));
const forcedStream = await accumulate(await client.chat.completions.create({ ...forcedBody, stream: true }));
assert.equal(forcedStream.calls[0].name, "get_weather");
assert.equal(forcedStream.calls[0].arguments, forced.choices[0].message.tool_calls[0].function.arguments);
// tool_choice required: the name is open too, so the whole call is the grammar's; sampled, so
// each seed may pick another function, and every answer is one call that parses.
const twoTools = [...tools, { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"] } } }];
for (const seed of [1, 2, 3]) {
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "weather?" }], tools: twoTools, tool_choice: "required", max_tokens: 120, temperature: 1, seed,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, "tool_calls", JSON.stringify(c.message));
  assert.equal(c.message.tool_calls.length, 1);
  const fn = c.message.tool_calls[0].function;
  const args = JSON.parse(fn.arguments);
  if (fn.name === "get_weather") assert.ok(typeof args.city === "string" && [...args.city].length <= 8, fn.arguments);
  else { assert.equal(fn.name, "get_time"); assert.ok(["UTC", "CET"].includes(args.zone), fn.arguments); }
}
// The SDK's own stream helper accumulates the same message.
const helper = client.chat.completions.stream({ ...forcedBody, stream: true });
const final = await helper.finalChatCompletion();
assert.equal(final.choices[0].message.tool_calls[0].function.arguments, forced.choices[0].message.tool_calls[0].function.arguments);

// 4. The tool-role round trip reaches the template: assistant tool_calls (arguments parsed into
// an object), the tool result with its tool_call_id, the tools list.
const history = [
  { role: "user", content: "weather?" },
  {
    role: "assistant",
    content: null,
    tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }],
  },
  { role: "tool", tool_call_id: "call_1", content: "3 C" },
];
const applied = await (
  await fetch(`${baseURL}/apply-template`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: history, tools }),
  })
).json();
assert.ok(applied.prompt.includes("<tools> get_weather"), applied.prompt);
assert.ok(applied.prompt.includes('{"name": "get_weather", "arguments": {"city": "Oslo"}}'), applied.prompt);
assert.ok(applied.prompt.includes('<tool_response id="call_1">\n3 C\n</tool_response>'), applied.prompt);
const after = await client.chat.completions.create({ model, messages: history, tools, max_tokens: 3, temperature: 0 });
assert.equal(after.choices[0].message.role, "assistant");

// 5. chat_template_kwargs reach the template; the <think> it opens makes the answer reasoning.
const thinking = await (
  await fetch(`${baseURL}/apply-template`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], chat_template_kwargs: { enable_thinking: true } }),
  })
).json();
assert.ok(thinking.prompt.endsWith("<|im_start|>assistant\n<think>\n"), JSON.stringify(thinking.prompt));
const thought = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hi" }],
  chat_template_kwargs: { enable_thinking: true },
  max_tokens: 4,
  temperature: 0,
});
assert.ok(thought.choices[0].message.reasoning_content.length > 0, "the answer inside <think> is reasoning");
assert.equal(thought.choices[0].message.content, "");
const thoughtStream = await accumulate(
  await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "hi" }],
    chat_template_kwargs: { enable_thinking: true },
    max_tokens: 4,
    temperature: 0,
    stream: true,
  }),
);
assert.equal(thoughtStream.reasoning, thought.choices[0].message.reasoning_content);

// 6. Assistant prefill: the final assistant message is continued, not closed.
const prefill = await (
  await fetch(`${baseURL}/apply-template`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "tell a story" }, { role: "assistant", content: "Once upon" }] }),
  })
).json();
assert.ok(prefill.prompt.endsWith("<|im_start|>assistant\nOnce upon"), JSON.stringify(prefill.prompt));

// 7. Bad tools: 400 naming the field.
async function expect400(body, param) {
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], max_tokens: 1, ...body });
  } catch (e) {
    assert.equal(e.status, 400, String(e));
    assert.equal(e.param, param, e.message);
    return;
  }
  assert.fail(`accepted: ${JSON.stringify(body)}`);
}
await expect400({ tools: [{ type: "function", function: { name: "f", parameters: { type: "string" } } }] }, "tools[0].function.parameters");
await expect400({ tools, tool_choice: { type: "function", function: { name: "missing" } } }, "tool_choice");
await expect400({ tools, tool_choice: { type: "function", function: {} } }, "tool_choice");

// 8. /v1/responses: plain, streamed (the events the SDK consumes), with tools, and stateless.
const resp = await client.responses.create({ model, input: "Hello", instructions: "Be brief.", max_output_tokens: 5, temperature: 0 });
assert.equal(resp.object, "response");
assert.match(resp.id, /^resp_/);
assert.equal(typeof resp.output_text, "string");
assert.ok(resp.output_text.length > 0);
assert.ok(["completed", "incomplete"].includes(resp.status));
assert.ok(resp.usage.input_tokens > 0 && resp.usage.output_tokens > 0);
const events = [];
let deltas = "";
let completed = null;
for await (const ev of await client.responses.create({
  model, input: "Hello", instructions: "Be brief.", max_output_tokens: 5, temperature: 0, stream: true,
})) {
  events.push(ev.type);
  if (ev.type === "response.output_text.delta") deltas += ev.delta;
  if (ev.type === "response.completed" || ev.type === "response.incomplete") completed = ev.response;
}
for (const t of ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
  "response.output_text.delta", "response.output_text.done", "response.output_item.done"])
  assert.ok(events.includes(t), `${t} in ${events}`);
assert.equal(events[0], "response.created");
assert.equal(deltas, resp.output_text, "the streamed text is the plain response's");
assert.equal(completed.output[0].content[0].text, resp.output_text);
const fc = await client.responses.create({
  model,
  input: [
    { role: "user", content: "weather?" },
    { type: "function_call", call_id: "c1", name: "get_weather", arguments: '{"city":"Oslo"}' },
    { type: "function_call_output", call_id: "c1", output: "3 C" },
  ],
  tools: [{ type: "function", name: "get_weather", parameters: tools[0].function.parameters }],
  tool_choice: { type: "function", name: "get_weather" },
  max_output_tokens: 4,
  temperature: 0,
});
const fcItem = fc.output.find((o) => o.type === "function_call");
assert.equal(fcItem.name, "get_weather");
assert.match(fcItem.call_id, /^call_/);
let argDeltas = "";
let argsDone = null;
for await (const ev of await client.responses.create({
  model,
  input: "weather?",
  tools: [{ type: "function", name: "get_weather", parameters: tools[0].function.parameters }],
  tool_choice: { type: "function", name: "get_weather" },
  max_output_tokens: 4,
  temperature: 0,
  stream: true,
})) {
  if (ev.type === "response.function_call_arguments.delta") argDeltas += ev.delta;
  if (ev.type === "response.function_call_arguments.done") argsDone = ev.arguments;
}
assert.equal(argDeltas, argsDone);
for (const [body, param] of [
  [{ previous_response_id: "resp_1" }, "previous_response_id"],
  [{ store: true }, "store"],
  [{ tools: [{ type: "function", name: "f", parameters: { type: "array" } }] }, "tools[0].parameters"],
]) {
  try {
    await client.responses.create({ model, input: "x", ...body });
    assert.fail(`accepted: ${JSON.stringify(body)}`);
  } catch (e) {
    assert.equal(e.status, 400, String(e));
    assert.equal(e.param, param, e.message);
  }
}
console.log("serve_tools_client: ok");
