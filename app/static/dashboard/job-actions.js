// What a user does to a job: cancel it (with a reason, asked in a dialog), retry it, change its
// priority. Each answer is merged into the table at once (the live stream confirms it); a
// refusal shows the API's message.

import { byId, setText } from "./dom.js";
import { CANCEL_JOB, RETRY_JOB, SET_JOB_PRIORITY } from "./queries.js";

export class JobActions {
  /** onJob(job): a job as an action left it; notify(message): shows a refusal. */
  constructor({ api, onJob, notify, signal }) {
    this.api = api;
    this.onJob = onJob;
    this.notify = notify;
    this.dialog = byId("cancel-dialog");
    this.reason = byId("cancel-reason");
    this.error = byId("cancel-error");
    this.confirm = byId("cancel-confirm");
    this.cancelling = null;
    const options = { signal };
    byId("cancel-form").addEventListener(
      "submit",
      (event) => {
        event.preventDefault();
        this.#confirmCancel();
      },
      options,
    );
    byId("cancel-dismiss").addEventListener("click", () => this.dialog.close(), options);
    this.dialog.addEventListener(
      "close",
      () => {
        this.cancelling = null;
      },
      options,
    );
  }

  /** Opens the dialog that asks why; the job is cancelled when the user confirms. */
  cancel(job) {
    this.cancelling = job;
    setText(byId("cancel-job-name"), job.projectName);
    setText(this.error, "");
    this.reason.value = "";
    this.confirm.disabled = false;
    this.dialog.showModal();
    this.reason.focus();
  }

  async retry(job) {
    await this.#run(RETRY_JOB, { id: job.id }, "retryJob", `Retry ${job.projectName}`);
  }

  async setPriority(job, priority) {
    if (!Number.isInteger(priority) || priority === job.priority) return;
    await this.#run(
      SET_JOB_PRIORITY,
      { id: job.id, priority },
      "setJobPriority",
      `Priority of ${job.projectName}`,
    );
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  async #confirmCancel() {
    const job = this.cancelling;
    if (!job) return;
    const reason = this.reason.value.trim();
    if (!reason) {
      setText(this.error, "Say why the job is cancelled.");
      return;
    }
    this.confirm.disabled = true;
    try {
      const data = await this.api(CANCEL_JOB, { id: job.id, reason });
      this.onJob(data.cancelJob);
      this.dialog.close();
    } catch (error) {
      setText(this.error, `Not cancelled: ${error.message}`);
    } finally {
      this.confirm.disabled = false;
    }
  }

  async #run(query, variables, field, what) {
    try {
      const data = await this.api(query, variables);
      this.onJob(data[field]);
    } catch (error) {
      this.notify(`${what}: refused. ${error.message}`);
    }
  }
}
