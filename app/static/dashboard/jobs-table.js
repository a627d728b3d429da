// The jobs table: one row per job, created once and updated in place as changes arrive (its
// progress bar, status, stage...), in the model's order (newest first).

import { h, replaceChildren, setText } from "./dom.js";
import {
  fillAddress,
  fillEta,
  fillProgress,
  fillStatus,
  progressBar,
  statusBadge,
} from "./job-parts.js";
import { canCancel, canRetry, canSetPriority, isAdmin } from "./permissions.js";

const COLUMNS = [
  { key: "job", title: "Job" },
  { key: "status", title: "Status" },
  { key: "stage", title: "Stage" },
  { key: "progress", title: "Progress" },
  { key: "priority", title: "Priority" },
  { key: "queue", title: "Queue" },
  { key: "eta", title: "ETA" },
  { key: "owner", title: "Owner", adminOnly: true },
  { key: "worker", title: "Worker" },
  { key: "actions", title: "Actions" },
];

class JobRowView {
  constructor(job, { me, actions, onOpen }) {
    this.me = me;
    this.actions = actions;
    this.job = job;
    this.name = h("button", {
      type: "button",
      class: "job-name",
      onclick: () => onOpen(this.job.id),
    });
    this.output = h("span", { class: "output-name" });
    this.status = statusBadge();
    this.stage = h("span", { class: "stage" });
    this.progress = progressBar();
    this.priorityValue = h("span", { class: "priority-value" });
    this.priorityInput = h("input", {
      type: "number",
      class: "priority-input",
      min: 1,
      max: 10,
      step: 1,
      "aria-label": "Priority",
      onchange: async () => {
        await this.actions.setPriority(this.job, Number(this.priorityInput.value));
        this.priorityInput.value = String(this.job.priority); // refused: back to the real one
      },
    });
    this.priorityDown = h(
      "button",
      {
        type: "button",
        class: "priority-down",
        "aria-label": "Lower priority",
        title: "Lower priority",
        onclick: () => this.actions.setPriority(this.job, this.job.priority - 1),
      },
      "−",
    );
    this.priorityUp = h(
      "button",
      {
        type: "button",
        class: "priority-up",
        "aria-label": "Raise priority",
        title: "Raise priority",
        onclick: () => this.actions.setPriority(this.job, this.job.priority + 1),
      },
      "+",
    );
    this.priorityControls = h(
      "span",
      { class: "priority-controls" },
      this.priorityDown,
      this.priorityInput,
      this.priorityUp,
    );
    this.queue = h("span", { class: "queue-position" });
    this.eta = h("time", { class: "eta" });
    this.owner = h("span", { class: "row-owner" });
    this.worker = h("span", { class: "row-worker" });
    this.cancelButton = h(
      "button",
      {
        type: "button",
        class: "cancel-button danger",
        onclick: () => this.actions.cancel(this.job),
      },
      "Cancel",
    );
    this.retryButton = h(
      "button",
      { type: "button", class: "retry-button", onclick: () => this.actions.retry(this.job) },
      "Retry",
    );
    const cells = {
      job: [this.name, this.output],
      status: [this.status],
      stage: [this.stage],
      progress: [this.progress],
      priority: [this.priorityValue, this.priorityControls],
      queue: [this.queue],
      eta: [this.eta],
      owner: [this.owner],
      worker: [this.worker],
      actions: [h("div", { class: "actions" }, this.cancelButton, this.retryButton)],
    };
    this.element = h(
      "tr",
      {
        dataset: { jobId: job.id },
        onclick: (event) => {
          if (!event.target.closest("button, input, a, select, textarea")) onOpen(this.job.id);
        },
      },
      visibleColumns(me).map((column) =>
        h("td", { class: `cell-${column.key}` }, cells[column.key]),
      ),
    );
    this.update(job);
  }

  update(job) {
    this.job = job;
    const me = this.me;
    this.element.dataset.status = job.status;
    setText(this.name, job.projectName);
    setText(this.output, job.outputName);
    fillStatus(this.status, job.status);
    this.status.title = job.errorMessage || job.cancelledReason || job.status;
    setText(this.stage, job.status === "RENDERING" ? job.stage || "" : "");
    fillProgress(this.progress, job.progress, job.status);
    const editable = canSetPriority(me, job);
    this.priorityValue.hidden = editable;
    this.priorityControls.hidden = !editable;
    setText(this.priorityValue, job.priority);
    if (document.activeElement !== this.priorityInput) {
      this.priorityInput.value = String(job.priority); // not while the user types in it
    }
    this.priorityDown.disabled = job.priority <= 1;
    this.priorityUp.disabled = job.priority >= 10;
    setText(this.queue, job.queuePosition ? `#${job.queuePosition}` : "");
    fillEta(this.eta, job);
    fillAddress(this.owner, job.user?.email);
    fillAddress(this.worker, job.worker?.email);
    this.cancelButton.hidden = !canCancel(me, job);
    this.retryButton.hidden = !canRetry(me, job);
  }
}

function visibleColumns(me) {
  return COLUMNS.filter((column) => !column.adminOnly || isAdmin(me));
}

export class JobsTable {
  constructor({ head, body, empty, count, me, actions, onOpen }) {
    this.body = body;
    this.empty = empty;
    this.count = count;
    this.context = { me, actions, onOpen };
    this.rows = new Map();
    this.selectedId = null;
    replaceChildren(
      head,
      visibleColumns(me).map((column) =>
        h("th", { scope: "col", class: `cell-${column.key}` }, column.title),
      ),
    );
  }

  /** A change of the model (see JobsModel.onChange); `ordered` is the model's list. */
  apply({ upserted, removed }, ordered, totalCount) {
    for (const id of removed) {
      this.rows.get(id)?.element.remove();
      this.rows.delete(id);
    }
    for (const job of upserted) {
      const row = this.rows.get(job.id);
      if (row) row.update(job);
      else this.rows.set(job.id, new JobRowView(job, this.context));
    }
    this.#order(ordered);
    this.empty.hidden = this.rows.size > 0;
    // totalCount is the last read's; jobs that arrived live since may outnumber it.
    const shown = this.rows.size;
    const matching = Math.max(totalCount ?? 0, shown);
    setText(
      this.count,
      matching > shown ? `newest ${shown} of ${matching}` : `${shown} job${shown === 1 ? "" : "s"}`,
    );
  }

  select(id) {
    this.rows.get(this.selectedId)?.element.classList.remove("selected");
    this.selectedId = id;
    this.rows.get(id)?.element.classList.add("selected");
  }

  #order(ordered) {
    let index = 0;
    for (const job of ordered) {
      const row = this.rows.get(job.id);
      if (!row) continue;
      const here = this.body.children[index];
      if (here !== row.element) this.body.insertBefore(row.element, here || null);
      if (job.id === this.selectedId) row.element.classList.add("selected");
      index += 1;
    }
  }
}
