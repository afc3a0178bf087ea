/** Something the scheduler keeps alive: it knows when it last wrote. */
export interface HeartbeatTarget {
  /** `Date.now()` of the last write of any kind to this connection. */
  lastWriteAt: number;
  /** Write a heartbeat; called only when idle for at least the interval. */
  heartbeat(): void;
}

/**
 * One timer for every connection. It wakes four times per interval and
 * writes only to connections that have been silent for a whole interval, so
 * a busy stream costs nothing and a quiet one gets a heartbeat between 1 and
 * 1.25 intervals after its last write. No timer exists while no connection
 * is registered, and the timer never keeps the process alive.
 */
export class HeartbeatScheduler {
  readonly intervalMs: number;
  private readonly targets = new Set<HeartbeatTarget>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly now: () => number;

  /**
   * @param intervalMs idle time after which a connection gets a heartbeat.
   * @defaultValue intervalMs 30000
   */
  constructor(intervalMs = 30_000, options: { now?: () => number } = {}) {
    if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) {
      throw new TypeError(`heartbeat interval must be a positive integer of milliseconds, got ${String(intervalMs)}`);
    }
    this.intervalMs = intervalMs;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.targets.size;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  add(target: HeartbeatTarget): void {
    this.targets.add(target);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), Math.max(1, Math.floor(this.intervalMs / 4)));
      this.timer.unref?.();
    }
  }

  delete(target: HeartbeatTarget): void {
    this.targets.delete(target);
    if (this.targets.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Visits every target once; exposed so a host can drive it from its own clock. */
  tick(): void {
    const idleSince = this.now() - this.intervalMs;
    for (const target of this.targets) {
      if (target.lastWriteAt > idleSince) continue;
      try {
        target.heartbeat();
      } catch {
        // A target that cannot write is closing; its own close path removes it.
        this.targets.delete(target);
      }
    }
    if (this.targets.size === 0) this.stop();
  }
}
