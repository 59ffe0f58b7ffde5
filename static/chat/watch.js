// Staff watching a conversation in the admin: the transcript table follows it live over the
// session's WebSocket in watch mode (new messages, the user's typing, notices). Every value
// reaches the DOM through textContent.
const live = document.querySelector(".transcript-live[data-session-id]");
const table = document.querySelector("table.transcript tbody");
if (live && table) follow(live, table);

function follow(live, table) {
  const sessionId = live.dataset.sessionId;
  let lastSeq = 0;
  for (const row of table.querySelectorAll("tr[data-seq]")) {
    lastSeq = Math.max(lastSeq, Number(row.dataset.seq) || 0);
  }
  let attempt = 0;
  let typingTimer = null;
  let stopped = false;

  function status(text) {
    live.textContent = text;
  }

  function cell(text, pre) {
    const td = document.createElement("td");
    if (pre) {
      const block = document.createElement("pre");
      block.textContent = text;
      td.append(block);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function addRow(message) {
    const seq = Number(message.seq) || 0;
    if (!seq || table.querySelector(`tr[data-seq="${seq}"]`)) return;
    const row = document.createElement("tr");
    row.className = "transcript-" + String(message.role || "");
    row.dataset.seq = String(seq);
    const meta = message.metadata || {};
    row.append(
      cell(String(seq)),
      cell(String(message.role || "")),
      cell(new Date(message.timestamp || Date.now()).toLocaleString()),
      cell(String(message.content || ""), true),
      cell(meta.tokensUsed ? String(meta.tokensUsed) : ""),
      cell(""),
      cell(String(meta.aiModel || "")),
      cell(String(message.status || "")),
    );
    // Rows stay in seq order even if a resume and a live message cross.
    const after = Array.from(table.querySelectorAll("tr[data-seq]")).find(
      (r) => Number(r.dataset.seq) > seq,
    );
    table.insertBefore(row, after || null);
    lastSeq = Math.max(lastSeq, seq);
    const empty = document.querySelector(".transcript-empty");
    if (empty) empty.remove();
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
      if (frame.type === "message") addRow(data);
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
