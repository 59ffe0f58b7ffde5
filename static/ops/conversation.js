// A conversation page for an agent: hand-off actions through /api/staff/, the reply composer with
// the drafted reply, internal notes, and the live state. The state comes from the staff socket's
// inbox_item frames (/ws/staff, which also counts the agent as online while the page is open)
// and, as a fallback, from the session's watcher socket (handoff_status, reply_draft,
// staff_note). The transcript itself is static/chat/watch.js's. The panel words the state as
// templates/ops/conversation.html does. Every value reaches the DOM through textContent.
const OPEN = ["waiting", "assigned", "with_agent"];
const BADGES = { waiting: "Waiting", assigned: "Assigned", with_agent: "With agent", resolved: "Resolved" };

const root = document.querySelector(".ops-conversation");
if (root) start(root);

function start(root) {
  const sessionId = root.dataset.sessionId;
  const me = Number(root.dataset.me);
  const supervisor = root.dataset.supervisor === "1";
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const badge = document.getElementById("handoff-badge");
  const stateLine = document.getElementById("handoff-state");
  const detailLine = document.getElementById("handoff-detail");
  const summary = document.getElementById("handoff-summary");
  const summaryText = document.getElementById("handoff-summary-text");
  const errorLine = document.getElementById("action-error");
  const replyForm = document.getElementById("reply-form");
  const replyText = document.getElementById("reply-text");
  const replySend = document.getElementById("reply-send");
  const replyHint = document.getElementById("reply-hint");
  const draftBox = document.getElementById("draft");
  const draftText = document.getElementById("draft-text");
  const draftModel = document.getElementById("draft-model");
  const notes = document.getElementById("notes");
  const assignTo = document.getElementById("assign-to");
  let draftId = draftBox && draftBox.dataset.draftId ? Number(draftBox.dataset.draftId) : null;
  let insertedDraft = null; // the draft the composer started from, sent with the reply

  // What the page knows of the hand-off; the assignee's id is null when only their name is known
  // (a handoff_status frame, or a refusal naming who holds the conversation).
  const state = {
    handoffId: root.dataset.handoffId || "",
    status: root.dataset.status || "none",
    assigneeId: root.dataset.assignee ? Number(root.dataset.assignee) : null,
    assigneeName: root.dataset.assigneeName || "",
    reasonText: root.dataset.reasonText || "",
    priority: root.dataset.priority || "",
    ticketId: root.dataset.ticketId || "",
  };

  async function call(path, body) {
    errorLine.hidden = true;
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body || {}),
      });
    } catch {
      showError("The server could not be reached; nothing was changed.");
      return null;
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = data.error || {};
      showError(error.message || `Refused (${response.status}).`);
      learnFrom(error.details || {});
      return null;
    }
    return data;
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = false;
  }

  // A refusal says how things stand (someone else holds it, it is resolved): show that.
  function learnFrom(details) {
    if (typeof details.status !== "string" || !OPEN.concat("resolved").includes(details.status)) return;
    state.status = details.status;
    if (typeof details.heldBy === "string" && details.heldBy !== state.assigneeName) {
      state.assigneeName = details.heldBy;
      state.assigneeId = null;
    }
    render();
  }

  const mine = () => state.assigneeId === me;
  const holding = () => state.status === "with_agent" && mine();
  const isOpen = () => OPEN.includes(state.status);
  const someoneElse = () => Boolean(state.assigneeName) && !mine();

  function who() {
    return mine() ? "you" : state.assigneeName || "a colleague";
  }

  function stateText() {
    switch (state.status) {
      case "waiting":
        return "The customer is waiting for a person.";
      case "assigned":
        return `Assigned to ${who()}; the assistant answers until ${mine() ? "you take" : "they take"} over.`;
      case "with_agent":
        return `${mine() ? "You are" : `${state.assigneeName || "A colleague"} is`} answering; the assistant is paused.`;
      case "resolved":
        return "The assistant is answering again.";
      default:
        return "Nobody asked for a person; the assistant is answering.";
    }
  }

  // Why the reply box is switched off, or "" when this agent may reply.
  function replyBlocked() {
    if (holding()) return "";
    if (!isOpen()) return "Pick this conversation up to reply; the assistant stops answering.";
    if (state.status === "with_agent") return `${state.assigneeName || "A colleague"} is answering; only they can reply.`;
    if (someoneElse() && !supervisor) return `Assigned to ${state.assigneeName}; only they can take it over.`;
    return "Take the conversation over to reply; the assistant stops answering.";
  }

  function render() {
    const open = isOpen();
    badge.hidden = state.status === "none";
    badge.dataset.status = state.status;
    badge.textContent = BADGES[state.status] || state.status;
    stateLine.textContent = stateText();
    const detail = [state.reasonText, state.priority && `priority ${state.priority}`, state.ticketId && `ticket ${state.ticketId}`];
    detailLine.textContent = detail.filter(Boolean).join(" · ");
    detailLine.hidden = state.status === "none" || !detailLine.textContent;
    // What the server would accept from this agent (chat/takeover.py): only the holder (or a
    // supervisor) hands back or resolves; nobody takes a conversation a colleague holds.
    const show = {
      take: open && !holding() && (!someoneElse() || (supervisor && state.status !== "with_agent")),
      pickup: !open,
      release: state.status === "with_agent" && (mine() || supervisor),
      resolve: open && (!someoneElse() || supervisor),
      assign: open,
    };
    for (const button of root.querySelectorAll("[data-action]")) {
      button.hidden = !show[button.dataset.action];
    }
    if (assignTo) assignTo.closest(".handoff-assign").hidden = !open;
    if (replyForm) {
      const blocked = replyBlocked();
      replyText.disabled = Boolean(blocked);
      replySend.disabled = Boolean(blocked);
      if (blocked || replyHint.dataset.kind === "blocked") {
        replyHint.textContent = blocked;
        replyHint.dataset.kind = blocked ? "blocked" : "";
      }
    }
    showDraftBox();
  }

  function applyItem(item) {
    if (!item || item.sessionId !== sessionId) return;
    // A colleague's stale frame about an older hand-off of this conversation changes nothing.
    if (state.handoffId && handoffNumber(item.handoffId) < handoffNumber(state.handoffId)) return;
    state.handoffId = item.handoffId || "";
    state.status = item.status;
    state.assigneeId = item.assignee ? Number(item.assignee.id) : null;
    state.assigneeName = item.assignee ? String(item.assignee.name || "") : "";
    state.reasonText = item.reasonText || "";
    state.priority = item.priority || "";
    state.ticketId = item.ticketId || "";
    if (summary && typeof item.summary === "string") {
      summaryText.textContent = item.summary;
      summary.hidden = !item.summary;
    }
    render();
  }

  function handoffNumber(id) {
    return Number(String(id || "").replace(/^hof_/, "")) || 0;
  }

  // The customer's view of the state (watcher socket): status and the agent's name, no id.
  function applyStatus(status) {
    if (status.status === "none") return;
    state.handoffId = status.handoffId || state.handoffId;
    state.status = status.status;
    const name = status.agent ? String(status.agent.name || "") : "";
    if (name !== state.assigneeName) {
      state.assigneeName = name;
      state.assigneeId = null; // until the staff socket's item says who it is
    }
    if (status.ticketId) state.ticketId = status.ticketId;
    render();
  }

  async function act(action) {
    let data = null;
    if (action === "pickup") data = await call(`/api/staff/sessions/${encodeURIComponent(sessionId)}/pickup`);
    else if (action === "assign") data = await call(`/api/staff/handoffs/${state.handoffId}/assign`, { agentId: Number(assignTo.value) });
    else data = await call(`/api/staff/handoffs/${state.handoffId}/${action}`);
    if (!data) return;
    applyItem(data);
    if (holding() && (action === "take" || action === "pickup")) replyText.focus();
  }

  for (const button of root.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }

  if (replyForm) {
    replyForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = replyText.value.trim();
      if (!text || replyText.disabled) return;
      const body = { text };
      if (insertedDraft !== null) body.draftId = insertedDraft;
      replySend.disabled = true;
      const sent = await call(`/api/staff/handoffs/${state.handoffId}/reply`, body);
      replySend.disabled = Boolean(replyBlocked());
      if (!sent) return; // kept in the box: nothing is lost
      replyText.value = "";
      if (insertedDraft !== null && insertedDraft === draftId) draftId = null;
      insertedDraft = null;
      noDraft = false;
      replyHint.dataset.kind = "";
      replyHint.textContent = "Sent.";
      showDraftBox();
    });
    // Ctrl+Enter (or Cmd+Enter) sends; Enter alone is a new line.
    replyText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        replyForm.requestSubmit();
      }
    });
    replyText.addEventListener("input", () => {
      if (replyHint.dataset.kind !== "blocked") replyHint.textContent = "";
    });
  }

  // A pending draft shows to the agent holding the conversation only: nobody else may send it.
  const draftNone = document.getElementById("draft-none");
  let noDraft = false; // the latest customer message got no draft

  function showDraftBox() {
    if (draftBox) draftBox.hidden = !(holding() && draftId !== null);
    if (draftNone) draftNone.hidden = !(holding() && draftId === null && noDraft);
  }

  function showDraft(draft) {
    if (!draftBox) return;
    if (draft.outcome === "failed") {
      noDraft = true;
      showDraftBox();
      return;
    }
    if (draft.outcome !== "pending" || !draft.content) return;
    noDraft = false;
    draftId = draft.draftId;
    draftText.textContent = draft.content;
    draftModel.textContent = draft.model || "the assistant";
    showDraftBox();
  }

  if (draftBox) {
    document.getElementById("draft-insert").addEventListener("click", () => {
      replyText.value = draftText.textContent;
      insertedDraft = draftId;
      replyText.focus();
    });
    document.getElementById("draft-discard").addEventListener("click", async () => {
      if (draftId === null) return;
      if (!(await call(`/api/staff/drafts/${draftId}/discard`))) return;
      if (insertedDraft === draftId) insertedDraft = null;
      draftId = null;
      showDraftBox();
      replyText.focus();
    });
  }

  document.getElementById("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = document.getElementById("note-text");
    const text = box.value.trim();
    if (!text) return;
    const note = await call(`/api/staff/sessions/${encodeURIComponent(sessionId)}/notes`, { text });
    if (!note) return;
    box.value = "";
    addNote(note);
  });

  function addNote(note) {
    if (notes.querySelector(`[data-note-id="${note.noteId}"]`)) return;
    const p = document.createElement("p");
    p.className = "note";
    p.dataset.noteId = String(note.noteId);
    const who = document.createElement("strong");
    who.textContent = note.author;
    const when = document.createElement("time");
    when.textContent = " " + new Date(note.createdAt).toLocaleString();
    p.append(who, " ", when, document.createElement("br"), note.text);
    notes.append(p);
  }

  async function loadAgents() {
    if (!assignTo) return;
    const response = await fetch("/api/staff/agents", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    for (const agent of (await response.json()).agents) {
      const option = document.createElement("option");
      option.value = String(agent.id);
      option.textContent = agent.name + (agent.online ? " (online)" : "");
      assignTo.append(option);
    }
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch {
      return null;
    }
  }

  function reconnect(open, attempt) {
    const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => open(attempt + 1), delay);
  }

  // The session's watcher socket: the customer-side state, drafts and notes.
  function listen(attempt = 0) {
    if (root.dataset.live !== "1") return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws?sessionId=${encodeURIComponent(sessionId)}&watch=1`);
    socket.addEventListener("open", () => {
      attempt = 0;
    });
    socket.addEventListener("message", (event) => {
      const frame = parse(event);
      if (!frame) return;
      const data = frame.data || {};
      if (frame.type === "handoff_status") applyStatus(data);
      else if (frame.type === "reply_draft") showDraft(data);
      else if (frame.type === "staff_note") addNote(data);
    });
    socket.addEventListener("close", (event) => {
      if (event.code !== 4004 && event.code !== 4003) reconnect(listen, attempt);
    });
  }

  // The staff socket: this conversation's inbox item as it changes (with the assignee's id), and
  // the agent counted as online while the page is open.
  function follow(attempt = 0) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/staff`);
    let pinger = null;
    socket.addEventListener("open", () => {
      attempt = 0;
      pinger = setInterval(() => socket.send(JSON.stringify({ type: "ping", timestamp: Date.now() })), 20000);
    });
    socket.addEventListener("message", (event) => {
      const frame = parse(event);
      if (frame && frame.type === "inbox_item") applyItem(frame.data || {});
    });
    socket.addEventListener("close", (event) => {
      clearInterval(pinger);
      if (event.code !== 4003) reconnect(follow, attempt);
    });
  }

  render();
  loadAgents();
  listen();
  follow();
}
