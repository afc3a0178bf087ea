import type { Redis } from 'ioredis';
import { parseFanout, type FanoutEntry, type RawEntry } from './entries.js';

export interface FanoutHandlers {
  /** An entry that continues the sequence, in order. */
  event(entry: FanoutEntry): void;
  /**
   * The sequence did not continue: a new epoch (Redis lost its data), numbers
   * reused (Redis went back to an older snapshot), or a gap (the fan-out
   * stream was trimmed past this instance's position while it was away).
   */
  discontinuity(kind: 'epoch' | 'rollback' | 'gap', entry: FanoutEntry): void;
  error(error: unknown): void;
}

/** Where an instance stands in the shared history. */
export interface Position {
  epoch: string | null;
  seq: number;
}

const BATCH = 1000;

/**
 * One instance's view of the fan-out stream: blocking reads from the last
 * position on a connection of its own, so a brief loss of Redis loses
 * nothing the stream still holds. Every check that the sequence continues
 * lives here; what to do when it does not is the backend's call.
 */
export class FanoutReader {
  /** The last entry seen; null until the first position is read. */
  position: Position | null = null;
  private lastId = '0-0';
  private stopped = false;
  private recheck = false;
  private wake: (() => void) | undefined;
  private readonly positioned: Promise<void>;
  private resolvePositioned!: () => void;

  constructor(
    private readonly connection: Redis,
    private readonly key: string,
    private readonly metaKey: string,
    private readonly blockMs: number,
    private readonly handlers: FanoutHandlers,
  ) {
    this.positioned = new Promise((resolve) => (this.resolvePositioned = resolve));
    // After any reconnect, Redis may be a different history (restarted empty,
    // or restored from a snapshot): check the position before reading on.
    connection.on('ready', () => (this.recheck = true));
  }

  /** Resolves once the reader knows where it starts; nothing published before that is missed. */
  whenPositioned(): Promise<void> {
    return this.positioned;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    let backoff = 50;
    while (!this.stopped) {
      try {
        if (!this.position) await this.readPosition();
        else if (this.recheck) await this.checkPosition();
        const reply = (await this.connection.xread('COUNT', BATCH, 'BLOCK', this.blockMs, 'STREAMS', this.key, this.lastId)) as
          | [string, RawEntry[]][]
          | null;
        backoff = 50;
        if (reply && !this.stopped) this.consume(reply[0]?.[1] ?? []);
      } catch (error) {
        if (this.stopped) return;
        this.handlers.error(error);
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  private async readPosition(): Promise<void> {
    const results = await this.connection.multi().hmget(this.metaKey, 'epoch', 'seq').xrevrange(this.key, '+', '-', 'COUNT', 1).exec();
    const [metaResult, tailResult] = results ?? [];
    if (!metaResult || !tailResult || metaResult[0] || tailResult[0])
      throw metaResult?.[0] ?? tailResult?.[0] ?? new Error('reading the fan-out position failed');
    const [epoch, seq] = metaResult[1] as [string | null, string | null];
    const tail = tailResult[1] as RawEntry[];
    this.position = { epoch, seq: Number(seq ?? 0) };
    this.lastId = tail[0]?.[0] ?? '0-0';
    this.recheck = false;
    this.resolvePositioned();
  }

  private async checkPosition(): Promise<void> {
    const tail = (await this.connection.xrevrange(this.key, '+', '-', 'COUNT', 1)) as RawEntry[];
    const tailId = tail[0]?.[0];
    // The stream is gone or shorter than what was read: it was rebuilt, so
    // read it from what it has now. Sequence checks judge what comes next.
    if (!tailId) this.lastId = '0-0';
    else if (compareIds(tailId, this.lastId) < 0) this.lastId = tailId;
    this.recheck = false;
  }

  private consume(entries: RawEntry[]): void {
    const position = this.position as Position;
    for (const raw of entries) {
      this.lastId = raw[0];
      const entry = parseFanout(raw);
      if (entry.epoch !== position.epoch) {
        const hadHistory = position.epoch !== null;
        position.epoch = entry.epoch;
        position.seq = entry.seq;
        if (hadHistory || entry.seq !== 1) this.handlers.discontinuity('epoch', entry);
      } else if (entry.seq <= position.seq) {
        position.seq = entry.seq;
        this.handlers.discontinuity('rollback', entry);
        continue;
      } else if (entry.seq !== position.seq + 1) {
        position.seq = entry.seq;
        this.handlers.discontinuity('gap', entry);
      } else position.seq = entry.seq;
      this.handlers.event(entry);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Orders Redis stream ids (`<ms>-<n>`) numerically. */
export function compareIds(a: string, b: string): number {
  const [am = 0n, an = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bn = 0n] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : an === bn ? 0 : an < bn ? -1 : 1;
}
