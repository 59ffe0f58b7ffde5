// supportbot's chat widget loader. A host site adds one line:
//   <script src="https://support.example/widget.js" data-supportbot async></script>
// and gets a launcher that opens the chat in an iframe served by supportbot (/widget/).
//
// Served at /widget.js with the server's settings in place of CONFIG's marker. It draws into a
// shadow root of its own element (the host's CSS cannot reach in, ours cannot leak out),
// defines one global, window.Supportbot, and does nothing when loaded a second time. The
// conversation's session id is kept in the host's localStorage under a key naming supportbot's
// origin and handed to the frame in the URL fragment (never sent to a server); the frame and
// this script talk only by postMessage with exact origins (chat/widget_sessions.py says why).
(function () {
  "use strict";

  const CONFIG = /*SUPPORTBOT_CONFIG*/ null;
  const VERSION = "1";
  const previous = window.Supportbot;
  if (previous && previous.version) return; // loaded already: the first copy stays in charge

  const script =
    document.currentScript || document.querySelector("script[data-supportbot][src]");
  if (!script || !script.src) return;
  const ORIGIN = new URL(script.src, location.href).origin;
  const config = CONFIG || { origins: [], frame: "/widget/", brand: {} };
  const brand = config.brand || {};
  const NAME = String(brand.name || "Support");
  const STORE_KEY = "supportbot:" + ORIGIN;
  const allowed = location.origin === ORIGIN || (config.origins || []).includes(location.origin);

  // --- the namespace ------------------------------------------------------------------------

  const listeners = new Map(); // event name -> Set of functions
  // Declared before anything can return: the API's functions read them on every page.
  let host, launcher, panel, iframe;
  let frameReady = false;
  const outbox = []; // messages for the frame, sent once it says it is ready
  const waiting = new Map(); // request id -> {resolve, reject}
  let nextId = 1;

  const api = {
    version: VERSION,
    available: allowed,
    open: () => open({ focus: true }),
    close: () => close(),
    toggle: () => (isOpen() ? close() : open({ focus: true })),
    isOpen: () => isOpen(),
    newConversation: () => newConversation(),
    identify: (identity) => identify(identity),
    on(name, fn) {
      if (typeof fn !== "function") throw new TypeError("Supportbot.on needs a function");
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name).add(fn);
      return () => api.off(name, fn);
    },
    off(name, fn) {
      const set = listeners.get(name);
      if (set) set.delete(fn);
    },
  };
  window.Supportbot = Object.freeze(api);

  function emit(name, detail) {
    for (const fn of listeners.get(name) || []) {
      try {
        fn(detail);
      } catch (error) {
        console.error("Supportbot listener failed:", error);
      }
    }
  }

  if (!allowed) {
    // The frame would be refused by its frame-ancestors anyway: offer nothing rather than a
    // launcher that opens a blocked frame. open/close do nothing; the promises reject.
    console.warn(
      `Supportbot: ${location.origin} is not among the sites allowed to embed the chat ` +
        `(SUPPORTBOT_WIDGET_ORIGINS on ${ORIGIN}); no launcher is shown.`,
    );
    return;
  }

  // --- what is remembered on the host (localStorage, or memory where it is refused) ----------

  let memory = {};
  function readStore() {
    try {
      const value = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
      return value && typeof value === "object" ? value : {};
    } catch {
      return { ...memory };
    }
  }
  function writeStore(patch) {
    memory = { ...readStore(), ...patch };
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(memory));
    } catch {
      // Storage refused (private mode, quota): the conversation lasts as long as the page.
    }
  }

  // --- the launcher and the panel -------------------------------------------------------------

  const STYLES = `
    :host { all: initial; }
    .launcher {
      position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
      width: 56px; height: 56px; padding: 0; border: 0; border-radius: 50%;
      display: grid; place-items: center; cursor: pointer; overflow: hidden;
      background: var(--sb-brand); color: var(--sb-on-brand);
      box-shadow: 0 4px 14px rgba(0, 0, 0, 0.28);
    }
    .launcher:hover { filter: brightness(1.08); }
    .launcher:focus-visible {
      outline: 3px solid var(--sb-brand); outline-offset: 3px;
      box-shadow: 0 0 0 3px #fff, 0 4px 14px rgba(0, 0, 0, 0.28);
    }
    .launcher svg { width: 28px; height: 28px; fill: currentColor; }
    .launcher img { width: 100%; height: 100%; object-fit: cover; }
    .launcher .close-icon, :host([data-open]) .launcher .open-icon { display: none; }
    :host([data-open]) .launcher .close-icon { display: block; }
    .panel {
      position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
      width: min(400px, calc(100vw - 40px)); height: min(640px, calc(100vh - 108px));
      border-radius: 14px; overflow: hidden; background: Canvas;
      box-shadow: 0 12px 40px rgba(0, 0, 0, 0.3);
    }
    .panel[hidden] { display: none; }
    .panel iframe { display: block; width: 100%; height: 100%; border: 0; }
    @media (max-width: 480px) {
      .launcher { right: 12px; bottom: 12px; width: 52px; height: 52px; }
      .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; }
      :host([data-open]) .launcher { display: none; }
    }
    @media (prefers-reduced-motion: no-preference) {
      .panel { animation: sb-rise 0.16s ease-out; }
      @keyframes sb-rise { from { opacity: 0; transform: translateY(12px); } }
    }
  `;

  const SVG = "http://www.w3.org/2000/svg";
  function icon(className, path) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", className);
    const shape = document.createElementNS(SVG, "path");
    shape.setAttribute("d", path);
    svg.append(shape);
    return svg;
  }
  const BUBBLE =
    "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6v2h2V9H7zm4 0v2h2V9h-2zm4 0v2h2V9h-2z";
  const CROSS =
    "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4L12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z";

  function build() {
    host = document.createElement("supportbot-widget");
    // The host element is outside our shadow root: host rules like "div { display: none }"
    // cannot name it, and these inline declarations beat the rest.
    host.style.setProperty("all", "initial", "important");
    const colour = supportsColour(String(brand.color || "")) ? String(brand.color) : "#2563eb";
    host.style.setProperty("--sb-brand", colour);
    host.style.setProperty("--sb-on-brand", String(brand.color_fg || "#ffffff"));
    const root = host.attachShadow({ mode: "open" });
    // A constructed sheet, not a <style> element: a host page whose CSP forbids inline styles
    // still shows the widget as drawn.
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLES);
    root.adoptedStyleSheets = [sheet];

    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "supportbot-panel");
    if (brand.avatar) {
      const image = document.createElement("img");
      image.className = "open-icon";
      image.alt = "";
      image.src = new URL(String(brand.avatar), ORIGIN + "/").href;
      launcher.append(image);
    } else {
      launcher.append(icon("open-icon", BUBBLE));
    }
    launcher.append(icon("close-icon", CROSS));
    launcher.addEventListener("click", () => (isOpen() ? close() : open({ focus: true })));

    panel = document.createElement("div");
    panel.className = "panel";
    panel.id = "supportbot-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", `Chat with ${NAME}`);
    root.append(panel, launcher);
    labelLauncher();
    document.body.append(host);
  }

  function supportsColour(colour) {
    return Boolean(colour) && Boolean(window.CSS) && CSS.supports("color", colour);
  }

  function labelLauncher() {
    const label = isOpen() ? `Close chat with ${NAME}` : `Open chat with ${NAME}`;
    launcher.setAttribute("aria-label", label);
    launcher.title = label;
  }

  function ensureFrame() {
    if (iframe) return;
    const stored = readStore();
    const params = new URLSearchParams({ origin: location.origin });
    if (typeof stored.session === "string") params.set("session", stored.session);
    if (stored.restart) params.set("restart", "1");
    iframe = document.createElement("iframe");
    iframe.title = `Chat with ${NAME}`;
    iframe.allow = "clipboard-write";
    iframe.src = ORIGIN + (config.frame || "/widget/") + "#" + params.toString();
    panel.append(iframe);
  }

  function isOpen() {
    return Boolean(panel && !panel.hidden);
  }

  function open({ focus = true } = {}) {
    if (!panel) return;
    ensureFrame();
    const wasOpen = isOpen();
    panel.hidden = false;
    host.setAttribute("data-open", "");
    launcher.setAttribute("aria-expanded", "true");
    labelLauncher();
    writeStore({ open: true });
    if (focus) {
      iframe.focus();
      post({ type: "focus" });
    }
    if (!wasOpen) emit("open");
  }

  function close() {
    if (!isOpen()) return;
    const focusInside = document.activeElement === host;
    panel.hidden = true;
    host.removeAttribute("data-open");
    launcher.setAttribute("aria-expanded", "false");
    labelLauncher();
    writeStore({ open: false });
    if (focusInside) launcher.focus();
    emit("close");
  }

  // --- talking to the frame -------------------------------------------------------------------

  function post(message) {
    if (frameReady && iframe && iframe.contentWindow) {
      iframe.contentWindow.postMessage({ source: "supportbot-host", ...message }, ORIGIN);
    } else {
      outbox.push(message);
    }
  }

  function request(type, data) {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      post({ type, id, data });
    });
  }

  function fromFrame(event) {
    if (!iframe || event.origin !== ORIGIN || event.source !== iframe.contentWindow) return;
    const data = event.data;
    if (!data || typeof data !== "object" || data.source !== "supportbot-frame") return;
    switch (data.type) {
      case "ready":
        frameReady = true;
        for (const message of outbox.splice(0)) post(message);
        emit("ready");
        break;
      case "session":
        if (typeof data.sessionId === "string") {
          const changed = readStore().session !== data.sessionId;
          writeStore({ session: data.sessionId, restart: false });
          if (changed) emit("session", { sessionId: data.sessionId });
        }
        break;
      case "reloading":
        frameReady = false; // the frame switches conversation: queue until it is back
        break;
      case "close":
        close();
        break;
      case "result":
        settle(data);
        break;
    }
  }

  function settle({ id, ok, data, error }) {
    const pending = waiting.get(id);
    if (!pending) return;
    waiting.delete(id);
    if (ok) {
      pending.resolve(data);
    } else {
      const failure = new Error((error && error.message) || "The request failed.");
      failure.code = (error && error.code) || "INTERNAL_ERROR";
      failure.details = error && error.details;
      emit("error", { code: failure.code, message: failure.message });
      pending.reject(failure);
    }
  }

  function unavailable() {
    const error = new Error(`The chat cannot be embedded on ${location.origin}.`);
    error.code = "ACCESS_DENIED";
    return Promise.reject(error);
  }

  function identify(identity) {
    if (!panel) return unavailable();
    const { userId, signature, timestamp } = identity || {};
    if (typeof userId !== "string" || typeof signature !== "string" || !Number.isInteger(timestamp)) {
      return Promise.reject(
        new TypeError("Supportbot.identify needs {userId: string, timestamp: integer, signature: string}"),
      );
    }
    // Sent when the chat first opens (at once when it is open): no session is started for a
    // visitor who never opens it.
    return request("identify", { userId, signature, timestamp }).then((result) => {
      emit("identify", result);
      return result;
    });
  }

  function newConversation() {
    if (!panel) return unavailable();
    if (!iframe) {
      // No frame yet: the next one starts afresh (and ends the remembered session).
      writeStore({ restart: true });
      return Promise.resolve({ sessionId: null });
    }
    return request("newConversation", {});
  }

  // --- start ------------------------------------------------------------------------------------

  function start() {
    build();
    window.addEventListener("message", fromFrame);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && isOpen() && document.activeElement === host) close();
    });
    if (readStore().open) open({ focus: false }); // it was open before this page load
    // Calls made before the script arrived: window.Supportbot = [["open"], ["identify", {...}]].
    if (Array.isArray(previous)) {
      for (const [name, ...args] of previous) {
        if (typeof api[name] === "function") api[name](...args);
      }
    }
    document.dispatchEvent(new CustomEvent("supportbot:ready"));
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
})();
