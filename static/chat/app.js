// The chat page: history over REST, then a WebSocket with resume, streaming, heartbeat,
// reconnect with backoff and an offline queue. Message text only ever reaches the DOM through
// markdown.js (markdown-it, then DOMPurify) or textContent. The hand-off to a person is
// handoff.js; the thumbs and the report under an answer are feedback.js; the greeting, the
// suggestions, the brand and the end dialog are welcome.js; scrolling is follow.js.

import { addAnswerActions } from "./feedback.js";
import { createFollow } from "./follow.js";
import { createHandoff, errorMessage } from "./handoff.js";
import { renderMarkdown } from "./markdown.js";
import { avatarImage, brand } from "./welcome.js";

const HEARTBEAT_MS = 20000;
const SILENCE_MS = 45000;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;

const $ = (id) => document.getElementById(id);
const log = $("log");
const statusLine = $("status");
const typing = $("typing");
const typingText = $("typing-text");
const announcer = $("announcer");
const form = $("composer");
const input = $("message");
const sendButton = $("send");
const endButton = $("end-conversation");

// The log follows a streaming answer to its last source link, unless the reader scrolled up.
const follow = createFollow(log, $("jump"));

const state = {
  sessionId: document.body.dataset.sessionId,
  lastSeq: 0,
  seen: new Set(), // messageIds and seqs already on the page
  streams: new Map(), // messageId -> {node, text, frame}
  // requestId -> {article, frame} of every message not yet acknowledged by message_received, in
  // the order typed. Each is (re)sent on every open socket: a frame sent just before a socket
  // died may never have arrived, and the server answers a repeated requestId only once.
  pending: new Map(),
  socket: null,
  attempt: 0,
  heartbeat: null,
  silence: null,
  reconnectTimer: null,
  connectedBefore: false,
  ended: false,
};

function newRequestId() {
  return "req_" + crypto.randomUUID().replace(/-/g, "");
}

// What feedback.js and handoff.js need of the page.
const pageContext = {
  sessionId: () => state.sessionId,
  notify: (text, level) => showNotice(text, level),
  onHandoff: (status) => handoff.apply(status),
  newRequestId,
  sendFrame: (frame) => send(frame),
  focusComposer: () => input.focus(),
};
const handoff = createHandoff(pageContext);

function setStatus(kind, text) {
  statusLine.dataset.state = kind;
  statusLine.textContent = text;
}

