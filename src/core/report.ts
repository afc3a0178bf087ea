/**
 * Hands a failure that must not stop anything to the user's `onError`, or to
 * `console.error` as `[ssecast] <what>:` when there is none. An `onError`
 * that throws is logged with the original failure, never rethrown.
 */
export function reportFailure(onError: ((error: unknown) => void) | undefined, what: string, error: unknown): void {
  try {
    if (onError) onError(error);
    else console.error(`[ssecast] ${what}:`, error);
  } catch (secondary) {
    console.error('[ssecast] onError threw while reporting:', secondary, 'original:', error);
  }
}
