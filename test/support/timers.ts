import { createHook } from 'node:async_hooks';

export interface TimerWatch {
  /** Timers created so far whose creating function's name includes `fn`. */
  created(fn: string): number;
  /** Timers created while watching that have neither fired nor been cleared. */
  readonly live: number;
  stop(): void;
}

/**
 * Watches the timers created by code in `file` (the caller of `setTimeout`),
 * through async_hooks: ref'd or `unref()`'d alike, which
 * `process.getActiveResourcesInfo()` cannot do (it lists only what keeps the
 * process alive). A timer that is neither fired nor cleared stays `live`.
 */
export function watchTimers(file: string): TimerWatch {
  const live = new Set<number>();
  const callers: string[] = [];
  const hook = createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 50;
      const lines = (new Error().stack ?? '').split('\n');
      Error.stackTraceLimit = limit;
      const caller = lines[lines.findIndex((line) => /\bsetTimeout\b/.test(line)) + 1] ?? '';
      if (!caller.includes(file)) return;
      callers.push(caller);
      live.add(id);
    },
    destroy(id) {
      live.delete(id);
    },
  });
  hook.enable();
  return {
    created: (fn) => callers.filter((caller) => caller.includes(fn)).length,
    get live() {
      return live.size;
    },
    stop: () => hook.disable(),
  };
}
