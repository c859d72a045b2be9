// The chat page of `kiln serve` (GET /): a conversation with one of the served models, through
// the public API only. It lists the models from /v1/models, sends the whole conversation to
// /v1/chat/completions with stream: true and renders the answer's deltas as they arrive (at most
// once per animation frame). Stop aborts the fetch; the server sees the connection close and
// cancels the request. The conversation lives in this tab only.
//
// When the server has API keys, its answers are 401 until the user gives the key: the page then
// shows the key form, keeps the key in sessionStorage (this tab only) and sends it as a Bearer
// token. Sampling settings and the system prompt are kept in localStorage.

const KEY_STORAGE = "kiln.chat.apiKey";
const SETTINGS_STORAGE = "kiln.chat.settings";

const $ = (sel) => document.querySelector(sel);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) ?? "",
  history: [],        // [{role, content}]: the turns sent with the next request (system prompt apart)
  controller: null,   // the AbortController of the answer streaming now, or null
  modelsLoaded: false,
};

// ---- the API --------------------------------------------------------------------------------

// An error answer of the server (status > 0) or a failure to reach it (status 0).
class ApiFailure extends Error {
  constructor(message, status, param = null) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  return h;
}

// The server's OpenAI-shaped error body as an ApiFailure.
async function failureOf(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let param = null;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
    param = body?.error?.param ?? null;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  return new ApiFailure(message, response.status, param);
}

async function api(path, options = {}) {
  let response;
  try {
    // Relative to the page, so that the page works behind a proxy under a prefix.
    response = await fetch(path, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiFailure(`the server could not be reached (${e.message})`, 0);
  }
  if (!response.ok) throw await failureOf(response);
  return response;
}

// The data of each server-sent event of a stream, as text. The stream is read to its end (past
// [DONE]), so that the server sees the whole answer delivered; leaving early (an exception, a
// Stop) cancels the body.
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data !== "") yield data;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---- settings -------------------------------------------------------------------------------

const SETTING_FIELDS = ["system", "temperature", "top-p", "max-tokens", "seed"];

function loadSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? "{}") ?? {};
  } catch {
    saved = {};
  }
  for (const id of SETTING_FIELDS) if (typeof saved[id] === "string") $(`#${id}`).value = saved[id];
  return saved;
}

function saveSettings() {
  const s = { model: $("#model").value };
  for (const id of SETTING_FIELDS) s[id] = $(`#${id}`).value;
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(s));
}

// The request's sampling fields: a field left empty is not sent (the server's default holds);
// what the server refuses comes back as its 400, shown as any error is.
function samplingFields() {
  const fields = {};
  const number = (id) => {
    const text = $(`#${id}`).value.trim();
    return text === "" ? null : Number(text);
  };
  const temperature = number("temperature");
  if (temperature !== null) fields.temperature = temperature;
  const topP = number("top-p");
  if (topP !== null) fields.top_p = topP;
  const maxTokens = number("max-tokens");
  if (maxTokens !== null) fields.max_tokens = maxTokens;
  const seed = number("seed");
  if (seed !== null) fields.seed = seed;
  return fields;
}

// ---- the page -------------------------------------------------------------------------------

