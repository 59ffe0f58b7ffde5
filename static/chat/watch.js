// Staff watching a conversation in the admin: the transcript table follows it live over the
// session's WebSocket in watch mode (new messages, the user's typing, notices). A new message's
// row is not built here: the page fetches the server's rows after its last seq (data-rows-url,
// ops/transcript_views.py), so a live row is rendered and sanitised by the same code as the
// page's own rows (Markdown, sources, tool calls). Notices reach the DOM through textContent.
const live = document.querySelector(".transcript-live[data-session-id]");
const table = document.querySelector("table.transcript tbody");
if (live && table) follow(live, table);

function follow(live, table) {
  const sessionId = live.dataset.sessionId;
  const rowsUrl = live.dataset.rowsUrl || "";
  let lastSeq = 0;
  for (const row of ownRows(table)) {
    lastSeq = Math.max(lastSeq, Number(row.dataset.seq) || 0);
  }
  let attempt = 0;
  let typingTimer = null;
  let stopped = false;
  // One fetch at a time; a message arriving meanwhile asks for one more after it.
  let fetching = false;
  let again = false;

  function status(text) {
    live.textContent = text;
  }

  // The table's own rows (a message's Markdown table has rows too, without data-seq).
  function ownRows(parent) {
    return Array.from(parent.children).filter((el) => el.tagName === "TR" && el.dataset.seq);
  }

  function insertRow(row) {
    const seq = Number(row.dataset.seq) || 0;
    const rows = ownRows(table);
    if (!seq || rows.some((r) => Number(r.dataset.seq) === seq)) return;
    // Rows stay in seq order even if a resume and a live message cross.
    const after = rows.find((r) => Number(r.dataset.seq) > seq);
    table.insertBefore(row, after || null);
    lastSeq = Math.max(lastSeq, seq);
    const empty = document.querySelector(".transcript-empty");
    if (empty) empty.remove();
  }

  async function fetchRows() {
    const response = await fetch(`${rowsUrl}?after=${encodeURIComponent(lastSeq)}`, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    // The server's rows are escaped and sanitised HTML; a <template> parses <tr> in table context
    // without running or loading anything.
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    for (const row of ownRows(template.content)) insertRow(document.importNode(row, true));
    return response.headers.get("X-More-Rows") === "1";
  }

  async function pull() {
    if (!rowsUrl) return;
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      do {
        again = false;
        if (await fetchRows()) again = true;
      } while (again);
    } catch (error) {
      status(`Live: could not load new messages (${error.message}); they appear on reload.`);
    } finally {
      fetching = false;
    }
  }

  function connect() {
    if (stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(
      `${scheme}//${location.host}/ws?sessionId=${encodeURIComponent(sessionId)}&watch=1`,
    );
    status("Connecting to the live conversation…");
    socket.addEventListener("open", () => {
      attempt = 0;
      status("Live: new messages appear here.");
      socket.send(JSON.stringify({ type: "resume", data: { lastSeq }, timestamp: Date.now() }));
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      const data = frame.data || {};
      if (frame.type === "message") {
        if (!(Number(data.seq) <= lastSeq)) pull();
      } else if (frame.type === "resume_complete") pull();
      else if (frame.type === "typing") {
        clearTimeout(typingTimer);
        status(data.isTyping ? "Live: the user is typing…" : "Live: new messages appear here.");
        if (data.isTyping) typingTimer = setTimeout(() => status("Live: new messages appear here."), 10000);
      } else if (frame.type === "system_notification") status("Live: " + String(data.message || ""));
      else if (frame.type === "error" && (data.code === "INVALID_SESSION" || data.code === "ACCESS_DENIED")) {
        stopped = true;
        status(String(data.message || "The conversation is closed."));
      }
    });
    socket.addEventListener("close", () => {
      if (stopped) return;
      const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      status(`Disconnected; retrying in ${Math.ceil(delay / 1000)} s.`);
      setTimeout(connect, delay);
    });
  }

  connect();
}
