/** How long to wait between reconnect attempts. */
export interface BackoffOptions {
  /** The cap of the first attempt's delay. @defaultValue 1000 */
  initialMs?: number;
  /** No delay is longer than this (unless the server's `retry:` or `Retry-After` asks for more). @defaultValue 30000 */
  maxMs?: number;
  /** How much the cap grows per failed attempt. @defaultValue 2 */
  factor?: number;
  /**
   * The backoff starts over once a connection proves healthy: it delivers an
   * event or an `id:`, or bytes (heartbeats) keep arriving on it for this
   * long. A 200 alone does not count, so a server that accepts and drops at
   * once, or a proxy that answers and then stays silent, is not retried at
   * the first delay forever.
   * @defaultValue 5000
   */
  resetAfterMs?: number;
}

export type Backoff = Required<BackoffOptions>;

export function checkBackoff(options: BackoffOptions = {}): Backoff {
  const backoff = {
    initialMs: options.initialMs ?? 1000,
    maxMs: options.maxMs ?? 30_000,
    factor: options.factor ?? 2,
    resetAfterMs: options.resetAfterMs ?? 5000,
  };
  for (const [name, value] of Object.entries(backoff)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new TypeError(`backoff.${name} must be a non-negative finite number, got ${String(value)}`);
    }
  }
  if (backoff.factor < 1) throw new TypeError(`backoff.factor must be at least 1, got ${backoff.factor}`);
  return backoff;
}

/**
 * Exponential backoff with full jitter: a uniform draw in [0, cap), where the
 * cap grows by `factor` per failed attempt up to `maxMs`; never less than
 * `floorMs`, the server's `retry:` hint. Full jitter spreads a herd of
 * clients that failed together; the floor keeps a server's request for
 * patience.
 *
 * @param attempt failed attempts since the last healthy connection (0 for the first retry)
 */
export function backoffDelay(
  attempt: number,
  backoff: Pick<Backoff, 'initialMs' | 'maxMs' | 'factor'>,
  floorMs = 0,
  random: () => number = Math.random,
): number {
  const cap = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** attempt);
  return Math.max(floorMs, Math.floor(random() * cap));
}
