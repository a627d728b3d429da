// Times as the API sends them (ISO 8601 with microseconds, e.g. 2026-05-01T10:00:00.123456+00:00)
// and as a wall screen shows them ("12 s ago", "in 3 min").

/** Microseconds since the epoch: orders two API times exactly (Date keeps milliseconds only). */
export function instantKey(iso) {
  if (!iso) return -Infinity;
  const millis = Date.parse(iso);
  if (Number.isNaN(millis)) return -Infinity;
  const fraction = /\.(\d+)/.exec(iso);
  const micros = fraction ? Number(fraction[1].padEnd(6, "0").slice(3, 6)) : 0;
  return millis * 1000 + micros;
}

function span(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) {
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  }
  return `${Math.floor(seconds / 86400)} d`;
}

/** "12 s ago", "in 3 min", "just now"; "" without a time. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const millis = Date.parse(iso);
  if (Number.isNaN(millis)) return "";
  const seconds = Math.round((millis - now) / 1000);
  if (Math.abs(seconds) < 1) return "just now";
  return seconds > 0 ? `in ${span(seconds)}` : `${span(-seconds)} ago`;
}

/** The local date and time, for tooltips and the detail view. */
export function absolute(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

/** Seconds as "1 min 20 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

/**
 * A <time> element whose text says how long ago (or how soon) `iso` is, after `prefix`; with
 * `whenPast`, a time already past reads as that instead (an estimate that is due).
 * `refreshRelativeTimes` keeps every such element current.
 */
export function fillRelativeTime(element, iso, { prefix = "", whenPast = "" } = {}) {
  const at = iso || "";
  if (element.dataset.at !== at) {
    element.dataset.at = at;
    if (at) element.setAttribute("datetime", at);
    else element.removeAttribute("datetime");
    element.title = absolute(at);
  }
  element.dataset.prefix = prefix;
  element.dataset.whenPast = whenPast;
  let text = "";
  if (at) {
    const past = Date.parse(at) <= Date.now();
    text = past && whenPast ? whenPast : `${prefix}${relative(at)}`;
  }
  if (element.textContent !== text) element.textContent = text;
}

export function refreshRelativeTimes(root = document) {
  for (const element of root.querySelectorAll("time[data-at]")) {
    const { at, prefix, whenPast } = element.dataset;
    fillRelativeTime(element, at, { prefix, whenPast });
  }
}
