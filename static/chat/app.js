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
const sendButton = $("send");
const endButton = $("end-conversation");

const state = {
  sessionId: document.body.dataset.sessionId,
  lastSeq: 0,
  seen: new Set(), // messageIds and seqs already on the page
  streams: new Map(), // messageId -> {node, text}
  // requestId -> {article, frame} of every message not yet acknowledged by message_received, in
  // the order typed. Each is (re)sent on every open socket: a frame sent just before a socket
  // died may never have arrived, and the server answers a repeated requestId only once.
  pending: new Map(),
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
  place(article);
  log.scrollTop = log.scrollHeight;
  return article;
}

// Stored messages are kept in seq order whatever order their frames arrive in (history, resume,
// fan-out, live answers); bubbles without a seq yet (pending, streaming) stay at the end.
function place(article) {
  const seq = Number(article.dataset.seq || 0);
  if (seq) {
    for (const other of log.querySelectorAll("article.message[data-seq]")) {
      if (other !== article && Number(other.dataset.seq) > seq) {
        log.insertBefore(article, other);
        return;
      }
    }
  }
  if (article.parentNode !== log || article.nextSibling) log.append(article);
}

function setBody(article, content) {
  const body = article.querySelector(".body");
  body.replaceChildren(renderMarkdown(content));
}

// A finished tool call as a short chip (text only: set with textContent, never as HTML).
function chipLabel(call) {
  const result = call && typeof call.result === "object" && call.result ? call.result : {};
  const ticket = typeof result.ticketId === "string" ? result.ticketId : "";
  const failed = call.status && call.status !== "success";
  switch (call.tool) {
    case "kb.search":
      return failed ? "Help centre search failed" : "Searched the help centre";
    case "create_ticket":
      return failed ? "Could not open a ticket" : `Opened ticket ${ticket}`.trim();
    case "fetch_status":
      return failed ? "Ticket not found" : `Checked ticket ${ticket}`.trim();
    default:
      return String(call.tool || call.name || "tool");
  }
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
      chip.textContent = chipLabel(call);
      if (call.status && call.status !== "success" && call.status !== "skipped") {
        chip.classList.add("chip-failed");
      }
      if (Number.isFinite(call.executionTime)) chip.title = `${call.executionTime} ms`;
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

function showStored(message, { quiet = false } = {}) {
  const { messageId, seq } = message;
  const streaming = messageId && state.streams.get(messageId);
  if (streaming) state.streams.delete(messageId);
  if (seenBefore(messageId, seq)) {
    // Already on the page (history, resume or fan-out got there first): drop the duplicate.
    if (streaming) streaming.node.remove();
    return;
  }
  let article;
  if (streaming) {
    article = streaming.node;
    article.classList.remove("streaming");
    if (seq) article.dataset.seq = String(seq);
    setBody(article, message.content || "");
    place(article);
  } else {
    article = bubble(message);
  }
  if (message.status && message.status !== "complete") article.dataset.status = message.status;
  addExtras(article, {
    toolCalls: message.toolCalls,
    citations: message.metadata && message.metadata.citations,
  });
  if (message.role === "assistant" && messageId) addReportAction(article, messageId);
  remember(messageId, seq);
  if (message.role === "assistant" && !quiet) announce(message.content);
}

// "Report this answer": a small inline form under an answer; POST /api/session/{id}/report.
function addReportAction(article, messageId) {
  if (article.querySelector(".report")) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "report";
  button.textContent = "Report this answer";
  button.addEventListener("click", () => openReportForm(article, messageId, button));
  article.querySelector(".meta").append(button);
}

function openReportForm(article, messageId, button) {
  if (article.querySelector(".report-form")) return;
  button.hidden = true;
  const reportForm = document.createElement("form");
  reportForm.className = "report-form";
  const fieldId = "report-" + messageId;
  const label = document.createElement("label");
  label.htmlFor = fieldId;
  label.textContent = "What is wrong with this answer? (optional)";
  const reason = document.createElement("textarea");
  reason.id = fieldId;
  reason.rows = 2;
  reason.maxLength = 1000;
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.textContent = "Send report";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  const close = () => {
    reportForm.remove();
    button.hidden = false;
    button.focus();
  };
  cancel.addEventListener("click", close);
  reportForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  reportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    let response;
    try {
      response = await fetch(`/api/session/${encodeURIComponent(state.sessionId)}/report`, {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ messageId, reason: reason.value.trim() }),
      });
    } catch {
      response = null;
    }
    if (!response || !response.ok) {
      submit.disabled = false;
      showNotice("Could not send the report. Try again in a moment.", "error");
      return;
    }
    const done = document.createElement("p");
    done.className = "reported";
    done.setAttribute("role", "status");
    done.textContent = "Reported. Thank you: our team will review this answer.";
    reportForm.replaceWith(done);
    button.remove();
  });
  reportForm.append(label, reason, submit, cancel);
  article.append(reportForm);
  reason.focus();
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
  // History is not announced: only answers arriving while the page is open are.
  for (const message of body.recentMessages || []) showStored(message, { quiet: true });
}

function send(frame) {
  const socket = state.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ ...frame, timestamp: Date.now() }));
    return true;
  }
  return false;
}

function sendPending() {
  for (const { frame } of state.pending.values()) {
    if (!send(frame)) return;
  }
}

