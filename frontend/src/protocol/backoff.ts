/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped,
 * with "equal jitter" — half fixed, half random — so clients dropped together
 * by a restarting node do not all come back in the same instant, yet none
 * retries much sooner than the schedule says.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseMs = 500,
  capMs = 15_000,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + random() * (ceiling / 2);
}
