// How long to wait before reconnecting: exponential, capped, with jitter so that a room full of
// wall screens does not reconnect in one burst when the server comes back.

export const FIRST_DELAY_MS = 500;
export const MAX_DELAY_MS = 10_000;

/** The wait before attempt `attempt` (0 for the first retry): half the ceiling, plus up to half
 * again at random; the ceiling doubles per attempt up to MAX_DELAY_MS. */
export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
