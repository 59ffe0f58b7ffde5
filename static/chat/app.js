// The chat page: history over REST, then a WebSocket with resume, streaming, heartbeat,
// reconnect with backoff and an offline queue. Message text only ever reaches the DOM through
// textContent (see markdown.js).

import { renderMarkdown } from "./markdown.js";

const HEARTBEAT_MS = 20000;
const SILENCE_MS = 45000;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;

const $ = (id) => document.getElementById(id);
const log = $("log");
const statusLine = $("status");
const typing = $("typing");
const announcer = $("announcer");
const form = $("composer");
const input = $("message");

const state = {
  sessionId: document.body.dataset.sessionId,
  lastSeq: 0,
  seen: new Set(), // messageIds and seqs already on the page
  streams: new Map(), // messageId -> {node, text}
  outbox: [], // frames waiting for an open socket, each with its own requestId
  pending: new Map(), // requestId -> bubble of a sent, unacknowledged message
  socket: null,
  attempt: 0,
  heartbeat: null,
  silence: null,
  reconnectTimer: null,
  ended: false,
};

function newRequestId() {
  return "req_" + crypto.randomUUID().replace(/-/g, "");
}

function setStatus(kind, text) {
  statusLine.dataset.state = kind;
  statusLine.textContent = text;
}

function formatTime(ms) {
  const date = new Date(ms || Date.now());
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function bubble({ role, content, timestamp, messageId, seq }) {
  const article = document.createElement("article");
  article.className = "message " + (role === "user" ? "from-user" : "from-assistant");
  if (messageId) article.dataset.messageId = messageId;
  if (seq) article.dataset.seq = String(seq);
  const meta = document.createElement("header");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role === "user" ? "You" : role === "assistant" ? "Assistant" : role;
  const time = document.createElement("time");
  time.dateTime = new Date(timestamp || Date.now()).toISOString();
  time.textContent = formatTime(timestamp);
  meta.append(who, time);
  const body = document.createElement("div");
  body.className = "body";
  body.append(renderMarkdown(content || ""));
  article.append(meta, body);
  log.append(article);
  log.scrollTop = log.scrollHeight;
  return article;
}

function setBody(article, content) {
  const body = article.querySelector(".body");
  body.replaceChildren(renderMarkdown(content));
}

function addExtras(article, { toolCalls, citations }) {
  for (const old of article.querySelectorAll(".chips, .citations")) old.remove();
  if (Array.isArray(toolCalls) && toolCalls.length) {
    const chips = document.createElement("ul");
    chips.className = "chips";
    chips.setAttribute("aria-label", "Tools used");
    for (const call of toolCalls) {
      const chip = document.createElement("li");
      chip.className = "chip";
      chip.textContent = String(call.name || call.tool || "tool");
      chips.append(chip);
    }
    article.append(chips);
  }
  const links = (citations || []).filter((c) => c && /^https?:\/\//i.test(String(c.url || "")));
  if (links.length) {
    const list = document.createElement("ul");
    list.className = "citations";
    list.setAttribute("aria-label", "Sources");
    for (const citation of links) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = citation.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      link.textContent = String(citation.title || citation.url);
      item.append(link);
      list.append(item);
    }
    article.append(list);
  }
}

function seenBefore(messageId, seq) {
  return (messageId && state.seen.has(messageId)) || (seq && state.seen.has("seq:" + seq));
}

function remember(messageId, seq) {
  if (messageId) state.seen.add(messageId);
  if (seq) {
    state.seen.add("seq:" + seq);
    state.lastSeq = Math.max(state.lastSeq, seq);
  }
}

function showStored(message) {
  const { messageId, seq } = message;
  if (seenBefore(messageId, seq)) return;
  const streaming = messageId && state.streams.get(messageId);
  let article;
  if (streaming) {
    article = streaming.node;
    article.dataset.seq = String(seq);
    setBody(article, message.content);
    state.streams.delete(messageId);
  } else {
    article = bubble(message);
  }
  addExtras(article, {
    toolCalls: message.toolCalls,
    citations: message.metadata && message.metadata.citations,
  });
  remember(messageId, seq);
  if (message.role === "assistant") announce(message.content);
}

function announce(text) {
  announcer.textContent = "Assistant: " + String(text).slice(0, 500);
}

async function loadHistory() {
  const response = await fetch(`/api/session/${encodeURIComponent(state.sessionId)}?limit=100`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) return;
  const body = await response.json();
  for (const message of body.recentMessages || []) showStored(message);
}

function send(frame) {
  const socket = state.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ ...frame, timestamp: Date.now() }));
    return true;
  }
  return false;
}

function flushOutbox() {
  while (state.outbox.length && send(state.outbox[0])) state.outbox.shift();
}

function resetSilenceTimer() {
  clearTimeout(state.silence);
  state.silence = setTimeout(() => {
    // A socket that stays silent through two heartbeats is dead even if the browser thinks not.
    if (state.socket) state.socket.close(4000, "silent");
  }, SILENCE_MS);
}

