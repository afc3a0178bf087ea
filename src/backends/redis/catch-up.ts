import type { EventCursor } from '../../core/ids.js';
import type { Position } from './fanout-reader.js';

interface Waiter {
  target: EventCursor;
  resolve(reached: boolean): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Who waits for this instance's fan-out reader to reach a point of the history: a subscription
 * about to go live (its history was read from Redis, which the reader may not have caught up
 * with) and `hub.close()`'s flush. Kept in the order of their targets, so each entry the reader
 * passes costs a comparison, and each wait is bounded.
 */
export class CatchUp {
  private readonly waiting: Waiter[] = [];
  private epoch: string | null | undefined = undefined;

  constructor(private readonly position: () => Position | null) {}

  /** True at once when the reader is there; otherwise waits up to `ms`, and false if it did not get there. */
  wait(target: EventCursor, ms: number): boolean | Promise<boolean> {
    if (this.reached(target)) return true;
    return new Promise((resolve) => {
      const waiter: Waiter = { target, resolve, timer: undefined };
      waiter.timer = setTimeout(() => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(false);
      }, ms);
      waiter.timer.unref?.();
      // Targets mostly come in rising order (later reads see more): insert from the end.
      let at = this.waiting.length;
      while (at > 0 && (this.waiting[at - 1] as Waiter).target.seq > target.seq) at--;
      this.waiting.splice(at, 0, waiter);
    });
  }

  /** The reader moved (an entry, a new start, a discontinuity): releases those it reached. */
  moved(): void {
    if (this.waiting.length === 0) return;
    const epoch = this.position()?.epoch;
    if (epoch !== this.epoch) {
      // Another epoch orders nothing against the old one's numbers: look at every waiter.
      this.epoch = epoch;
      for (const waiter of [...this.waiting]) if (this.reached(waiter.target)) this.release(waiter, true);
      return;
    }
    while (this.waiting.length > 0 && this.reached((this.waiting[0] as Waiter).target)) this.release(this.waiting[0] as Waiter, true);
  }

  /** The backend is closing: nobody waits for a reader that stops. */
  stop(): void {
    for (const waiter of [...this.waiting]) this.release(waiter, true);
  }

  private reached(target: EventCursor): boolean {
    const position = this.position();
    if (!position || position.epoch === null) return false;
    // In another epoch the reader meets a discontinuity, which ends the subscriptions waiting.
    return position.epoch !== target.epoch || position.seq >= target.seq;
  }

  private release(waiter: Waiter, reached: boolean): void {
    const at = this.waiting.indexOf(waiter);
    if (at >= 0) this.waiting.splice(at, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(reached);
  }
}
