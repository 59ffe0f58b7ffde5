// The chat page inside the widget's iframe (/widget/). It settles which session to talk in, then
// starts the page's own app.js unchanged (history, WebSocket, resume, reconnect).
//
// The host's loader passes #origin=<host origin>&session=<id> in the fragment (never sent to a
// server). The claimed origin is believed only when it is allowed (the CSP's frame-ancestors
// lists the same origins) and, where the browser tells, is the real parent; every message goes
// to that exact origin, and only messages from it and from the parent window are heard. Opened
// on its own (not framed) the page keeps its session in its own localStorage instead.

const SESSION_RE = /^sess_[A-Za-z0-9_-]{22,64}$/;
const OWN_KEY = "supportbot:widget-session";

const config = JSON.parse(document.getElementById("widget-config").textContent);
const params = new URLSearchParams(location.hash.slice(1));
// The id leaves the address at once: nothing later (a bookmark, a shared link) carries it.
history.replaceState(null, "", location.pathname + location.search);

const hostOrigin = trustedHost(params.get("origin") || "");
let sessionId = "";

function trustedHost(origin) {
  if (window.parent === window) return null;
  if (origin !== location.origin && !config.origins.includes(origin)) return null;
  const real = location.ancestorOrigins && location.ancestorOrigins[0];
  if (real && real !== origin) return null;
  return origin;
}

function tellHost(message) {
  if (hostOrigin) window.parent.postMessage({ source: "supportbot-frame", ...message }, hostOrigin);
}

function remembered() {
  if (hostOrigin) return params.get("session") || "";
  try {
    return localStorage.getItem(OWN_KEY) || "";
  } catch {
    return "";
  }
}

function adopt(id) {
  sessionId = id;
  document.body.dataset.sessionId = id;
  tellHost({ type: "session", sessionId: id });
  if (!hostOrigin) {
    try {
      localStorage.setItem(OWN_KEY, id);
    } catch {
      // Storage refused: the conversation lasts as long as the page.
    }
  }
}

async function call(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (answer && answer.error) || {};
    throw Object.assign(new Error(error.message || "The request failed."), {
      code: error.code || "INTERNAL_ERROR",
      details: error.details,
    });
  }
  return answer;
}

// Load this page again in another conversation: the page's own start-up then shows it.
function switchTo(id) {
  tellHost({ type: "reloading" });
  const next = new URLSearchParams({ origin: hostOrigin || "", session: id });
  history.replaceState(null, "", "#" + next.toString());
  location.reload();
}

function refused(error) {
  // The page cannot start (a session limit, the server away): say so in words, in the page.
  const note = document.createElement("p");
  note.className = "notice error";
  note.setAttribute("role", "alert");
  note.textContent = error.message || "The chat cannot start right now.";
  document.getElementById("log").append(note);
  for (const control of document.querySelectorAll("#composer textarea, #composer button")) {
    control.disabled = true;
  }
}

async function identify({ userId, timestamp, signature }) {
  const answer = await call("/api/widget/identify", { sessionId, userId, timestamp, signature });
  if (answer.sessionId !== sessionId) {
    // The session was another customer's: this one starts in a conversation of its own.
    tellHost({ type: "session", sessionId: answer.sessionId });
    setTimeout(() => switchTo(answer.sessionId), 0);
  }
  return { userId: answer.userId, sessionId: answer.sessionId };
}

async function newConversation() {
  const answer = await call("/api/widget/session/new", { sessionId: sessionId || null });
  tellHost({ type: "session", sessionId: answer.sessionId });
  setTimeout(() => switchTo(answer.sessionId), 0);
  return { sessionId: answer.sessionId };
}

const COMMANDS = { identify, newConversation };

window.addEventListener("message", async (event) => {
  if (!hostOrigin || event.origin !== hostOrigin || event.source !== window.parent) return;
  const message = event.data;
  if (!message || typeof message !== "object" || message.source !== "supportbot-host") return;
  if (message.type === "focus") {
    document.getElementById("message").focus();
    return;
  }
  const command = COMMANDS[message.type];
  if (!command) return;
  try {
    const data = await command(message.data || {});
    tellHost({ type: "result", id: message.id, ok: true, data });
  } catch (error) {
    const { code, details } = error;
    tellHost({ type: "result", id: message.id, ok: false, error: { code, message: error.message, details } });
  }
});

// Escape asks the host to close the panel, unless a dialog of the page takes it first.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (document.querySelector("dialog[open]")) return;
  tellHost({ type: "close" });
});

// A new conversation started from the page's own button names the new session here.
new MutationObserver(() => {
  const id = document.body.dataset.sessionId || "";
  if (id && id !== sessionId) {
    sessionId = id;
    adopt(id);
  }
}).observe(document.body, { attributes: true, attributeFilter: ["data-session-id"] });

async function start() {
  const close = document.getElementById("widget-close");
  if (hostOrigin) close.addEventListener("click", () => tellHost({ type: "close" }));
  else close.hidden = true;
  const stored = remembered();
  const path = params.get("restart") === "1" ? "/api/widget/session/new" : "/api/widget/session";
  let answer;
  try {
    answer = await call(path, { sessionId: SESSION_RE.test(stored) ? stored : null });
  } catch (error) {
    refused(error);
    tellHost({ type: "ready" });
    return;
  }
  adopt(answer.sessionId);
  await import(document.body.dataset.appSrc);
  tellHost({ type: "ready" });
}

start();
