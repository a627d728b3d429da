// Small pieces of a job shared by the table, the detail and the workers panel: its status
// badge, its progress bar, a person's name, when it should start or finish.

import { h, setText } from "./dom.js";
import { label } from "./stats-bar.js";
import { fillRelativeTime } from "./time.js";

export function statusBadge() {
  return h("span", { class: "status" });
}

export function fillStatus(badge, status) {
  setText(badge, status);
  badge.className = `status status-${String(status).toLowerCase()}`;
  badge.title = label(status);
}

export function progressBar() {
  const fill = h("div", { class: "progress-fill" });
  const bar = h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 },
    fill,
  );
  const text = h("span", { class: "progress-text" });
  return h("div", { class: "progress-cell" }, bar, text);
}

export function fillProgress(cell, progress, status) {
  const bar = cell.querySelector(".progress");
  const fill = cell.querySelector(".progress-fill");
  const value = Math.max(0, Math.min(100, Number(progress) || 0));
  const width = `${value}%`;
  if (fill.style.width !== width) fill.style.width = width;
  fill.className = `progress-fill status-${String(status).toLowerCase()}`;
  bar.setAttribute("aria-valuenow", String(value));
  bar.setAttribute("aria-label", `Progress ${value}%`);
  setText(cell.querySelector(".progress-text"), `${value}%`);
}

/** An address that may break after its "@" in a narrow cell (text nodes and a <wbr>). */
export function fillAddress(element, email) {
  const text = email || "";
  if (element.textContent === text) return;
  const at = text.indexOf("@");
  if (at < 0) element.replaceChildren(text);
  else element.replaceChildren(text.slice(0, at + 1), h("wbr"), text.slice(at + 1));
}

export function personName(person) {
  if (!person) return "";
  return person.name ? `${person.name} (${person.email})` : person.email;
}

/** A <time> saying when the job should finish (RENDERING) or start (QUEUED). */
export function fillEta(element, job) {
  if (job.status === "RENDERING" && job.estimatedCompletionAt) {
    fillRelativeTime(element, job.estimatedCompletionAt, {
      prefix: "done ",
      whenPast: "finishing",
    });
  } else if (job.status === "QUEUED" && job.estimatedStartAt) {
    fillRelativeTime(element, job.estimatedStartAt, {
      prefix: "starts ",
      whenPast: "any moment",
    });
  } else {
    fillRelativeTime(element, null);
  }
}
