// The widget demo's buttons call the widget's JavaScript API; what it reports is listed.
function record(text) {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("events").append(item);
}

function identity() {
  const signed = JSON.parse(document.getElementById("demo-identity").textContent);
  // Unsigned: shows the refusal a host gets without the right signature.
  return signed || { userId: "demo-customer-42", timestamp: Math.floor(Date.now() / 1000), signature: "0".repeat(64) };
}

const CALLS = {
  open: (api) => api.open(),
  close: (api) => api.close(),
  newConversation: (api) => api.newConversation(),
  identify: (api) => api.identify(identity()),
};

function wire() {
  const api = window.Supportbot;
  for (const name of ["open", "close", "ready", "session", "identify", "error"]) {
    api.on(name, (detail) => record(detail ? `${name} ${JSON.stringify(detail)}` : name));
  }
  for (const button of document.querySelectorAll("button[data-call]")) {
    button.addEventListener("click", async () => {
      try {
        const result = await CALLS[button.dataset.call](api);
        if (result) record(`${button.dataset.call} → ${JSON.stringify(result)}`);
      } catch (error) {
        record(`${button.dataset.call} failed: ${error.code || ""} ${error.message}`);
      }
    });
  }
}

// The loader is async: it may arrive before or after this script.
if (window.Supportbot && window.Supportbot.version) wire();
else document.addEventListener("supportbot:ready", wire, { once: true });