function showError(message) {
  const el = $("#error");
  el.textContent = message;
  el.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

function announce(text) {
  $("#status").textContent = text;
}

function togglePanel(button, panel, open) {
  const show = open ?? panel.hidden;
  panel.hidden = !show;
  button.setAttribute("aria-expanded", String(show));
}

// The server refused the request for its key: ask for it.
function askForKey(refused) {
  togglePanel($("#key-toggle"), $("#key-form"), true);
  $("#key-form").classList.add("attention");
  $("#key").setAttribute("aria-invalid", refused ? "true" : "false");
  showError(refused ? "The server refused this API key (401). Enter the right key above." : "This server needs its API key. Enter it above.");
  $("#key").focus();
}

function keyPlaceholder() {
  $("#key").placeholder = state.key ? "key set (paste to replace)" : "paste the server's API key";
}

async function loadModels(saved) {
  const select = $("#model");
  try {
    const response = await api("v1/models", { headers: headers(false) });
    const { data } = await response.json();
    const names = (data ?? []).map((m) => m.id).filter((id) => typeof id === "string");
    select.replaceChildren(...names.map((name) => new Option(name, name)));
    if (names.length === 0) {
      select.replaceChildren(new Option("no model", ""));
      showError("The server serves no model.");
      return;
    }
    const wanted = saved?.model ?? select.dataset.wanted;
    if (wanted && names.includes(wanted)) select.value = wanted;
    state.modelsLoaded = true;
    clearError();
  } catch (e) {
    select.replaceChildren(new Option("unavailable", ""));
    if (e.status === 401) askForKey(state.key !== "");
    else showError(`Could not list the models: ${e.message}`);
  }
}

// One message of the conversation in the page; returns its text element.
function addMessage(role, text, stateName = "done") {
  $("#empty").hidden = true;
  const box = document.createElement("article");
  box.className = "msg";
  box.dataset.role = role;
  box.dataset.state = stateName;
  const who = document.createElement("h2");
  who.className = "who";
  who.textContent = role === "user" ? "You" : $("#model").value || "Model";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  box.append(who, body);
  $("#conversation").append(box);
  return box;
}

function addNote(box, text) {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = text;
  box.append(note);
}

// Keeps the newest text in view, unless the reader scrolled up to read.
function followIfAtBottom(wasAtBottom) {
  const wrap = $(".conversation-wrap");
  if (wasAtBottom) wrap.scrollTop = wrap.scrollHeight;
}
function atBottom() {
  const wrap = $(".conversation-wrap");
  return wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 40;
}

function setBusy(busy) {
  $("#send").disabled = busy;
  $("#stop").disabled = !busy;
  $("#model").disabled = busy;
}

async function send(text) {
  const model = $("#model").value;
  if (!model) {
    showError(state.modelsLoaded ? "Pick a model first." : "No model is available yet.");
    return;
  }
  clearError();
  const userTurn = { role: "user", content: text };
  state.history.push(userTurn);
  const userBox = addMessage("user", text);
  const replyBox = addMessage("assistant", "", "streaming");
  const replyText = replyBox.querySelector(".text");
  replyBox.setAttribute("aria-busy", "true");
  followIfAtBottom(true);

  const messages = [];
  const system = $("#system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history);
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  announce("Answering…");

  let reply = "";
  let shown = 0;
  let frame = 0;
  // Deltas arrive faster than the screen refreshes: the new text is appended once per frame, to
  // one text node (rewriting the whole answer each frame would cost more the longer it grows).
  const replyNode = document.createTextNode("");
  const render = () => {
    frame = 0;
    if (shown === reply.length) return;
    const follow = atBottom();
    if (!replyNode.parentNode) replyText.append(replyNode);
    replyNode.appendData(reply.slice(shown));
    shown = reply.length;
    followIfAtBottom(follow);
  };
  let finish = null;
  let failure = null;
  try {
    const response = await api("v1/chat/completions", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ model, messages, stream: true, ...samplingFields() }),
      signal: controller.signal,
    });
    for await (const data of sseData(response.body)) {
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      // An error after the stream began (the server failed mid-answer) comes as an event.
      if (chunk.error) throw new ApiFailure(chunk.error.message ?? "the server failed while answering", 500);
      const choice = chunk.choices?.[0];
      if (typeof choice?.delta?.content === "string" && choice.delta.content !== "") {
        reply += choice.delta.content;
        if (!frame) frame = requestAnimationFrame(render);
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    if (!controller.signal.aborted) failure = e instanceof ApiFailure ? e : new ApiFailure(e.message, 0);
  }
  if (frame) cancelAnimationFrame(frame);
  render();
  state.controller = null;
  setBusy(false);
  replyBox.removeAttribute("aria-busy");

  if (failure && reply === "") {
    // Nothing came back: the turn is taken back and its text returned to the box, to retry.
    state.history.pop();
    userBox.remove();
    replyBox.remove();
    $("#empty").hidden = state.history.length > 0;
    if (!$("#prompt").value) $("#prompt").value = text;
    if (failure.status === 401) askForKey(state.key !== "");
    else showError(failure.status ? `The server answered ${failure.status}: ${failure.message}` : failure.message);
    announce("The request failed.");
    return;
  }
  // What arrived stays in the conversation (also after Stop), so the next turn continues it.
  state.history.push({ role: "assistant", content: reply });
  if (controller.signal.aborted) {
    replyBox.dataset.state = "stopped";
    addNote(replyBox, "Stopped.");
    announce("Stopped.");
  } else if (failure) {
    replyBox.dataset.state = "error";
    showError(`The answer broke off: ${failure.message}`);
    announce("The answer broke off.");
  } else {
    replyBox.dataset.state = "done";
    if (finish === "length") addNote(replyBox, "Cut at the token limit (max tokens or the context).");
    announce("Answered.");
  }
  replyBox.dataset.finish = finish ?? "";
}

function stop() {
  if (state.controller) state.controller.abort();
}

function newChat() {
  stop();
  state.history = [];
  $("#conversation").replaceChildren($("#empty"));
  $("#empty").hidden = false;
  clearError();
  announce("New chat.");
  $("#prompt").focus();
}

function init() {
  const saved = loadSettings();
  keyPlaceholder();

  $("#settings-toggle").addEventListener("click", () => togglePanel($("#settings-toggle"), $("#settings")));
  $("#key-toggle").addEventListener("click", () => togglePanel($("#key-toggle"), $("#key-form")));
  for (const id of SETTING_FIELDS) $(`#${id}`).addEventListener("change", saveSettings);
  $("#model").addEventListener("change", saveSettings);

  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("#key");
    const key = input.value.trim();
    input.value = "";
    if (!key) return;
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    keyPlaceholder();
    input.setAttribute("aria-invalid", "false");
    $("#key-form").classList.remove("attention");
    togglePanel($("#key-toggle"), $("#key-form"), false);
    clearError();
    if (!state.modelsLoaded) loadModels(saved);
    $("#prompt").focus();
  });
  $("#forget-key").addEventListener("click", () => {
    state.key = "";
    sessionStorage.removeItem(KEY_STORAGE);
    keyPlaceholder();
  });

  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.controller) return;
    const text = $("#prompt").value;
    if (text.trim() === "") return;
    $("#prompt").value = "";
    send(text);
  });
  $("#prompt").addEventListener("keydown", (e) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an input method's text is not.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.controller) stop();
  });
  $("#stop").addEventListener("click", stop);
  $("#new-chat").addEventListener("click", newChat);

  loadModels(saved);
  $("#prompt").focus();
}

init();
