// The staff inbox, live: inbox_item frames from /ws/staff add, update or remove rows; waiting
// customers stay first (longest wait at the top), then the conversations someone has; waiting
// times tick against the target; new items can ring and raise a browser notification. Rows are
// built like templates/ops/inbox.html builds them. Every value reaches the DOM through
// textContent.
const root = document.querySelector(".ops-inbox");
if (root) start(root);

function start(root) {
  const body = document.getElementById("inbox-items");
  const head = body.parentElement.querySelector("thead");
  const empty = document.getElementById("inbox-empty");
  const live = document.getElementById("inbox-live");
  const agentsLine = document.getElementById("inbox-agents");
  const sound = document.getElementById("inbox-sound");
  const notify = document.getElementById("inbox-notify");
  const view = root.dataset.view;
  const me = Number(root.dataset.me);
  const seeAll = root.dataset.seeAll === "1";
  const target = Number(root.dataset.waitTarget) || 300;
  const conversationUrl = root.dataset.conversationUrl;
  let attempt = 0;

  for (const [box, key] of [[sound, "inbox.sound"], [notify, "inbox.notify"]]) {
    box.checked = localStorage.getItem(key) === "1";
    box.addEventListener("change", () => {
      localStorage.setItem(key, box.checked ? "1" : "0");
      if (box === notify && box.checked && "Notification" in window) {
        Notification.requestPermission();
      }
    });
  }

  function visible(item) {
    if (item.status === "resolved") return false;
    const assignee = item.assignee ? item.assignee.id : null;
    if (view === "mine") return assignee === me;
    if (view === "unassigned") return assignee === null;
    return seeAll || assignee === null || assignee === me;
  }

  function cell(className, text) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    return td;
  }

  function clip(text, length) {
    const value = String(text || "");
    return value.length > length ? value.slice(0, length - 1) + "…" : value;
  }

  function title(status) {
    return String(status).replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  }

  // Waiting customers first, longest wait at the top; then the taken ones, oldest first.
  function rank(row) {
    return [row.dataset.status === "waiting" ? 0 : 1, Number(row.dataset.requestedAt) || 0];
  }

  function before(a, b) {
    const [ra, ta] = rank(a);
    const [rb, tb] = rank(b);
    return ra !== rb ? ra < rb : ta < tb;
  }

  function place(row) {
    const next = Array.from(body.rows).find((other) => other !== row && before(row, other));
    body.insertBefore(row, next || null);
  }

  function render(item) {
    const row = document.createElement("tr");
    row.className = `inbox-item status-${item.status} priority-${item.priority}`;
    row.dataset.handoffId = item.handoffId;
    row.dataset.requestedAt = String(item.requestedAt || "");
    row.dataset.takenAt = String(item.takenAt || "");
    row.dataset.status = item.status;
    row.dataset.assignee = item.assignee ? String(item.assignee.id) : "";
    const status = cell("inbox-status", "");
    const badge = document.createElement("span");
    badge.className = "status-badge";
    badge.textContent = title(item.status);
    status.append(badge);
    const message = cell("inbox-message", "");
    const link = document.createElement("a");
    link.href = conversationUrl.replace("SESSION", encodeURIComponent(item.sessionId));
    link.textContent = clip(item.firstMessage || "(no message yet)", 160);
    message.append(link);
    if (item.lastCustomerMessage && item.lastCustomerMessage !== item.firstMessage) {
      const latest = document.createElement("div");
      latest.className = "inbox-latest";
      latest.textContent = "Latest: " + clip(item.lastCustomerMessage, 160);
      message.append(latest);
    }
    row.append(
      cell("inbox-wait", ""),
      status,
      cell("inbox-priority", title(item.priority)),
      message,
      cell("inbox-topic", item.topic || ""),
      cell("inbox-reason", item.reasonText || ""),
      cell("inbox-assignee", assigneeName(item)),
      cell("inbox-ticket", item.ticketId || ""),
    );
    tick(row);
    return row;
  }

  function assigneeName(item) {
    if (!item.assignee) return "";
    return item.assignee.id === me ? `${item.assignee.name} (you)` : item.assignee.name;
  }

  // Waiting: since the request until someone takes it; coloured against the target.
  function tick(row) {
    const since = Number(row.dataset.requestedAt);
    const taken = Number(row.dataset.takenAt);
    const end = taken || Date.now();
    const seconds = Math.max(0, Math.round((end - since) / 1000));
    const minutes = Math.floor(seconds / 60);
    const label = minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : minutes ? `${minutes} min` : `${seconds} s`;
    const wait = row.querySelector(".inbox-wait");
    wait.textContent = taken ? `waited ${label}` : label;
    wait.dataset.level = taken ? "taken" : seconds > target ? "late" : seconds > target / 2 ? "soon" : "ok";
  }

  function upsert(item) {
    const existing = body.querySelector(`tr[data-handoff-id="${CSS.escape(item.handoffId)}"]`);
    if (!visible(item)) {
      if (existing) {
        existing.remove();
        const who = item.assignee ? item.assignee.name : "";
        live.textContent = item.status === "resolved" ? "An item was resolved." : `${who} took an item.`;
      }
    } else {
      const row = render(item);
      if (existing) existing.remove();
      place(row);
      if (!existing && item.status === "waiting") alert(item);
    }
    showEmpty();
  }

  function showEmpty() {
    empty.hidden = body.rows.length > 0;
    head.hidden = body.rows.length === 0;
  }

  function alert(item) {
    live.textContent = "New: " + clip(item.firstMessage || item.reasonText, 80);
    if (sound.checked) beep();
    if (notify.checked && "Notification" in window && Notification.permission === "granted" && document.hidden) {
      new Notification("A customer is waiting", { body: clip(item.firstMessage || item.reasonText, 120) });
    }
  }

  function beep() {
    try {
      const audio = new AudioContext();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.1;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.2);
    } catch {
      // No audio (autoplay blocked until the page is used): the notice line still says it.
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/staff`);
    let pinger = null;
    socket.addEventListener("open", () => {
      attempt = 0;
      live.textContent = "Live: new requests appear without reloading.";
      pinger = setInterval(() => socket.send(JSON.stringify({ type: "ping", timestamp: Date.now() })), 20000);
      refresh();
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      const data = frame.data || {};
      if (frame.type === "inbox_item") upsert(data);
      else if (frame.type === "presence") {
        const names = (data.agents || []).map((a) => a.name).filter(Boolean);
        agentsLine.textContent = names.length ? names.join(", ") : "none";
      } else if (frame.type === "error") {
        live.textContent = String(data.message || "The inbox socket was refused.");
      }
    });
    socket.addEventListener("close", (event) => {
      clearInterval(pinger);
      if (event.code === 4003) return;
      const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      live.textContent = `Disconnected; retrying in ${Math.ceil(delay / 1000)} s.`;
      setTimeout(connect, delay);
    });
  }

  // After (re)connecting: what changed while the socket was away.
  async function refresh() {
    try {
      const response = await fetch(`/api/staff/inbox?view=${encodeURIComponent(view)}`, {
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return;
      const data = await response.json();
      const ids = new Set(data.items.map((item) => item.handoffId));
      for (const row of Array.from(body.rows)) {
        if (!ids.has(row.dataset.handoffId)) row.remove();
      }
      for (const item of data.items) upsert(item);
    } catch {
      // The socket's frames keep the list current; the next reconnect tries again.
    }
  }

  for (const row of Array.from(body.rows)) {
    tick(row);
    place(row);
  }
  showEmpty();
  setInterval(() => {
    for (const row of body.rows) tick(row);
  }, 15000);
  connect();
}
