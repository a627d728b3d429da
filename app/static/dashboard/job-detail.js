// One job in full, opened from the table: its fields, its history (Job.events, oldest first,
// the newest at the bottom) and the tail of its log, kept current from the live stream.

import { byId, h, replaceChildren, setText } from "./dom.js";
import {
  fillEta,
  fillProgress,
  fillStatus,
  personName,
  progressBar,
  statusBadge,
} from "./job-parts.js";
import { HISTORY_PAGE, JOB_DETAIL, JOB_HISTORY, LOG_TAIL } from "./queries.js";
import { coalesced } from "./schedule.js";
import { absolute, duration } from "./time.js";

const HISTORY_PAGES_ON_OPEN = 5;
const REFRESH_DELAY_MS = 400;

export class JobDetail {
  /** onOpen(id) and onClose() tell the table which row to mark. */
  constructor({ api, notify, onOpen = () => {}, onClose = () => {}, signal }) {
    this.api = api;
    this.notify = notify;
    this.onOpen = onOpen;
    this.onClose = onClose;
    this.panel = byId("job-detail");
    this.title = byId("detail-title");
    this.fields = byId("detail-fields");
    this.history = byId("detail-history");
    this.more = byId("detail-more");
    this.log = byId("detail-log");
    this.status = statusBadge();
    this.progress = progressBar();
    this.eta = h("time", { class: "eta" });
    replaceChildren(byId("detail-summary"), this.status, this.progress, this.eta);
    this.id = null;
    this.refresh = coalesced(() => this.#loadDetail(), REFRESH_DELAY_MS);
    const options = { signal };
    byId("detail-close").addEventListener("click", () => this.close(), options);
    this.more.addEventListener("click", () => this.#loadHistory(1), options);
    document.addEventListener(
      "keydown",
      (event) => {
        if (event.key === "Escape" && this.id !== null && !byId("cancel-dialog").open) {
          this.close();
        }
      },
      options,
    );
  }

  async open(id) {
    this.id = id;
    this.sequences = new Set();
    this.endCursor = null;
    this.historyComplete = false;
    this.loadingHistory = false;
    this.pending = [];
    this.current = null;
    setText(this.title, "Loading…");
    replaceChildren(this.fields);
    replaceChildren(this.history);
    setText(this.log, "");
    this.more.hidden = true;
    this.panel.hidden = false;
    this.onOpen(id);
    await this.#loadDetail();
    await this.#loadHistory(HISTORY_PAGES_ON_OPEN);
    this.panel.scrollIntoView({ block: "nearest" });
  }

  close() {
    this.id = null;
    this.refresh.cancel();
    this.panel.hidden = true;
    this.onClose();
  }

  /** A live event: the summary at once, the history if it is read to its end, the rest soon. */
  handleEvent(event) {
    if (event.job.id !== this.id) return;
    this.#fillSummary(event.job);
    if (this.current) this.#fillFields({ ...this.current, ...event.job });
    if (this.loadingHistory) this.pending.push(event);
    else if (this.historyComplete) this.#appendHistory([event]);
    this.refresh();
  }

  /** A job as an action left it. */
  applyJob(job) {
    if (job.id !== this.id) return;
    this.#fillSummary(job);
    this.refresh();
  }

  async #loadDetail() {
    const id = this.id;
    if (id === null) return;
    let job;
    try {
      ({ job } = await this.api(JOB_DETAIL, { id, tail: LOG_TAIL }));
    } catch (error) {
      if (this.id === id) this.notify(`The job could not be read: ${error.message}`);
      return;
    }
    if (this.id !== id) return;
    if (!job) {
      setText(this.title, "This job is not visible to you.");
      return;
    }
    setText(this.title, `${job.projectName} · ${job.outputName}`);
    this.current = job;
    this.#fillSummary(job);
    this.#fillFields(job);
    this.#fillLog(job.logs);
  }

  async #loadHistory(pages) {
    const id = this.id;
    if (id === null || this.loadingHistory) return;
    this.loadingHistory = true;
    try {
      for (let page = 0; page < pages && !this.historyComplete; page += 1) {
        const { job } = await this.api(JOB_HISTORY, {
          id,
          first: HISTORY_PAGE,
          after: this.endCursor,
        });
        if (this.id !== id || !job) return;
        const { edges, pageInfo } = job.events;
        this.#appendHistory(edges.map((edge) => edge.node));
        this.endCursor = pageInfo.endCursor || this.endCursor;
        this.historyComplete = !pageInfo.hasNextPage;
      }
    } catch (error) {
      if (this.id === id) this.notify(`The job's history could not be read: ${error.message}`);
    } finally {
      if (this.id === id) {
        this.loadingHistory = false;
        if (this.historyComplete) this.#appendHistory(this.pending);
        this.pending = [];
        this.more.hidden = this.historyComplete;
      }
    }
  }