function connect() {
  if (state.ended) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws?sessionId=${encodeURIComponent(state.sessionId)}`;
  setStatus("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener("open", () => {
    if (state.socket !== socket) return;
    state.attempt = 0;
    setStatus("online", "Connected");
    send({ type: "resume", data: { lastSeq: state.lastSeq } });
    flushOutbox();
    clearInterval(state.heartbeat);
    state.heartbeat = setInterval(() => send({ type: "ping", data: {} }), HEARTBEAT_MS);
    resetSilenceTimer();
  });
  socket.addEventListener("message", (event) => {
    if (state.socket !== socket) return;
    resetSilenceTimer();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handle(frame);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    state.socket = null;
    clearInterval(state.heartbeat);
    clearTimeout(state.silence);
    typing.hidden = true;
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (state.ended) return;
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
  // Equal jitter: half the step fixed, half random, so clients spread out but still back off.
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  state.attempt += 1;
  setStatus("offline", `Offline — retrying in ${Math.ceil(delay / 1000)} s`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, delay);
}

function handle(frame) {
  const data = frame.data || {};
  switch (frame.type) {
    case "message_received": {
      const article = state.pending.get(frame.requestId || data.requestId);
      if (article) {
        article.dataset.messageId = data.messageId;
        article.dataset.seq = String(data.seq);
        article.classList.remove("pending");
        state.pending.delete(frame.requestId || data.requestId);
        remember(data.messageId, data.seq);
      }
      break;
    }
    case "ai_typing":
      typing.hidden = false;
      break;
    case "typing":
      typing.hidden = !data.isTyping;
      break;
    case "ai_token": {
      typing.hidden = true;
      if (seenBefore(data.messageId)) break;
      let stream = state.streams.get(data.messageId);
      if (!stream) {
        const node = bubble({ role: "assistant", content: "", messageId: data.messageId });
        node.classList.add("streaming");
        stream = { node, text: "" };
        state.streams.set(data.messageId, stream);
      }
      stream.text += String(data.delta || "");
      setBody(stream.node, stream.text);
      log.scrollTop = log.scrollHeight;
      break;
    }
    case "ai_response": {
      typing.hidden = true;
      const stream = state.streams.get(data.messageId);
      if (stream) stream.node.classList.remove("streaming");
      showStored({
        role: "assistant",
        content: data.content,
        messageId: data.messageId,
        seq: data.seq,
        timestamp: frame.timestamp,
        toolCalls: data.toolCalls,
        metadata: data.metadata,
      });
      break;
    }
    case "message":
      showStored(data);
      break;
    case "error":
      showError(data);
      break;
    case "system_notification":
      showNotice(String(data.message || ""), data.level);
      break;
    default:
      break;
  }
}

function showNotice(text, level) {
  const note = document.createElement("p");
  note.className = "notice " + (level === "error" || level === "warning" ? level : "info");
  note.setAttribute("role", "alert");
  note.textContent = text;
  log.append(note);
  log.scrollTop = log.scrollHeight;
}

function showError(data) {
  showNotice(String(data.message || "Something went wrong."), "error");
  if (data.code === "INVALID_SESSION" || data.code === "SESSION_NOT_FOUND") {
    state.ended = true;
    setStatus("offline", "Conversation ended");
  }
}

function submitMessage(text) {
  const requestId = newRequestId();
  const article = bubble({ role: "user", content: text });
  article.classList.add("pending");
  state.pending.set(requestId, article);
  const frame = {
    type: "chat_message",
    data: { content: text, sessionId: state.sessionId },
    requestId,
  };
  if (!send(frame)) state.outbox.push(frame);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || state.ended) return;
  input.value = "";
  submitMessage(text);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

function resetConversation(sessionId) {
  state.sessionId = sessionId;
  document.body.dataset.sessionId = sessionId;
  state.lastSeq = 0;
  state.seen.clear();
  state.streams.clear();
  state.pending.clear();
  state.outbox = [];
  state.ended = false;
  state.attempt = 0;
  log.replaceChildren();
  const old = state.socket;
  state.socket = null;
  if (old) old.close(1000, "new conversation");
  clearTimeout(state.reconnectTimer);
  connect();
}

$("new-conversation").addEventListener("click", async () => {
  const response = await fetch("/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) {
    showNotice("Could not start a new conversation.", "error");
    return;
  }
  const body = await response.json();
  resetConversation(body.sessionId);
  input.focus();
});

$("end-conversation").addEventListener("click", async () => {
  await fetch(`/api/session/${encodeURIComponent(state.sessionId)}`, { method: "DELETE" });
  state.ended = true;
  clearTimeout(state.reconnectTimer);
  if (state.socket) state.socket.close(1000, "ended");
  setStatus("offline", "Conversation ended");
  showNotice("This conversation has ended. Start a new one to continue.", "info");
});

loadHistory()
  .catch(() => {})
  .finally(connect);
