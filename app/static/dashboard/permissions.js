// Which controls a user is shown, following the API's rules (README, "Who sees what"): the
// owner of a job or an admin cancels, retries and reprioritises it; workers manage nothing;
// only admins see who submitted a job and the workers panel. The API decides in the end: a
// refused action's message is shown.

import { TERMINAL_STATUSES } from "./jobs-model.js";

export function isAdmin(me) {
  return me.role === "ADMIN";
}

export function canManage(me, job) {
  if (isAdmin(me)) return true;
  return me.role === "USER" && job.user?.id === me.id;
}

export function canCancel(me, job) {
  return canManage(me, job) && (job.allowedTransitions || []).includes("CANCELLED");
}

export function canRetry(me, job) {
  return canManage(me, job) && (job.allowedTransitions || []).includes("PENDING");
}

export function canSetPriority(me, job) {
  return canManage(me, job) && !TERMINAL_STATUSES.has(job.status);
}