  #appendHistory(events) {
    const atBottom = isScrolledToBottom(this.history);
    for (const event of events) {
      if (this.sequences.has(event.sequence)) continue;
      this.sequences.add(event.sequence);
      this.history.append(historyItem(event));
    }
    if (atBottom) this.history.scrollTop = this.history.scrollHeight;
  }

  #fillSummary(job) {
    fillStatus(this.status, job.status);
    fillProgress(this.progress, job.progress, job.status);
    fillEta(this.eta, job);
  }

  #fillFields(job) {
    const rows = [
      ["Status", job.status],
      ["Stage", job.status === "RENDERING" ? job.stage : null],
      ["Progress", `${job.progress}%`],
      ["Priority", job.priority],
      ["Queue position", job.queuePosition ? `#${job.queuePosition}` : null],
      ["Owner", job.user ? personName(job.user) : null],
      ["Worker", personName(job.worker) || null],
      ["Attempts", `${job.attempts} of ${job.maxAttempts}`],
      ["Project", job.projectName],
      ["Output name", job.outputName],
      ["Template", job.templatePath],
      ["Data", job.dataPath],
      ["Output path", job.outputPath],
      ["Submitted", absolute(job.createdAt)],
      ["Queued", absolute(job.queuedAt)],
      ["Started", absolute(job.startedAt)],
      ["Completed", absolute(job.completedAt)],
      ["Last heartbeat", absolute(job.heartbeatAt)],
      ["Estimated time", duration(job.estimatedTime)],
      ["Render time", duration(job.actualTime)],
      ["Not before", absolute(job.notBefore)],
      ["Cancel if unfinished at", absolute(job.autoCancelAt)],
      ["Nexrender job", job.nexrenderJobId],
      ["Error", job.errorMessage],
      ["Cancelled because", job.cancelledReason],
    ];
    replaceChildren(
      this.fields,
      rows
        .filter(([, value]) => value !== null && value !== undefined && value !== "")
        .map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]),
    );
  }

  #fillLog(text) {
    const atBottom = isScrolledToBottom(this.log);
    setText(this.log, text || "(no log yet)");
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }
}

function isScrolledToBottom(element) {
  return element.scrollHeight - element.scrollTop - element.clientHeight < 24;
}

function historyItem(event) {
  const who = event.actor ? ` by ${personName(event.actor)}` : event.duty ? ` (${event.duty})` : "";
  return h(
    "li",
    { class: `history-${String(event.kind).toLowerCase()}`, dataset: { sequence: event.sequence } },
    h(
      "time",
      { datetime: event.at, title: absolute(event.at) },
      new Date(event.at).toLocaleTimeString(),
    ),
    " ",
    h("span", { class: "history-what" }, describe(event) + who),
    event.reason ? h("span", { class: "history-reason" }, event.reason) : null,
  );
}

function describe(event) {
  const job = event.job;
  switch (event.kind) {
    case "CREATED":
      return `Submitted (${job.status})`;
    case "STATUS_CHANGED":
      return `${event.previousStatus || "?"} → ${job.status}`;
    case "PROGRESS":
      return `Progress ${job.progress}%${job.stage ? ` · ${job.stage}` : ""}`;
    case "PRIORITY_CHANGED":
      return `Priority → ${job.priority}`;
    case "LOG":
      return "Log lines added";
    default:
      return String(event.kind);
  }
}
