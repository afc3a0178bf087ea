/** Something with writes queued for the end of the tick. */
export interface Flushable {
  flush(): void;
}

/**
 * Runs the flushes of one tick together: one `setImmediate` serves every
 * target with something queued, whatever number of events each received.
 * Each hub owns one (`hub.flushScheduler()`), so two hubs in a process share
 * no mutable state. `clock` is `Date.now()` read once for the flush in
 * progress, and `tickShared` is scratch space for what the targets of one
 * tick share (the writer's open frame batch); both are cleared after it.
 */
export class FlushScheduler {
  /** `Date.now()` of the flush in progress; 0 outside one. */
  clock = 0;
  /** What the targets of this tick share; cleared when the tick's flush ends. */
  tickShared: unknown = undefined;
  private readonly dirty = new Set<Flushable>();
  private scheduled = false;
  private readonly onError: (error: unknown) => void;

  /** @param onError hears of a target whose flush threw; the others are flushed regardless. */
  constructor(onError: (error: unknown) => void = (error) => console.error('[ssecast] a flush failed:', error)) {
    this.onError = onError;
  }

  /** Targets waiting for the end of the tick. */
  get size(): number {
    return this.dirty.size;
  }

  schedule(target: Flushable): void {
    this.dirty.add(target);
    if (this.scheduled) return;
    this.scheduled = true;
    nextTurn(() => this.flushNow());
  }

  /** Forgets a target (it closed): nothing of it stays queued here. */
  cancel(target: Flushable): void {
    this.dirty.delete(target);
  }

  /** Flushes every waiting target now; what the timer runs, exposed for hosts and tests. */
  flushNow(): void {
    this.scheduled = false;
    const targets = [...this.dirty];
    this.dirty.clear();
    // One clock reading for the whole flush: heartbeats need milliseconds, not a call per socket.
    this.clock = Date.now();
    for (const target of targets) {
      try {
        target.flush();
      } catch (error) {
        this.onError(error);
      }
    }
    this.clock = 0;
    this.tickShared = undefined;
  }
}

// After the I/O of this turn: setImmediate where there is one (Node, Bun, Deno); a runtime with
// only Web APIs (an edge worker) has setTimeout.
const nextTurn: (run: () => void) => unknown =
  typeof setImmediate === 'function' ? (run) => setImmediate(run) : (run) => setTimeout(run, 0);
