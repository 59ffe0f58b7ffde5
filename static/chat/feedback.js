// What the customer says about one answer, in a row under it: thumbs up or down
// (POST /api/session/{id}/feedback) and "Report this answer" (POST /api/session/{id}/report).
//
// A thumbs-down on an answer that cited no source asks for a person on the server; the vote's
// answer then carries the hand-off's status, which the page shows like any handoff_status.

import { apiRequest, errorMessage } from "./handoff.js";

// Thumb outlines (Feather icons, MIT): drawn as SVG rather than emoji, which not every system
// has a font for.
const VOTES = [
  {
    vote: "up",
    label: "This helped",
    path:
      "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3z" +
      "M7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
  },
  {
    vote: "down",
    label: "This did not help",
    path:
      "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3z" +
      "m7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
  },
];
const SVG = "http://www.w3.org/2000/svg";

function icon(pathData) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", pathData);
  svg.append(path);
  return svg;
}

/**
 * Add the row under an answer. `ctx`: sessionId() (the current session), notify(text, level)
 * (a notice in the log), onHandoff(status) (a vote that asked for a person).
 */
export function addAnswerActions(article, messageId, ctx) {
  if (article.querySelector(".answer-actions")) return;
  const row = document.createElement("footer");
  row.className = "answer-actions";
  row.append(thumbs(messageId, ctx), reportButton(article, messageId, ctx));
  article.append(row);
}

function thumbs(messageId, ctx) {
  const group = document.createElement("div");
  group.className = "thumbs";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", "Was this answer helpful?");
  const buttons = new Map();
  const show = (vote) => {
    for (const [value, button] of buttons) {
      button.setAttribute("aria-pressed", String(value === vote));
    }
  };
  for (const { vote, label, path } of VOTES) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.dataset.vote = vote;
    button.setAttribute("aria-label", label);
    button.setAttribute("aria-pressed", "false");
    button.title = label;
    button.append(icon(path));
    button.addEventListener("click", async () => {
      // There is no "no vote" to go back to: a pressed thumb stays until the other is chosen.
      if (button.getAttribute("aria-pressed") === "true" || group.getAttribute("aria-busy")) return;
      const sessionId = ctx.sessionId();
      group.setAttribute("aria-busy", "true");
      const result = await apiRequest(
        "POST",
        `/api/session/${encodeURIComponent(sessionId)}/feedback`,
        { messageId, vote },
      );
      group.removeAttribute("aria-busy");
      if (sessionId !== ctx.sessionId()) return;
      if (!result.ok || !result.body) {
        const fallback = "Could not send your feedback. Try again in a moment.";
        ctx.notify(errorMessage(result.body, fallback), "error");
        return;
      }
      // The server's answer is what counts (a vote from another tab may have replaced ours).
      show(result.body.vote);
      if (result.body.handoff) ctx.onHandoff(result.body.handoff);
    });
    buttons.set(vote, button);
    group.append(button);
  }
  return group;
}

function reportButton(article, messageId, ctx) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "report";
  button.textContent = "Report this answer";
  button.addEventListener("click", () => openReportForm(article, messageId, button, ctx));
  return button;
}

function openReportForm(article, messageId, button, ctx) {
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
    const result = await apiRequest(
      "POST",
      `/api/session/${encodeURIComponent(ctx.sessionId())}/report`,
      { messageId, reason: reason.value.trim() },
    );
    if (!result.ok) {
      submit.disabled = false;
      ctx.notify("Could not send the report. Try again in a moment.", "error");
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