function formatTime(ms) {
  const date = new Date(ms || Date.now());
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const BUBBLE_CLASSES = { user: "from-user", staff: "from-staff" };

// Who wrote a message, as its bubble and the screen-reader announcement name them.
function senderOf({ role, metadata }) {
  if (role === "user") return "You";
  if (role === "assistant") return brand.name;
  if (role === "staff") {
    const name = metadata && typeof metadata.agentName === "string" ? metadata.agentName : "";
    return name.trim() || "Support agent";
  }
  return String(role || "");
}

function bubble({ role, content, timestamp, messageId, seq, metadata }) {
  const article = document.createElement("article");
  article.className = "message " + (BUBBLE_CLASSES[role] || "from-assistant");
  if (messageId) article.dataset.messageId = messageId;
  if (seq) article.dataset.seq = String(seq);
  const meta = document.createElement("header");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = senderOf({ role, metadata });
  const time = document.createElement("time");
  time.dateTime = new Date(timestamp || Date.now()).toISOString();
  time.textContent = formatTime(timestamp);
  if (role === "assistant") meta.append(avatarImage(20));
  meta.append(who);
  if (role === "staff") {
    const team = document.createElement("span");
    team.className = "team-badge";
    team.textContent = "Support team";
    meta.append(team);
  }
  meta.append(time);
  const body = document.createElement("div");
  body.className = "body";
  body.append(renderMarkdown(content || ""));
  article.append(meta, body);
  place(article);
  // What the reader wrote always comes into view; anything else only if they are following.
  if (role === "user") follow.stick();
  else follow.keep();
  return article;
}

// Stored messages are kept in seq order whatever order their frames arrive in (history, resume,
// fan-out, live answers); bubbles without a seq yet (pending, streaming) stay at the end.
function place(node) {
  const seq = Number(node.dataset.seq || 0);
  if (seq) {
    for (const other of log.querySelectorAll(":scope > [data-seq]")) {
      if (other !== node && Number(other.dataset.seq) > seq) {
        log.insertBefore(node, other);
        return;
      }
    }
  }
  if (node.parentNode !== log || node.nextSibling) log.append(node);
}

function setBody(article, content, options = {}) {
  const body = article.querySelector(".body");
  body.replaceChildren(renderMarkdown(content, options));
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

function absolute(url) {
  try {
    return new URL(String(url)).href;
  } catch {
    return String(url);
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
  // A source the answer already links in its text is not listed again under it.
  const linked = new Set([...article.querySelectorAll(".body a[href]")].map((a) => a.href));
  const links = (citations || []).filter(
    (c) => c && /^https?:\/\//i.test(String(c.url || "")) && !linked.has(absolute(c.url)),
  );
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

// A stored system message (e.g. a person joined): a centred line of the log, not a bubble.
// The server's "This conversation has ended." and the page's own ended notice say one thing:
// whichever comes second is not shown.
const ENDED = "This conversation has ended";

function endedLine() {
  return [...log.querySelectorAll(".notice")].find((n) => n.textContent.startsWith(ENDED));
}

function systemLine({ content, messageId, seq }) {
  if (String(content || "").startsWith(ENDED) && endedLine()) return;
  const line = document.createElement("p");
  line.className = "notice from-system";
  if (messageId) line.dataset.messageId = messageId;
  if (seq) line.dataset.seq = String(seq);
  line.textContent = String(content || "");
  place(line);
  follow.keep();
}

// A note in a user bubble's header ("Sent to Alice"): the message went to a person.
function markForwarded(article, agentName) {
  article.dataset.status = "forwarded";
  const text = agentName ? `Sent to ${agentName}` : "Sent to the support team";
  let note = article.querySelector(".forwarded-note");
  if (!note) {
    note = document.createElement("span");
    note.className = "forwarded-note";
    article.querySelector(".meta").append(note);
  }
  note.textContent = text;
}

// The offline assistant says once per conversation that no language model is answering; after
// that a small badge on each of its answers is enough.
function markOffline(article, metadata) {
  if (!metadata || metadata.aiModel !== "offline-assistant") return;
  const meta = article.querySelector(".meta");
  if (!meta || meta.querySelector(".model-badge")) return;
  const badge = document.createElement("span");
  badge.className = "model-badge";
  badge.textContent = "Help centre";
  badge.title = "Answered straight from the help centre, without a language model";
  const time = meta.querySelector("time");
  if (time) time.before(badge);
  else meta.append(badge);
}

function showStored(message, { quiet = false } = {}) {
  const { messageId, seq } = message;
  if (message.role === "system") {
    if (!seenBefore(messageId, seq)) systemLine(message);
    remember(messageId, seq);
    return;
  }
  const streaming = messageId && state.streams.get(messageId);
  if (streaming) state.streams.delete(messageId);
  if (seenBefore(messageId, seq)) {
    // Already on the page (history, resume or fan-out got there first): drop the duplicate.
    if (streaming) streaming.node.remove();
    return;
  }
  let article;
  if (streaming) {
    cancelAnimationFrame(streaming.frame);
    article = streaming.node;
    article.classList.remove("streaming");
    if (seq) article.dataset.seq = String(seq);
    setBody(article, message.content || "");
    place(article);
  } else {
    article = bubble(message);
  }
  if (message.role === "assistant") markOffline(article, message.metadata);
  if (message.status && message.status !== "complete") article.dataset.status = message.status;
  if (message.role === "user" && message.status === "forwarded") markForwarded(article, "");
  addExtras(article, {
    toolCalls: message.toolCalls,
    citations: message.metadata && message.metadata.citations,
  });
  if (message.role === "assistant" && messageId) addAnswerActions(article, messageId, pageContext);
  // Down to the last source link and the thumbs under the answer.
  follow.keep();
  remember(messageId, seq);
  if ((message.role === "assistant" || message.role === "staff") && !quiet) {
    announce(message.content, senderOf(message));
  }
}

// An answer held back because a person holds the conversation: no bubble, only the note on the
// question that it went to them.
function showHeld(data, requestId) {
  remember(data.messageId, data.seq);
  const metadata = data.metadata || {};
  const name = typeof metadata.agentName === "string" ? metadata.agentName : "";
  let article = null;
  if (requestId) {
    article = log.querySelector(`article.from-user[data-request-id="${CSS.escape(requestId)}"]`);
  }
  if (!article) {
    const users = log.querySelectorAll("article.from-user:not(.pending)");
    article = users.length ? users[users.length - 1] : null;
  }
  if (article) markForwarded(article, name.trim());
}

function announce(text, sender = "Assistant") {
  announcer.textContent = `${sender}: ` + String(text).slice(0, 500);
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
    // Back after a break: who is online may have changed meanwhile, with no frame to say so.
    if (state.connectedBefore) handoff.load().catch(() => {});
    state.connectedBefore = true;
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
    handoff.socketLost();
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
      typingText.textContent = typeof data.status === "string" && data.status
        ? data.status.charAt(0).toUpperCase() + data.status.slice(1)
        : `${brand.name} is typing…`;
      typing.hidden = false;
      break;
    case "typing":
      typingText.textContent = `${brand.name} is typing…`;
      typing.hidden = !data.isTyping;
      break;
    case "ai_token":
      typing.hidden = true;
      if (!data.messageId || seenBefore(data.messageId)) break;
      streamDelta(data.messageId, String(data.delta || ""));
      break;
    case "ai_response": {
      typing.hidden = true;
      if (data.metadata && data.metadata.heldByHuman && !data.content) {
        showHeld(data, frame.requestId || data.requestId);
        break;
      }
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
      if (handoff.owns(frame.requestId) && !SESSION_GONE.has(data.code)) {
        handoff.fail(frame.requestId, data);
        break;
      }
      showError(data, frame.requestId);
      break;
    case "system_notification":
      showNotice(String(data.message || ""), data.level);
      break;
    case "handoff_status":
      handoff.apply(data, { requestId: frame.requestId });
      break;
    default:
      break;
  }
}

// A streaming answer grows with every token, but is drawn at most once a frame: the whole text
// so far is rendered again (a table, a list or an open code fence changes shape as it grows).
function streamDelta(messageId, delta) {
  let stream = state.streams.get(messageId);
  if (!stream) {
    const node = bubble({ role: "assistant", content: "", messageId });
    node.classList.add("streaming");
    stream = { node, text: "", frame: 0 };
    state.streams.set(messageId, stream);
  }
  stream.text += delta;
  if (stream.frame) return;
  stream.frame = requestAnimationFrame(() => {
    stream.frame = 0;
    if (state.streams.get(messageId) !== stream) return; // finished or dropped meanwhile
    setBody(stream.node, stream.text, { streaming: true });
    follow.keep();
  });
}

function showNotice(text, level) {
  const note = document.createElement("p");
  note.className = "notice " + (level === "error" || level === "warning" ? level : "info");
  note.setAttribute("role", "alert");
  note.textContent = text;
  log.append(note);
  follow.keep();
}

const SESSION_GONE = new Set(["INVALID_SESSION", "SESSION_NOT_FOUND"]);

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
  if (SESSION_GONE.has(data.code)) {
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
  handoff.ended();
  if (!(notice.startsWith(ENDED) && endedLine())) showNotice(notice, "info");
}

function submitMessage(text) {
  const requestId = newRequestId();
  const article = bubble({ role: "user", content: text });
  article.classList.add("pending");
  article.dataset.requestId = requestId;
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
  state.connectedBefore = false;
  log.replaceChildren();
  announcer.textContent = "";
  input.disabled = false;
  sendButton.disabled = false;
  endButton.disabled = false;
  handoff.reset();
  connect();
  handoff.load().catch(() => {});
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** A wait as a person reads it ("about 14 minutes"), as the server words it. */
function waitInWords(seconds) {
  const whole = Math.max(1, Math.ceil(seconds));
  if (whole < 60) return whole === 1 ? "1 second" : `${whole} seconds`;
  const mins = Math.round(whole / 60);
  if (mins < 60) return mins <= 1 ? "about 1 minute" : `about ${mins} minutes`;
  const hours = Math.round(whole / 1800) / 2; // to the half hour
  return hours <= 1 ? "about 1 hour" : `about ${hours} hours`;
}

// Why "New conversation" was refused, with the real wait: the server's message says it in
// words ("try again in about 14 minutes"); Retry-After when the body is not the API's.
async function newConversationRefusal(response) {
  const failed = "Could not start a new conversation.";
  if (!response) return `${failed} The server did not answer; check your connection and try again.`;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const message = errorMessage(body, "");
  if (message) return `${failed} ${message}`;
  const wait = Number(response.headers.get("Retry-After"));
  if (wait > 0) return `${failed} Try again in ${waitInWords(wait)}.`;
  return `${failed} The server answered ${response.status}; try again later.`;
}

$("new-conversation").addEventListener("click", async () => {
  // A same-origin view, not POST /api/session: it also moves the HttpOnly cookie to the new
  // session, so a reload shows the new conversation rather than the old one.
  // In the widget's frame (another site's iframe: no cookie, no CSRF token) the widget's own
  // endpoint takes the session to end from the body instead (static/widget/frame.js).
  const url = document.body.dataset.newConversationUrl || "/conversation/new";
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify({ sessionId: state.sessionId }),
    });
  } catch {
    response = null;
  }
  if (!response || !response.ok) {
    showNotice(await newConversationRefusal(response), "error");
    return;
  }
  const body = await response.json();
  resetConversation(body.sessionId);
  input.focus();
});

// "End conversation" opens a confirmation (welcome.js); its "End conversation" button ends it.
$("end-confirm").addEventListener("click", async () => {
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
  .finally(() => {
    connect();
    // Availability is shown before anyone asks; handoff_status frames keep it current.
    handoff.load().catch(() => {});
  });
