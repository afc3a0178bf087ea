/**
 * Publishes issued together go to Redis as one script call. An append waits
 * here until the end of the tick it was issued in, or, while a batch is in
 * flight, until that batch is answered; then everything waiting goes as the
 * next batch, in the order it came, up to the batch's bounds. Each append
 * settles on its own: a batch that fails rejects exactly the appends it held.
 *
 * At most two batches are in flight: while Redis runs one, the next is
 * encoded and sent, and what comes meanwhile waits here and grows into a
 * larger batch. A lone publish still costs one round trip, as before
 * batching. Both go on one connection, so Redis runs them in order.
 */
const MAX_IN_FLIGHT = 2;

export interface AppendQueueLimits {
  /** Events in one script call. */
  maxBatchEvents: number;
  /** Bytes (event bodies and data) in one script call; a single larger event still goes, alone. */
  maxBatchBytes: number;
  /** Events waiting behind the batch in flight; past it an append is refused at once. */
  maxQueuedEvents: number;
  /** Bytes waiting behind the batch in flight; past it an append is refused at once. */
  maxQueuedBytes: number;
}

export interface QueuedAppend<T, R> {
  item: T;
  bytes: number;
  resolve(result: R): void;
  reject(error: unknown): void;
}

/** Sends one batch and settles each of its appends (the queue catches what it throws). */
export type SendBatch<T, R> = (batch: QueuedAppend<T, R>[]) => Promise<void>;

export class AppendQueue<T, R> {
  private waiting: QueuedAppend<T, R>[] = [];
  /** Index of the first append in `waiting` not yet sent: the array is compacted per batch, not per append. */
  private head = 0;
  private waitingBytes = 0;
  private inFlight = 0;
  private scheduled = false;
  private batches = 0;
  private largest = 0;

  constructor(
    private readonly send: SendBatch<T, R>,
    private readonly limits: AppendQueueLimits,
    /** Why an append cannot be queued now (the backend is closing), or undefined when it can. */
    private readonly refusal: () => Error | undefined = () => undefined,
  ) {}

  /** Resolves or rejects when the batch holding this append is answered. */
  push(item: T, bytes: number): Promise<R> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    const queued = this.waiting.length - this.head;
    if (queued >= this.limits.maxQueuedEvents || (queued > 0 && this.waitingBytes + bytes > this.limits.maxQueuedBytes)) {
      return Promise.reject(
        new Error(
          `too many appends are waiting for Redis (${queued} events, ${this.waitingBytes} bytes; the bounds are ` +
            `maxQueuedEvents ${this.limits.maxQueuedEvents} and maxQueuedBytes ${this.limits.maxQueuedBytes}); the event was not stored`,
        ),
      );
    }
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, bytes, resolve, reject });
      this.waitingBytes += bytes;
      this.schedule();
    });
  }

  /** Events waiting (not yet sent). */
  get queued(): number {
    return this.waiting.length - this.head;
  }

  stats(): { redisAppendBatches: number; redisLargestBatch: number; redisQueuedAppends: number } {
    return { redisAppendBatches: this.batches, redisLargestBatch: this.largest, redisQueuedAppends: this.queued };
  }

  /** Rejects every append not yet sent (the batch in flight settles on its own). */
  rejectWaiting(error: Error): void {
    const dropped = this.waiting.slice(this.head);
    this.waiting = [];
    this.head = 0;
    this.waitingBytes = 0;
    for (const append of dropped) append.reject(error);
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= MAX_IN_FLIGHT) return;
    this.scheduled = true;
    // After every promise job of this tick: publishes issued together, whatever
    // they awaited on the way here (the hub awaits before appending), share a batch.
    process.nextTick(() => {
      this.scheduled = false;
      this.next();
    });
  }

  private next(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.head < this.waiting.length) this.sendOne();
  }

  private sendOne(): void {
    const batch = this.take();
    this.inFlight++;
    this.batches++;
    if (batch.length > this.largest) this.largest = batch.length;
    let sent: Promise<void>;
    try {
      sent = this.send(batch);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent
      .catch((error) => {
        // send() settles each append itself; this is a bug's last resort, never a hang.
        for (const append of batch) append.reject(error);
      })
      .finally(() => {
        this.inFlight--;
        this.next();
      });
  }

  private take(): QueuedAppend<T, R>[] {
    const { maxBatchEvents, maxBatchBytes } = this.limits;
    let end = this.head;
    let bytes = 0;
    while (end < this.waiting.length && end - this.head < maxBatchEvents) {
      const next = (this.waiting[end] as QueuedAppend<T, R>).bytes;
      if (end > this.head && bytes + next > maxBatchBytes) break;
      bytes += next;
      end++;
    }
    const batch = this.waiting.slice(this.head, end);
    // What was sent is no longer held here (its promise holds it until it settles).
    this.waiting.fill(undefined as unknown as QueuedAppend<T, R>, this.head, end);
    this.waitingBytes -= bytes;
    this.head = end;
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.waiting.length) {
      // Under steady load the queue never empties: drop the sent slots once they are half of it.
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    return batch;
  }
}
