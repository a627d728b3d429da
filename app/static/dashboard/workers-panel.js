// For admins: every render worker, the job it holds, when it was last heard from, and the ones
// gone silent (stalled). Read from the `workers` query on a timer and after worker-related
// changes.

import { h, replaceChildren, setText } from "./dom.js";
import { personName } from "./job-parts.js";
import { WORKERS } from "./queries.js";
import { coalesced, every } from "./schedule.js";
import { fillRelativeTime } from "./time.js";

const REFRESH_EVERY_MS = 5_000;
const AFTER_EVENT_DELAY_MS = 300;

export class WorkersPanel {
  constructor({ api, panel, list, error, updated }) {
    this.api = api;
    this.panel = panel;
    this.list = list;
    this.error = error;
    this.updated = updated;
    this.refresh = coalesced(() => this.#load(), AFTER_EVENT_DELAY_MS);
    this.stopTimer = null;
  }

  start() {
    this.panel.hidden = false;
    this.refresh.now();
    this.stopTimer = every(REFRESH_EVERY_MS, () => this.refresh());
  }

  stop() {
    this.stopTimer?.();
    this.refresh.cancel();
    this.panel.hidden = true;
  }

  /** Claims, hand-backs and endings change what a worker holds; reports, when it was seen. */
  handleEvent(event) {
    const touchesWorker =
      event.job.status === "RENDERING" ||
      event.previousStatus === "RENDERING" ||
      event.job.worker !== null;
    if (touchesWorker) this.refresh();
  }

  async #load() {
    let workers;
    try {
      ({ workers } = await this.api(WORKERS));
    } catch (error) {
      this.error.hidden = false;
      setText(this.error, `Workers could not be read: ${error.message}`);
      return;
    }
    this.error.hidden = true;
    fillRelativeTime(this.updated, new Date().toISOString(), { prefix: "updated " });
    if (!workers.length) {
      replaceChildren(this.list, h("li", { class: "muted" }, "No worker accounts yet."));
      return;
    }
    replaceChildren(this.list, workers.map(workerItem));
  }
}

function workerItem(status) {
  const { worker, heldJobs, stalled } = status;
  const state = stalled
    ? "stalled"
    : !worker.isActive
      ? "deactivated"
      : heldJobs.length
        ? "rendering"
        : "idle";
  const heartbeat = h("time", { class: "heartbeat" });
  fillRelativeTime(heartbeat, status.lastHeartbeatAt, { prefix: "heartbeat " });
  const seen = h("time", { class: "last-seen" });
  fillRelativeTime(seen, status.lastSeenAt, { prefix: "seen " });
  return h(
    "li",
    { class: `worker worker-${state}`, dataset: { workerEmail: worker.email, state } },
    h(
      "div",
      { class: "worker-head" },
      h("span", { class: "worker-name" }, personName(worker)),
      h("span", { class: `worker-state worker-state-${state}` }, state),
    ),
    heldJobs.length
      ? h("ul", { class: "held-jobs" }, heldJobs.map(heldJobItem))
      : h("p", { class: "muted" }, "holds no job"),
    h(
      "p",
      { class: "worker-times" },
      status.lastHeartbeatAt ? heartbeat : null,
      status.lastHeartbeatAt && status.lastSeenAt ? " · " : null,
      status.lastSeenAt ? seen : h("span", { class: "muted" }, "never seen"),
    ),
  );
}

function heldJobItem(job) {
  return h(
    "li",
    { dataset: { jobId: job.id } },
    h("span", { class: "held-name" }, job.projectName),
    ` ${job.progress}%`,
    job.stage ? ` · ${job.stage}` : null,
  );
}
