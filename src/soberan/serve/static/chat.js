// soberan chat page: talks to this server only (the page's CSP forbids anything else), streams
// answers over server-sent events with fetch + ReadableStream, and shows which model and
// checkpoint answers. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("soberan-key") || "", model: null, messages: [], abort: null };

function setStatus(text) { $("status").textContent = text; }

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return `${resp.status}: ${body.error ? body.error.message : JSON.stringify(body)}`;
  } catch (e) {
    return `HTTP ${resp.status}`;
  }
}

async function connect() {
  state.key = $("key").value.trim() || state.key;
  const resp = await fetch("/v1/models", { headers: { Authorization: "Bearer " + state.key } });
  if (!resp.ok) {
    setStatus(await errorText(resp));
    return;
  }
  const card = (await resp.json()).data[0];
  state.model = card.id;
  sessionStorage.setItem("soberan-key", state.key);
  $("model-line").firstChild.textContent = "Answering: ";
  $("model").textContent = card.id;
  $("checkpoint").textContent = `checkpoint ${card.checkpoint.slice(0, 16)} · ${card.backend}` +
    (card.quantize !== "none" ? ` · ${card.quantize}` : "") + ` · context ${card.context_length}`;
  $("prompt").disabled = false;
  $("send").disabled = false;
  $("login").hidden = true;
  setStatus("connected");
  $("prompt").focus();
}

// Parse an SSE byte stream into its `data:` payloads, however the chunks are split.
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data:")) yield line.slice(5).trim();
      }
    }
  }
}

async function send(ev) {
  ev.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || !state.model) return;
  $("prompt").value = "";
  addMessage("user", text);
  state.messages.push({ role: "user", content: text });
  const answer = addMessage("assistant", "");
  answer.classList.add("streaming");
  $("send").disabled = true;
  $("stop").disabled = false;
  state.abort = new AbortController();
  const started = performance.now();
  let tokens = 0, reason = "";
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      signal: state.abort.signal,
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + state.key },
      body: JSON.stringify({
        model: state.model, messages: state.messages, stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number($("max-tokens").value) || 128,
        temperature: Number($("temperature").value),
      }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    setStatus("answering…");
    for await (const data of sseData(resp.body)) {
      if (data === "[DONE]") break;
      const msg = JSON.parse(data);
      if (msg.error) throw new Error(msg.error.message);
      if (msg.usage) tokens = msg.usage.completion_tokens;
      const choice = msg.choices && msg.choices[0];
      if (choice && choice.delta && choice.delta.content) answer.textContent += choice.delta.content;
      if (choice && choice.finish_reason) reason = choice.finish_reason;
    }
    state.messages.push({ role: "assistant", content: answer.textContent });
    const secs = (performance.now() - started) / 1000;
    setStatus(`done (${reason}): ${tokens} tokens in ${secs.toFixed(1)} s`);
  } catch (e) {
    if (e.name === "AbortError") {
      setStatus("stopped");
    } else {
      answer.classList.add("error");
      answer.textContent += (answer.textContent ? "\n" : "") + e.message;
      setStatus("error");
    }
    state.messages.pop();
  } finally {
    answer.classList.remove("streaming");
    answer.classList.add("done");
    $("send").disabled = false;
    $("stop").disabled = true;
    state.abort = null;
  }
}

$("connect").addEventListener("click", connect);
$("key").addEventListener("keydown", (e) => { if (e.key === "Enter") connect(); });
$("ask").addEventListener("submit", send);
$("stop").addEventListener("click", () => state.abort && state.abort.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
if (state.key) { $("key").value = state.key; }
