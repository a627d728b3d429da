// The jobEvents stream, followed without a gap: the cursor of the last event handled is kept,
// and every (re)subscription resumes after it. Events are handled once per (job, sequence).
// When there is nothing to resume from, or the server refuses the cursor (older than its
// history), `onResync` reads the jobs again from the query.

import { JOB_EVENTS } from "./queries.js";

const RESUBSCRIBE_DELAY_MS = 1_000;
const MAX_REMEMBERED_JOBS = 20_000;

export class LiveFeed {
  /** onEvent(event) once per new event; onResync(why) when the jobs must be read again;
   * onError(message) for a stream refused for another reason (it is retried). */
  constructor({ connection, onEvent, onResync, onError = () => {} }) {
    this.connection = connection;
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onError = onError;
    this.cursor = null;
    this.sequences = new Map(); // job id -> the last sequence handled
    this.subscription = null;
    this.retryTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#subscribe();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  /** The connection was (re)acknowledged: without a cursor, what happened meanwhile is unknown. */
  connected({ reconnected }) {
    if (reconnected && this.cursor === null) this.onResync("reconnected");
  }

  /** Whether this event is new; remembers it. */
  isNew(event) {
    const jobId = event.job.id;
    const last = this.sequences.get(jobId);
    if (last !== undefined && event.sequence <= last) return false;
    this.sequences.delete(jobId); // re-inserted last: the oldest entries are pruned first
    this.sequences.set(jobId, event.sequence);
    if (this.sequences.size > MAX_REMEMBERED_JOBS) {
      this.sequences.delete(this.sequences.keys().next().value);
    }
    return true;
  }

  #subscribe() {
    if (this.stopped) return;
    this.subscription = this.connection.subscribe({
      query: JOB_EVENTS,
      variables: () => (this.cursor === null ? {} : { after: this.cursor }),
      next: (data) => this.#handle(data?.jobEvents),
      error: (errors) => this.#refused(errors),
      complete: () => this.#later(() => this.#subscribe()),
    });
  }

  #handle(event) {
    if (!event || !this.isNew(event)) return; // a repeat: its cursor was kept (or a later one)
    if (event.cursor) this.cursor = event.cursor;
    this.onEvent(event);
  }

  #refused(errors) {
    const cursorRefused = errors.some(
      (error) =>
        error?.extensions?.code === "BAD_USER_INPUT" &&
        (error.extensions.fields || []).some((field) => field.field === "after"),
    );
    if (cursorRefused && this.cursor !== null) {
      this.cursor = null;
      this.#subscribe(); // first, so that no change falls between the read and the stream
      this.onResync("cursor refused");
      return;
    }
    this.onError(errors.map((error) => error?.message || "error").join(" "));
    this.#later(() => this.#subscribe());
  }

  #later(work) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(work, RESUBSCRIBE_DELAY_MS);
  }
}
