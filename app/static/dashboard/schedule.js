// Timing helpers: coalescing bursts of live events into one request.

/**
 * A function that runs `work` once, `delayMs` after the first of a burst of calls (later calls
 * join the run already scheduled, so a steady stream of calls cannot postpone it for ever), and
 * never two runs at once (a call during a run schedules one more run after it).
 */
export function coalesced(work, delayMs) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await work();
    } catch (error) {
      console.warn("refresh failed:", error);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === null) timer = setTimeout(run, delayMs);
  };
  schedule.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    again = false;
  };
  schedule.now = () => {
    if (timer !== null) clearTimeout(timer);
    return run();
  };
  return schedule;
}

/** setInterval that can be stopped with the returned function. */
export function every(ms, work) {
  const id = setInterval(work, ms);
  return () => clearInterval(id);
}
