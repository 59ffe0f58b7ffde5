// The page as a support widget: the brand (name, avatar, colour from the SUPPORTBOT_BRAND_*
// settings, carried by data- attributes of <body>), the greeting and suggested questions at the
// start of a conversation, and "End conversation" behind a confirmation dialog.
//
// The greeting is part of the page, not a stored message: it is shown again whenever the log
// is emptied for a new conversation, and the suggestions go away once the conversation has a
// message. Both follow the log itself (a MutationObserver), so app.js needs to know nothing of
// them.

const body = document.body;

export const brand = {
  name: body.dataset.brandName || "Assistant",
  avatar: body.dataset.brandAvatar || "",
};

/** A small avatar image of the assistant (decorative: its name is written next to it). */
export function avatarImage(size = 24) {
  const image = document.createElement("img");
  image.className = "avatar";
  image.alt = "";
  image.width = size;
  image.height = size;
  image.src = brand.avatar;
  return image;
}

// The brand colour through the CSS object model: the page's CSP allows no inline style, and
// the colour was checked on the server (#rgb or #rrggbb).
const COLOR = /^#(?:[0-9a-f]{3}){1,2}$/i;
if (COLOR.test(body.dataset.brandColor || "")) {
  document.documentElement.style.setProperty("--brand", body.dataset.brandColor);
  if (COLOR.test(body.dataset.brandColorFg || "")) {
    document.documentElement.style.setProperty("--brand-fg", body.dataset.brandColorFg);
  }
}

const log = document.getElementById("log");
const welcome = document.getElementById("welcome");
const suggestions = document.getElementById("suggestions");
const form = document.getElementById("composer");
const input = document.getElementById("message");

function showWelcome() {
  if (welcome && welcome.parentNode !== log) log.prepend(welcome);
  if (suggestions) suggestions.hidden = Boolean(log.querySelector("article.message"));
}
if (welcome) {
  new MutationObserver(showWelcome).observe(log, { childList: true });
  showWelcome();
}

if (suggestions) {
  suggestions.addEventListener("click", (event) => {
    const button = event.target.closest("button.suggestion");
    if (!button || input.disabled) return;
    // The composer's own way out: the same checks, the same frame, the same pending bubble.
    input.value = button.textContent.trim();
    form.requestSubmit();
    input.focus();
  });
}

const endButton = document.getElementById("end-conversation");
const dialog = document.getElementById("end-dialog");
if (endButton && dialog) {
  endButton.addEventListener("click", () => {
    if (!endButton.disabled && !dialog.open) dialog.showModal();
  });
  // A click on the backdrop (outside the dialog's box) is a "no", like Escape.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close("cancel");
  });
}
