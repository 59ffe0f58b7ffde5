// The hand-off to a person as the customer sees it: the availability line in the header, the
// "Talk to a person" button and the panel above the composer (the queue, the ticket offer, the
// agent holding the conversation, the rating of a resolved one).
//
// All of it is drawn from one body, the server's handoffStatus (GET /api/session/{id}/handoff and
// every handoff_status frame). A new body redraws only what changed: an address being typed or a
// star being chosen survives a frame that only moved the queue. Text reaches the DOM through
// textContent only.

const OPEN_STATES = new Set(["waiting", "assigned", "with_agent"]);
const RATING_COMMENT_MAX = 1000;
// Agents coming online or support hours opening send no frame to a customer who has not asked:
// the availability line is asked for again this often while the page is in view.
const AVAILABILITY_REFRESH_MS = 120000;

/** fetch as {ok, status, body}; a network failure is {ok: false, status: 0, body: null}. */
export async function apiRequest(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, body: null };
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

/** The message of an API error body (REST: {error: {...}}; a frame's data is the inner one). */
export function errorMessage(error, fallback) {
  const inner = error && typeof error.error === "object" && error.error ? error.error : error;
  const message = inner && typeof inner.message === "string" ? inner.message.trim() : "";
  return message || fallback;
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("aria-") || key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function fieldError(id) {
  return element("p", { className: "field-error", id, hidden: true });
}

function minutes(seconds) {
  const count = Math.max(1, Math.round(seconds / 60));
  return count === 1 ? "about 1 minute" : `about ${count} minutes`;
}

function agentName(status) {
  const name = status.agent && typeof status.agent.name === "string" ? status.agent.name : "";
  return name.trim();
}

function availabilityText(availability) {
  if (availability.humansAvailable) return "Support team online";
  const next = typeof availability.nextOpenText === "string" ? availability.nextOpenText : "";
  return next ? `Our team is back ${next}` : "No one from the team is online right now";
}

/**
 * The hand-off part of the page. `ctx` gives what it needs of the page: the current session id,
 * a way to send a frame on the open socket (false when there is none), request ids, a notice in
 * the conversation log.
 */
export function createHandoff(ctx) {
  const line = document.getElementById("availability");
  const talk = document.getElementById("talk-to-person");
  const panel = document.getElementById("handoff");
  const statusText = document.getElementById("handoff-status");
  const detail = document.getElementById("handoff-detail");

  const state = {
    status: null, // the latest handoffStatus body
    mode: "none", // what the panel shows: none, queue, offer, ticket, agent, rating, rated
    applied: 0, // bodies applied so far: a slow GET must not undo a newer frame
    requests: new Map(), // requestId of a handoff_request frame -> what asked (talk, email, pause)
    rated: null, // the handoffId this page rated
    ended: false,
    controls: {},
  };

  function sessionPath(suffix) {
    return `/api/session/${encodeURIComponent(ctx.sessionId())}/${suffix}`;
  }

  function modeOf(status) {
    if (OPEN_STATES.has(status.status)) {
      if (status.status === "with_agent") return "agent";
      if (status.ticketOffered) return status.ticketId && status.contactGiven ? "ticket" : "offer";
      return "queue";
    }
    if (status.status === "resolved") {
      if (state.rated && state.rated === status.handoffId) return "rated";
      if (status.ratingRequested) return "rating";
    }
    return "none";
  }

  function textOf(mode, status) {
    const name = agentName(status);
    switch (mode) {
      case "queue": {
        const parts = [];
        if (status.status === "assigned" && name) parts.push(`${name} will be with you shortly.`);
        if (Number.isInteger(status.position) && status.position > 0) {
          parts.push(`You're number ${status.position} in the queue.`);
        }
        if (Number.isFinite(status.typicalWaitSeconds) && status.typicalWaitSeconds >= 0) {
          parts.push(`Typical wait: ${minutes(status.typicalWaitSeconds)}.`);
        }
        return parts.join(" ") || "We've asked someone from the team to join you.";
      }
      case "offer": {
        const availability = status.availability || {};
        const next = typeof availability.nextOpenText === "string" ? availability.nextOpenText : "";
        const ticket = status.ticketId ? `Your ticket is ${status.ticketId}. ` : "";
        return (
          `No one from the team is available right now${next ? `; back ${next}` : ""}. ` +
          ticket +
          (status.ticketId
            ? "Leave your email address and we'll reply to it by email."
            : "Leave your email address and we'll reply by email (we'll open a ticket).")
        );
      }
      case "ticket":
        return `Ticket ${status.ticketId} opened; we'll reply to your address.`;
      case "agent":
        return `${name || "Someone from our team"} is answering you.`;
      case "rating":
        return "This conversation is resolved. Would you rate it?";
      case "rated":
        return "Thanks for your rating.";
      default:
        return "";
    }
  }

  // --- the parts of the panel ----------------------------------------------------------------

  function pauseToggle() {
    const box = element("input", { type: "checkbox", id: "handoff-pause" });
    const label = element("label", {
      htmlFor: box.id,
      text: "Pause the assistant while I wait",
    });
    const error = fieldError("handoff-pause-error");
    box.setAttribute("aria-describedby", error.id);
    box.addEventListener("change", () => {
      error.hidden = true;
      request({ stopBot: box.checked }, "pause");
    });
    state.controls = { box, pauseError: error };
    return [element("div", { className: "handoff-option" }, box, label), error];
  }

  function emailForm() {
    const input = element("input", {
      type: "email",
      id: "handoff-email",
      name: "email",
      autocomplete: "email",
      required: true,
      maxLength: 254,
      spellcheck: false,
    });
    const error = fieldError("handoff-email-error");
    input.setAttribute("aria-describedby", error.id);
    const submit = element("button", {
      type: "submit",
      className: "primary",
      text: "Open a ticket",
    });
    const form = element(
      "form",
      { className: "handoff-form", "aria-label": "Reply by email" },
      element("label", { htmlFor: input.id, text: "Email address" }),
      element("div", { className: "field-row" }, input, submit),
      error,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (submit.getAttribute("aria-disabled") === "true") return;
      const address = input.value.trim();
      if (!address || !input.checkValidity()) {
        input.reportValidity();
        return;
      }
      // aria-disabled, not disabled: a disabled button would drop the focus to the page's top.
      submit.setAttribute("aria-disabled", "true");
      error.hidden = true;
      input.removeAttribute("aria-invalid");
      request({ contactEmail: address }, "email");
    });
    state.controls = { input, submit, emailError: error };
    return [form];
  }

  function ratingForm() {
    const legend = element("legend", { text: "How did we do?" });
    const stars = element("fieldset", { className: "stars" }, legend);
    const row = element("div", { className: "star-row" });
    const radios = [];
    for (let score = 1; score <= 5; score += 1) {
      const radio = element("input", {
        type: "radio",
        name: "score",
        value: String(score),
        id: `rating-${score}`,
        required: true,
      });
      // The radio lies over its star, transparent: a click on the star is a click on it.
      const label = element(
        "label",
        { title: `${score} of 5` },
        radio,
        element("span", { "aria-hidden": "true", className: "star", text: "★" }),
        element("span", {
          className: "visually-hidden",
          text: score === 1 ? "1 star" : `${score} stars`,
        }),
      );
      radios.push(radio);
      row.append(label);
    }
    // Stars up to the chosen one are lit (a radio group has no "up to" of its own).
    const light = () => {
      const chosen = radios.findIndex((radio) => radio.checked) + 1;
      row.dataset.score = String(chosen);
      for (const radio of radios) {
        radio.parentElement.classList.toggle("lit", Number(radio.value) <= chosen);
      }
    };
    row.addEventListener("change", light);
    stars.append(row);
    const comment = element("textarea", {
      id: "rating-comment",
      rows: 2,
      maxLength: RATING_COMMENT_MAX,
    });
    const error = fieldError("rating-error");
    const submit = element("button", { type: "submit", className: "primary", text: "Send rating" });
    const form = element(
      "form",
      { className: "rating-form", "aria-label": "Rate this conversation" },
      stars,
      element("label", { htmlFor: comment.id, text: "Anything you'd like to add? (optional)" }),
      comment,
      element("div", { className: "form-actions" }, submit),
      error,
    );
    form.setAttribute("aria-describedby", error.id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const checked = radios.find((radio) => radio.checked);
      if (!checked) {
        radios[0].reportValidity();
        return;
      }
      sendRating(Number(checked.value), comment.value.trim(), { submit, error, radios });
    });
    state.controls = { radios, ratingError: error };
    return [form];
  }

  async function sendRating(score, comment, { submit, error, radios }) {
    const sessionId = ctx.sessionId();
    const handoffId = state.status && state.status.handoffId;
    submit.disabled = true;
    error.hidden = true;
    const result = await apiRequest("POST", sessionPath("rating"), { score, comment });
    if (sessionId !== ctx.sessionId()) return;
    if (result.ok) {
      state.rated = handoffId || "rated";
      if (state.status) render(state.status, { focus: true });
      return;
    }
    submit.disabled = false;
    const fallback = "Could not send your rating. Try again in a moment.";
    error.textContent = errorMessage(result.body, fallback);
    error.hidden = false;
    (radios.find((radio) => radio.checked) || radios[0]).focus();
  }

  const builders = { queue: pauseToggle, offer: emailForm, rating: ratingForm };

  // --- drawing -------------------------------------------------------------------------------

  function render(status, { focus = false } = {}) {
    const mode = modeOf(status);
    const active = document.activeElement;
    // Focus inside a part about to be replaced (or on the button this request disables) moves
    // with it, instead of falling back to the top of the page.
    const leaving = detail.contains(active) || (active === talk && OPEN_STATES.has(status.status));
    const focusHere = focus || (mode !== state.mode && leaving);
    if (mode !== state.mode) {
      state.controls = {};
      detail.replaceChildren(...(builders[mode] ? builders[mode]() : []));
      state.mode = mode;
      panel.dataset.state = mode;
    }
    const text = textOf(mode, status);
    if (statusText.textContent !== text) statusText.textContent = text;
    const waitingFor = new Set(state.requests.values());
    const { box, submit } = state.controls;
    // A frame sent before this page's own request was read must not undo what was just chosen.
    if (box && !waitingFor.has("pause")) box.checked = Boolean(status.botPaused);
    if (submit && !waitingFor.has("email")) submit.removeAttribute("aria-disabled");
    talk.disabled = state.ended || OPEN_STATES.has(status.status);
    if (focusHere) moveFocus(mode);
  }

  function moveFocus(mode) {
    const { input, box, radios } = state.controls;
    const target = input || box || (radios && radios[0]);
    if (target) target.focus();
    else if (mode !== "none") statusText.focus();
    else if (!talk.disabled) talk.focus();
    else ctx.focusComposer();
  }

  function showAvailability(availability) {
    if (!availability || typeof availability !== "object") return;
    line.textContent = availabilityText(availability);
    line.dataset.state = availability.humansAvailable ? "online" : "away";
    line.hidden = false;
  }

  /** Apply a handoffStatus body (a frame's data, a REST answer, a vote's `handoff`). */
  function apply(status, { requestId = null, asked = null } = {}) {
    if (!status || typeof status !== "object" || typeof status.status !== "string") return;
    if (requestId && state.requests.has(requestId)) {
      asked = state.requests.get(requestId);
      state.requests.delete(requestId);
    }
    state.applied += 1;
    state.status = status;
    showAvailability(status.availability);
    // An answer to this page's own "Talk to a person" takes the focus to what it shows next.
    render(status, { focus: asked === "talk" && modeOf(status) !== "none" });
  }

  async function request(data, asked) {
    const requestId = ctx.newRequestId();
    if (ctx.sendFrame({ type: "handoff_request", data, requestId })) {
      state.requests.set(requestId, asked);
      return;
    }
    // No open socket: the same request over REST.
    const sessionId = ctx.sessionId();
    const result = await apiRequest("POST", sessionPath("handoff"), data);
    if (sessionId !== ctx.sessionId()) return;
    if (result.ok && result.body) {
      apply(result.body, { asked });
    } else {
      refused(asked, result.body);
    }
  }

  function refused(asked, error) {
    let message = errorMessage(error, "Could not reach the support team. Try again in a moment.");
    const { input, submit, emailError, box, pauseError } = state.controls;
    const inner = error && typeof error.error === "object" && error.error ? error.error : error;
    const field = inner && inner.details ? inner.details.field : null;
    if (asked === "email" && input) {
      // The server's words name its field ("contactEmail"); the customer sees the field's name.
      if (field === "contactEmail") {
        message = "Enter a complete email address, like name@example.com.";
      }
      // The address stays as typed: the customer corrects it rather than typing it again.
      submit.removeAttribute("aria-disabled");
      emailError.textContent = message;
      emailError.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else if (asked === "pause" && box) {
      box.checked = Boolean(state.status && state.status.botPaused);
      pauseError.textContent = message;
      pauseError.hidden = false;
    } else {
      ctx.notify(message, "error");
    }
  }

  /** The status as it is now, before anyone asks (availability included). */
  async function load() {
    const sessionId = ctx.sessionId();
    const applied = state.applied;
    const result = await apiRequest("GET", sessionPath("handoff"));
    if (sessionId !== ctx.sessionId() || applied !== state.applied) return;
    if (result.ok) apply(result.body);
  }

  talk.addEventListener("click", () => {
    if (!state.ended) request({}, "talk");
  });
  setInterval(() => {
    if (!state.ended && document.visibilityState === "visible") load().catch(() => {});
  }, AVAILABILITY_REFRESH_MS);

  return {
    apply,
    load,

    /** Whether an error frame answers one of this page's handoff_request frames. */
    owns(requestId) {
      return Boolean(requestId) && state.requests.has(requestId);
    },

    fail(requestId, error) {
      const asked = state.requests.get(requestId);
      state.requests.delete(requestId);
      refused(asked, error);
    },

    /** The socket closed: answers to its requests will not come (a resent one may). */
    socketLost() {
      state.requests.clear();
      if (state.controls.submit) state.controls.submit.removeAttribute("aria-disabled");
    },

    ended() {
      state.ended = true;
      talk.disabled = true;
    },

    /** A new conversation: nothing of the old one's hand-off stays. */
    reset() {
      Object.assign(state, { status: null, mode: "none", rated: null, ended: false, controls: {} });
      state.applied += 1;
      state.requests.clear();
      detail.replaceChildren();
      statusText.textContent = "";
      panel.dataset.state = "none";
      line.hidden = true;
      line.textContent = "";
      talk.disabled = false;
    },
  };
}
