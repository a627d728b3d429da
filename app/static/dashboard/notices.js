// What the page tells the user besides the data: refused actions (an alert that goes away by
// itself) and the state of the live connection (a banner while it is down).

import { byId, h, replaceChildren, setText } from "./dom.js";
import { REFUSED } from "./graphql-ws.js";

const NOTICE_MS = 12_000;

/** Shows a message in the alert region; returns a function that removes it. */
export function notify(message, kind = "error") {
  const region = byId("notices");
  const close = () => item.remove();
  const item = h(
    "div",
    { class: `notice notice-${kind}` },
    h("span", { class: "notice-text" }, message),
    h("button", { type: "button", class: "notice-close", onclick: close }, "Dismiss"),
  );
  region.append(item);
  setTimeout(close, NOTICE_MS);
  return close;
}

export function clearNotices() {
  replaceChildren(byId("notices"));
}

/** The banner for a connection state from LiveConnection (see graphql-ws.js). */
export function showConnectionState(state) {
  const banner = byId("connection-banner");
  const text = byId("connection-text");
  if (state.phase === "open") {
    banner.hidden = true;
    banner.dataset.phase = "open";
    document.body.classList.remove("offline");
    return;
  }
  if (state.phase === "connecting" && banner.hidden) return; // the first connection
  banner.hidden = false;
  banner.dataset.phase = state.phase;
  document.body.classList.add("offline");
  if (state.phase === "reconnecting") {
    const seconds = Math.max(1, Math.round(state.retryInMs / 1000));
    const why =
      state.code === REFUSED
        ? `The server refused the live connection (${state.reason || "no reason given"})`
        : "Connection to the server lost";
    banner.dataset.phase = state.code === REFUSED ? "refused" : "reconnecting";
    setText(
      text,
      `${why}: reconnecting in ${seconds} s (attempt ${state.attempt}). ` +
        "The table shows the last known state.",
    );
  } else if (state.phase === "connecting") {
    setText(text, "Reconnecting to the server…");
  } else if (state.phase === "refused") {
    setText(text, `The server refused the live connection: ${state.reason || "no reason given"}`);
  }
}

export function hideConnectionState() {
  byId("connection-banner").hidden = true;
  document.body.classList.remove("offline");
}