// Forget the socket now, so that nothing it still delivers reaches the page.
function dropSocket(code, reason) {
  const socket = state.socket;
  state.socket = null;
  clearInterval(state.heartbeat);
  clearTimeout(state.silence);
  clearTimeout(state.reconnectTimer);
  typing.hidden = true;
  if (socket) socket.close(code, reason);
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
    sendPending();
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
    // An answer cut off with the socket is finished by resume (or stays as far as it got).
    for (const stream of state.streams.values()) stream.node.classList.remove("streaming");
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
      const requestId = frame.requestId || data.requestId;
      const entry = state.pending.get(requestId);
      if (!entry) break;
      state.pending.delete(requestId);
      if (seenBefore(data.messageId, data.seq)) {
        // A resent message the server had stored already; resume has shown it.
        entry.article.remove();
        break;
      }
      entry.article.dataset.messageId = data.messageId;
      entry.article.dataset.seq = String(data.seq);
      entry.article.classList.remove("pending");
      remember(data.messageId, data.seq);
      place(entry.article);
      break;
    }
    case "ai_typing":
      // While a tool runs the server says what it is doing ("searching the knowledge base…").
      typing.textContent = typeof data.status === "string" && data.status
        ? data.status.charAt(0).toUpperCase() + data.status.slice(1)
        : "The assistant is typing…";
      typing.hidden = false;
      break;
    case "typing":
      typing.textContent = "The assistant is typing…";
      typing.hidden = !data.isTyping;
      break;
    case "ai_token": {
      typing.hidden = true;
      if (!data.messageId || seenBefore(data.messageId)) break;
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
      showError(data, frame.requestId);
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

function showError(data, requestId) {
  typing.hidden = true;
  const entry = requestId && state.pending.get(requestId);
  if (entry) {
    // Refused (too long, rate limit, ...): not resent; the bubble says so.
    state.pending.delete(requestId);
    markFailed(entry.article);
  }
  const partial = data.details && data.details.messageId && state.streams.get(data.details.messageId);
  if (partial) partial.node.classList.remove("streaming");
  if (data.code === "INVALID_SESSION" || data.code === "SESSION_NOT_FOUND") {
    endedState("This conversation has ended. Start a new one to continue.");
    return;
  }
  showNotice(String(data.message || "Something went wrong."), "error");
}

function markFailed(article) {
  article.classList.remove("pending");
  article.classList.add("failed");
  const note = document.createElement("span");
  note.className = "failed-note";
  note.textContent = "Not sent";
  article.querySelector(".meta").append(note);
}

// The conversation is over (ended here, elsewhere, or expired): no socket, no composer.
function endedState(notice) {
  if (state.ended) return;
  state.ended = true;
  dropSocket(1000, "ended");
  for (const { article } of state.pending.values()) markFailed(article);
  state.pending.clear();
  setStatus("offline", "Conversation ended");
  input.disabled = true;
  sendButton.disabled = true;
  endButton.disabled = true;
  showNotice(notice, "info");
}

function submitMessage(text) {
  const requestId = newRequestId();
  const article = bubble({ role: "user", content: text });
  article.classList.add("pending");
  const frame = {
    type: "chat_message",
    data: { content: text, sessionId: state.sessionId },
    requestId,
  };
  state.pending.set(requestId, { article, frame });
  send(frame); // offline: sent when a socket opens
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
  dropSocket(1000, "new conversation");
  state.sessionId = sessionId;
  document.body.dataset.sessionId = sessionId;
  state.lastSeq = 0;
  state.seen.clear();
  state.streams.clear();
  state.pending.clear();
  state.ended = false;
  state.attempt = 0;
  log.replaceChildren();
  announcer.textContent = "";
  input.disabled = false;
  sendButton.disabled = false;
  endButton.disabled = false;
  connect();
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

$("new-conversation").addEventListener("click", async () => {
  // A same-origin view, not POST /api/session: it also moves the HttpOnly cookie to the new
  // session, so a reload shows the new conversation rather than the old one.
  let response;
  try {
    response = await fetch("/conversation/new", {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
  } catch {
    response = null;
  }
  if (!response || !response.ok) {
    showNotice("Could not start a new conversation. Try again in a moment.", "error");
    return;
  }
  const body = await response.json();
  resetConversation(body.sessionId);
  input.focus();
});

endButton.addEventListener("click", async () => {
  if (state.ended) return;
  const ending = state.sessionId;
  let response;
  try {
    response = await fetch(`/api/session/${encodeURIComponent(ending)}`, {
      method: "DELETE",
      headers: { Accept: "application/json" },
    });
  } catch {
    response = null;
  }
  // 409: it had ended already, which is what was asked for.
  if (!response || !(response.ok || response.status === 409)) {
    showNotice("Could not end the conversation. Try again in a moment.", "error");
    return;
  }
  // The socket may have said so first (its frames can beat this response), and the user may
  // already have started a new conversation: that one must not be ended too.
  if (state.sessionId !== ending) return;
  // The page view opens a fresh session for a cookie naming an ended one, so a reload is clean.
  endedState("This conversation has ended. Start a new one to continue.");
  $("new-conversation").focus();
});

loadHistory()
  .catch(() => {})
  .finally(connect);
