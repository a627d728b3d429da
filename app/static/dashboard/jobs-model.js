// The jobs the table shows, with no DOM: a job list read from the API and the live stream's
// changes merged so that an older state never overwrites a newer one (each change raises the
// job's sequence), whatever order the query and the stream answer in.

import { instantKey } from "./time.js";

export const STATUSES = [
  "PENDING",
  "VALIDATING",
  "QUEUED",
  "RENDERING",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
];
export const TERMINAL_STATUSES = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

export function isNotOlder(candidate, current) {
  return candidate.sequence >= current.sequence;
}

export class JobsModel {
  /** onChange({ upserted: [job], removed: [id] }) after every merge that changed something. */
  constructor(onChange = () => {}) {
    this.onChange = onChange;
    this.jobs = new Map();
    this.touchedAt = new Map(); // job id -> performance.now() of its last live change
    this.filter = { statuses: null, search: "" };
    this.totalCount = null;
  }

  /** `statuses`: the statuses wanted, or null for all; `search`: part of a name, any case. */
  setFilter(filter) {
    this.filter = { statuses: filter.statuses, search: filter.search.trim() };
  }

  /** The filter as the jobs query takes it. */
  queryFilter() {
    const filter = {};
    if (this.filter.statuses) filter.status = this.filter.statuses;
    if (this.filter.search) filter.search = this.filter.search;
    return filter;
  }

  matches(job) {
    const { statuses, search } = this.filter;
    if (statuses && !statuses.includes(job.status)) return false;
    if (!search) return true;
    const wanted = search.toLowerCase();
    return [job.projectName, job.outputName].some((name) =>
      String(name || "").toLowerCase().includes(wanted),
    );
  }

  get(id) {
    return this.jobs.get(id);
  }

  /** Newest first, as the jobs query lists them. */
  ordered() {
    return [...this.jobs.values()].sort(
      (a, b) => instantKey(b.createdAt) - instantKey(a.createdAt) || (a.id < b.id ? 1 : -1),
    );
  }

  /** A job as a change (live event, mutation answer) left it. */
  applyChange(job) {
    this.touchedAt.set(job.id, performance.now());
    const current = this.jobs.get(job.id);
    if (current && !isNotOlder(job, current)) return;
    if (this.matches(job)) {
      this.jobs.set(job.id, job);
      this.onChange({ upserted: [job], removed: [] });
    } else if (current) {
      this.jobs.delete(job.id);
      this.onChange({ upserted: [], removed: [job.id] });
    }
  }

  /**
   * The answer of a jobs query sent at `sentAt` (performance.now()): it becomes the list, except
   * that a job changed live since is kept as the change left it, and a job the answer lacks
   * stays if a change arrived after the query was sent (it may be newer than the answer).
   */
  applyList(jobs, totalCount, sentAt) {
    const upserted = [];
    const removed = [];
    const listed = new Set();
    for (const job of jobs) {
      if (!this.matches(job)) continue; // read under a filter changed since
      listed.add(job.id);
      const current = this.jobs.get(job.id);
      if (current && !isNotOlder(job, current)) {
        if (!this.matches(current)) {
          this.jobs.delete(job.id);
          removed.push(job.id);
        }
        continue;
      }
      this.jobs.set(job.id, job);
      upserted.push(job);
    }
    for (const [id, job] of this.jobs) {
      if (listed.has(id)) continue;
      const changedSince = (this.touchedAt.get(id) ?? -Infinity) > sentAt;
      if (!changedSince || !this.matches(job)) {
        this.jobs.delete(id);
        removed.push(id);
      }
    }
    this.totalCount = totalCount;
    this.onChange({ upserted, removed });
  }

  clear() {
    const removed = [...this.jobs.keys()];
    this.jobs.clear();
    this.touchedAt.clear();
    this.totalCount = null;
    this.onChange({ upserted: [], removed });
  }
}
