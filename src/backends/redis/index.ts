import type { Redis } from 'ioredis';
import {
  bySeq,
  type Backend,
  type BackendContext,
  type EventDraft,
  type ReadQuery,
  type ReadResult,
  type StoredEvent,
} from '../../core/backend.js';
import { newEpoch, type EventCursor } from '../../core/ids.js';
import type { ResyncReason } from '../../core/types.js';
import { positiveInt } from '../../core/validate.js';
import { encodeData, fromFanout, fromHistory, fromState, parseFanout, storedEvent, type RawEntry } from './entries.js';
import { AppendQueue, type QueuedAppend } from './append-queue.js';
import { duplicateConnection, type RedisSource } from './connections.js';
import { CatchUp } from './catch-up.js';
import { FanoutReader, type Position } from './fanout-reader.js';
import { APPEND, ENSURE_EPOCH, READ, READ_ALL, SWEEP } from './lua.js';

export interface RedisBackendOptions {
  /**
   * An ioredis client. The backend opens two connections of its own from it
   * (`duplicate()`: one for commands, one for blocking fan-out reads) and
   * closes them on `hub.close()`; this client is left as it is. A `Cluster`
   * works too: every key of a hub shares one hash tag, so one shard holds it.
   */
  redis: RedisSource;
  /** Prefix of every key. Hubs with different prefixes share nothing. @defaultValue 'ssecast' */
  prefix?: string;
  /** Events kept per stream for replay and resume (the stream's tail). @defaultValue 100 */
  historySize?: number;
  /**
   * Keys whose latest event is kept per stream (see `publish`'s `key`), on
   * top of the tail. Past it the least recently updated key goes, and a
   * resume from before its latest event resyncs. @defaultValue 1000
   */
  maxKeysPerStream?: number;
  /**
   * Entries kept in the shared fan-out stream (approximately: trimmed with `~`).
   * An instance cut off from Redis for longer than this many events takes
   * loses its place; its subscribers are ended and resume from history.
   * @defaultValue 10000
   */
  fanoutSize?: number;
  /** Streams whose history is kept; past it the least recently used goes. @defaultValue 10000 */
  maxStreams?: number;
  /** History of a stream nobody published to, read or followed for this long is dropped. @defaultValue 3600000 (1 h) */
  streamIdleTtlMs?: number;
  /** A command Redis does not answer within this time fails (and `publish` rejects). @defaultValue 2000 */
  commandTimeoutMs?: number;
  /**
   * Publishes issued in the same tick, or while a batch is in flight, go to
   * Redis as one script call of at most this many events (each still gets its
   * own id, in publish order, and settles on its own). Redis runs nothing else
   * while the script runs: 11-16 µs per event measured on a busy 2-core VM. @defaultValue 500
   */
  maxBatchEvents?: number;
  /** Bytes (data and wire body) of one batch; a single larger event still goes, alone. @defaultValue 1048576 (1 MiB) */
  maxBatchBytes?: number;
  /**
   * Events waiting behind the batch in flight. Past it (or past
   * `maxQueuedBytes`) `publish` rejects at once with `ERR_BACKEND`, and the
   * event is not stored. @defaultValue 50000
   */
  maxQueuedEvents?: number;
  /** Bytes waiting behind the batch in flight (see `maxQueuedEvents`). @defaultValue 33554432 (32 MiB) */
  maxQueuedBytes?: number;
}

/** An event on its way to Redis, its data already serialised for the script. */
interface EncodedDraft {
  draft: EventDraft;
  kind: string;
  text: string;
}

interface Scripts {
  ssecastAppend(...args: (string | number)[]): Promise<[epoch: string, seq: number, timestamp: string, evictedKeys: number]>;
  ssecastRead(...args: (string | number)[]): Promise<ReadReply>;
  ssecastReadAll(...args: (string | number)[]): Promise<ReadReply>;
  ssecastSweep(...args: (string | number)[]): Promise<number>;
  ssecastEnsureEpoch(...args: (string | number)[]): Promise<string>;
}

type HistoryReply = [trim: string, exists: number, entries: RawEntry[], state: (string | null)[]];
type ReadReply = [epoch: string, seq: string, evictedThrough: string, evictedAt: string, ...rest: unknown[]];

const BLOCK_MS = 5000;
const SWEEP_LIMIT = 500;

/**
 * History and fan-out on Redis Streams, for hubs on several instances.
 *
 * One script per publish takes the next number of one global sequence and
 * appends the event to its stream's history and to a shared fan-out stream;
 * every instance follows the fan-out stream with blocking reads and delivers
 * in sequence order. A client may therefore resume on any instance with the
 * Last-Event-ID another one gave it. Ids keep the `<epoch>.<seq>` scheme with
 * the epoch stored in Redis: a Redis that lost its data starts a new epoch,
 * and older ids get `resync`, never a replay of the wrong events.
 *
 * Event timestamps are Redis's clock, taken by that script, not the publishing
 * instance's: they follow sequence order, so a `since` read is exact however
 * far apart the instances' clocks are. `since` itself is compared with
 * Redis's clock.
 *
 * @example
 * import { Redis } from 'ioredis';
 * const hub = new EventManager({ backend: new RedisBackend({ redis: new Redis(process.env.REDIS_URL) }) });
 */
export class RedisBackend implements Backend {
  readonly prefix: string;
  readonly historySize: number;
  readonly maxKeysPerStream: number;
  readonly fanoutSize: number;
  readonly maxStreams: number;
  readonly streamIdleTtlMs: number;
  readonly commandTimeoutMs: number;
  private readonly source: RedisSource;
  private readonly connectionTag: string;
  private readonly keys: {
    base: string;
    meta: string;
    fanout: string;
    index: string;
    trim: string;
    history: string;
    state: string;
    stateIndex: string;
    dropped: string;
  };
  private commands: (Redis & Scripts) | undefined;
  private reader: FanoutReader | undefined;
  private readonly catchUp = new CatchUp(() => this.reader?.position ?? null);
  private readerConnection: Redis | undefined;
  private context: BackendContext | undefined;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** The newest point of the history this instance has seen: what a rollback is judged against. */
  private known: Position = { epoch: null, seq: 0 };
  /** The last event this instance appended: what `flush` waits for. */
  private appended: { epoch: string; seq: number } | undefined;
  private closing = false;
  /** Until both connections were ready once, callers wait (startup); after that they fail fast. */
  private everReady = false;
  private commandsReady: Promise<unknown> = Promise.resolve();
  private lastError: unknown;
  private counters = { redisInterruptions: 0, redisErrors: 0, redisSweptStreams: 0, redisEvictedKeys: 0 };
  private readonly appends: AppendQueue<EncodedDraft, StoredEvent>;

  constructor(options: RedisBackendOptions) {
    if (!options || typeof options.redis?.duplicate !== 'function') {
      throw new TypeError('RedisBackend needs { redis }: an ioredis client, e.g. new Redis(process.env.REDIS_URL)');
    }
    this.source = options.redis;
    this.prefix = options.prefix ?? 'ssecast';
    if (typeof this.prefix !== 'string' || !/^[^{}]{1,64}$/.test(this.prefix)) {
      throw new TypeError(`prefix must be 1 to 64 characters without braces, got ${JSON.stringify(this.prefix)}`);
    }
    this.historySize = positiveInt(options.historySize ?? 100, 'historySize');
    this.maxKeysPerStream = positiveInt(options.maxKeysPerStream ?? 1000, 'maxKeysPerStream');
    this.fanoutSize = positiveInt(options.fanoutSize ?? 10_000, 'fanoutSize');
    this.maxStreams = positiveInt(options.maxStreams ?? 10_000, 'maxStreams');
    this.streamIdleTtlMs = positiveInt(options.streamIdleTtlMs ?? 60 * 60 * 1000, 'streamIdleTtlMs');
    this.commandTimeoutMs = positiveInt(options.commandTimeoutMs ?? 2000, 'commandTimeoutMs');
    this.appends = new AppendQueue<EncodedDraft, StoredEvent>(
      (batch) => this.appendBatch(batch),
      {
        maxBatchEvents: positiveInt(options.maxBatchEvents ?? 500, 'maxBatchEvents'),
        maxBatchBytes: positiveInt(options.maxBatchBytes ?? 2 ** 20, 'maxBatchBytes'),
        maxQueuedEvents: positiveInt(options.maxQueuedEvents ?? 50_000, 'maxQueuedEvents'),
        maxQueuedBytes: positiveInt(options.maxQueuedBytes ?? 32 * 2 ** 20, 'maxQueuedBytes'),
      },
      () => (this.closing ? new Error('RedisBackend is closed; cannot store the event') : undefined),
    );
    // One hash tag: a Redis Cluster keeps every key of a hub on one slot, which the scripts need.
    const tag = `{${this.prefix}}`;
    // CLIENT LIST shows which hub a connection belongs to; Redis refuses spaces and newlines in a name.
    this.connectionTag = this.prefix.replace(/[^\w.:-]/g, '_');
    this.keys = {
      base: `${tag}:`,
      meta: `${tag}:meta`,
      fanout: `${tag}:fanout`,
      index: `${tag}:index`,
      trim: `${tag}:trim`,
      history: `${tag}:s:`,
      state: `${tag}:k:`,
      stateIndex: `${tag}:z:`,
      dropped: `${tag}:dropped`,
    };
  }

  async open(context: BackendContext): Promise<void> {
    this.context = context;
    // Commands fail fast while Redis is away: a publish must reject, not wait
    // in a queue, and a script is never sent twice.
    const commands = duplicateConnection(this.source, {
      connectionName: `ssecast:${this.connectionTag}`,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.commandTimeoutMs,
    }) as Redis & Scripts;
    // Its key count varies (three keys per stream of the batch), so each call passes it first.
    commands.defineCommand('ssecastAppend', { lua: APPEND });
    commands.defineCommand('ssecastRead', { lua: READ });
    commands.defineCommand('ssecastReadAll', { numberOfKeys: 4, lua: READ_ALL });
    commands.defineCommand('ssecastSweep', { numberOfKeys: 4, lua: SWEEP });
    commands.defineCommand('ssecastEnsureEpoch', { numberOfKeys: 4, lua: ENSURE_EPOCH });
    commands.on('error', (error) => this.noteError(error));
    this.commandsReady = new Promise((resolve) => commands.once('ready', resolve));
    this.commands = commands;
    // The fan-out reader waits out an outage and carries on from its position.
    const readerConnection = duplicateConnection(this.source, {
      connectionName: `ssecast-fanout:${this.connectionTag}`,
      enableOfflineQueue: true,
      // A read cut off by a reconnect is sent again: reading from the same position is harmless,
      // and ioredis would otherwise leave it unsettled for good.
      autoResendUnfulfilledCommands: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
      // A reply (possibly empty) comes at least every BLOCK_MS; silence past that is a dead socket.
      socketTimeout: BLOCK_MS * 2,
    });
    readerConnection.on('error', (error) => this.noteError(error));
    this.readerConnection = readerConnection;
    this.reader = new FanoutReader(readerConnection, this.keys.fanout, this.keys.meta, BLOCK_MS, {
      event: (entry) => {
        this.see(entry.epoch, entry.seq);
        // Every instance sees every event; decoding waits until someone here wants it.
        if (context.wants(entry.stream)) context.deliver(fromFanout(entry));
        this.catchUp.moved();
      },
      discontinuity: (kind, entry) => {
        this.discontinuity(kind, entry.epoch);
        this.catchUp.moved();
      },
      error: (error) => this.noteError(error),
    });
    void this.reader.whenPositioned().then(() => {
      const position = this.reader?.position;
      if (position) this.see(position.epoch, position.seq);
      this.catchUp.moved();
    });
    this.reader.start();
    this.sweepTimer = setInterval(
      () => void this.sweep().catch((error) => this.noteError(error)),
      Math.min(this.streamIdleTtlMs / 2, 30_000),
    );
    this.sweepTimer.unref?.();
    // Until the reader knows where it starts, an event published now reaches no subscriber here.
    // The hub counts as open (and the HTTP layer starts a response) once it does, or once a
    // command would have timed out: Redis is unreachable, and reads and publishes say so themselves.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([this.reader.whenPositioned(), this.commandsReady]),
      new Promise((resolve) => (timer = setTimeout(resolve, this.commandTimeoutMs))),
    ]);
    clearTimeout(timer);
  }

  append(draft: EventDraft): Promise<StoredEvent> {
    const [kind, text] = encodeData(draft.data);
    // What the event adds to a script call, in UTF-8 bytes: its data twice (parsed and on the wire), and its names.
    const bytes =
      Buffer.byteLength(text) +
      Buffer.byteLength(draft.body) +
      Buffer.byteLength(draft.stream) +
      draft.type.length +
      (draft.key === undefined ? 0 : Buffer.byteLength(draft.key));
    return this.appends.push({ draft, kind, text }, bytes);
  }

  /** One script call for a batch of appends (see append-queue.ts); each settles on its own. */
  private async appendBatch(batch: QueuedAppend<EncodedDraft, StoredEvent>[]): Promise<void> {
    let commands: Redis & Scripts;
    try {
      commands = await this.ready('store the event');
    } catch (error) {
      // Redis is unreachable: what waits behind this batch would only wait as long again, each
      // batch in turn. Nothing of these was sent; all fail now, with the same error.
      for (const append of batch) append.reject(error);
      this.appends.rejectWaiting(error as Error);
      return;
    }
    const k = this.keys;
    const slots = new Map<string, number>();
    const streamKeys: string[] = [];
    const names: string[] = [];
    const events: (string | number)[] = [];
    for (const { item } of batch) {
      const { draft, kind, text } = item;
      let slot = slots.get(draft.stream);
      if (slot === undefined) {
        slot = slots.size + 1;
        slots.set(draft.stream, slot);
        names.push(draft.stream);
        streamKeys.push(k.history + draft.stream, k.state + draft.stream, k.stateIndex + draft.stream);
      }
      // draft.timestamp is this instance's clock and is not sent: the event's time is Redis's
      // (see lua.ts), so `since` reads do not depend on how far apart the instances' clocks are.
      events.push(slot, draft.type, kind, text, draft.body, draft.key ?? '');
    }
    let reply: [string, number, string, number];
    try {
      reply = await commands.ssecastAppend(
        5 + streamKeys.length,
        k.meta,
        k.fanout,
        k.index,
        k.trim,
        k.dropped,
        ...streamKeys,
        k.base,
        newEpoch(),
        this.known.epoch ?? '',
        this.known.seq,
        this.historySize,
        this.fanoutSize,
        this.maxStreams,
        this.maxKeysPerStream,
        names.length,
        ...names,
        ...events,
      );
    } catch (error) {
      const failure = this.failure(
        error,
        batch.length === 1
          ? 'the event may or may not have been stored'
          : `the event may or may not have been stored (it went to Redis in a batch of ${batch.length})`,
      );
      for (const append of batch) append.reject(failure);
      return;
    }
    const [epoch, first, timestamp, evictedKeys] = reply;
    const firstSeq = Number(first);
    const lastSeq = firstSeq + batch.length - 1;
    this.see(epoch, lastSeq);
    this.appended = { epoch, seq: lastSeq };
    this.counters.redisEvictedKeys += evictedKeys;
    for (let i = 0; i < batch.length; i++) {
      const append = batch[i] as QueuedAppend<EncodedDraft, StoredEvent>;
      const { draft } = append.item;
      append.resolve(storedEvent(epoch, firstSeq + i, draft.stream, draft.type, timestamp, draft.data, draft.body, draft.key));
    }
  }

  async read(query: ReadQuery): Promise<ReadResult> {
    const { after, streams, recent, since } = query;
    if (after) {
      const [reply, events] = await this.readMode(streams, 'after', after.seq, 0);
      const resync = resyncReason(after, reply, events);
      if (!resync) return { events: events as StoredEvent[], position: positionOf(reply) };
      const [freshReply, fresh, , gapThrough] = await this.readMode(streams, 'recent', 0, recent);
      return { events: fresh as StoredEvent[], resync, position: positionOf(freshReply), gapThrough };
    }
    if (since !== undefined) {
      const [reply, found, complete, gapThrough] = await this.readMode(streams, 'since', since, 0);
      const events = found as StoredEvent[];
      const position = positionOf(reply);
      return complete ? { events, position, gapThrough } : { events, resync: 'expired', position, gapThrough };
    }
    const [reply, events, , gapThrough] = await this.readMode(streams, 'recent', 0, recent);
    return { events: events as StoredEvent[], position: positionOf(reply), gapThrough };
  }

  knownPosition(): EventCursor | undefined {
    const { epoch, seq } = this.known;
    return epoch === null ? undefined : { epoch, seq };
  }

  caughtUp(position: EventCursor): boolean | Promise<boolean> {
    if (this.closing || !this.reader) return true;
    return this.catchUp.wait(position, this.commandTimeoutMs);
  }

  async flush(): Promise<void> {
    const target = this.appended;
    if (!this.reader?.position || !target || this.commands?.status !== 'ready') return;
    await this.catchUp.wait(target, this.commandTimeoutMs);
  }

  stats(): Record<string, number> {
    return {
      redisConnected: this.commands?.status === 'ready' ? 1 : 0,
      ...this.counters,
      ...this.appends.stats(),
    };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.appends.rejectWaiting(new Error('RedisBackend is closed; the event was not stored'));
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.reader?.stop();
    this.catchUp.stop();
    // disconnect(), not quit(): the reader may be blocked for seconds, and nothing is pending that matters.
    this.readerConnection?.disconnect();
    await this.commands?.quit().catch(() => this.commands?.disconnect());
  }

  /** Drops idle streams' history now (it also runs on a timer). Returns how many went. */
  async sweep(): Promise<number> {
    const commands = await this.ready('sweep idle streams');
    const k = this.keys;
    let dropped = 0;
    const followed = [...(this.context?.subscribedStreams() ?? [])];
    // Batches keep each script short; Redis runs nothing else while one runs.
    for (let i = 0; i === 0 || i < followed.length; i += 1000) {
      dropped += await commands.ssecastSweep(
        k.meta,
        k.fanout,
        k.index,
        k.trim,
        k.base,
        this.streamIdleTtlMs,
        SWEEP_LIMIT,
        this.maxStreams,
        ...followed.slice(i, i + 1000),
      );
    }
    this.counters.redisSweptStreams += dropped;
    return dropped;
  }

  /** The last Redis error this backend saw (connection trouble), for diagnostics. */
  get lastRedisError(): unknown {
    return this.lastError;
  }

  private async readMode(
    streams: readonly string[] | '*',
    mode: 'after' | 'recent' | 'since',
    position: number | string,
    count: number,
  ): Promise<[ReadReply, StoredEvent[] | 'expired', boolean, number]> {
    const commands = await this.ready('read history');
    const k = this.keys;
    let reply: ReadReply;
    try {
      reply =
        streams === '*'
          ? await commands.ssecastReadAll(k.meta, k.fanout, k.index, k.trim, mode, position, count, k.base, newEpoch())
          : await commands.ssecastRead(
              4 + streams.length * 3,
              k.meta,
              k.fanout,
              k.index,
              k.trim,
              ...streams.flatMap((stream) => [k.history + stream, k.state + stream, k.stateIndex + stream]),
              mode,
              position,
              count,
              newEpoch(),
              ...streams,
            );
    } catch (error) {
      throw this.failure(error, 'nothing was read');
    }
    const [epoch] = reply;
    if (streams === '*') {
      const events = (reply[4] as RawEntry[]).map(parseFanout).reverse().map(fromFanout);
      const answer = reply[7] as ['fanout'] | ['expired'] | ['streams', number, ...[string, RawEntry[], (string | null)[]][]];
      const gapThrough = Number(reply[8] ?? 0);
      if (answer[0] === 'expired') return [reply, 'expired', false, gapThrough];
      if (answer[0] === 'streams') {
        // The fan-out stream no longer reached back far enough; the streams' histories and keyed state did.
        const merged: StoredEvent[] = [];
        for (const [stream, found, state] of answer.slice(2) as [string, RawEntry[], (string | null)[]][]) {
          for (const packed of state) {
            if (packed === null) continue;
            const event = fromState(epoch, stream, packed);
            if (mode !== 'since' || event.event.timestamp >= (position as string)) merged.push(event);
          }
          for (const entry of found) merged.push(fromHistory(epoch, stream, entry));
        }
        return [reply, merged.sort(bySeq), answer[1] === 1, gapThrough];
      }
      // Every stream's keyed state (recent and since), less what the fan-out entries already hold.
      const state = reply[6] as string[];
      const held = new Set(events.map((event) => event.seq));
      for (let i = 0; i < state.length; i += 2) {
        const event = fromState(epoch, state[i] as string, state[i + 1] as string);
        if (!held.has(event.seq) && (mode !== 'since' || event.event.timestamp >= (position as string))) events.push(event);
      }
      return [reply, events.length > held.size ? events.sort(bySeq) : events, true, gapThrough];
    }
    const perStream: StoredEvent[][] = [];
    let complete = true;
    let highestGap = 0;
    for (let i = 0; i < streams.length; i++) {
      const [trim, , entries, state] = reply[4 + i] as HistoryReply;
      const stream = streams[i] as string;
      // "<gapSeq>|<gapAt>|…" (lua.ts): what this stream lost that nothing stands for.
      // For a stream with no history: its drop record, or the drops nobody remembers by name.
      const [gapSeq = '', gapAt = ''] = trim.split('|');
      const gapThrough = Number(gapSeq || 0);
      if (gapThrough > highestGap) highestGap = gapThrough;
      if (mode === 'after' && gapThrough > (position as number)) return [reply, 'expired', false, highestGap];
      if (mode === 'since' && gapAt >= (position as string)) complete = false;
      const events = entries.map((entry) => fromHistory(epoch, stream, entry));
      if (mode !== 'after') events.reverse();
      // The keyed events older than the entries, in sequence order (a key the script found gone is null).
      const older: StoredEvent[] = [];
      for (const packed of state) {
        if (packed === null) continue;
        const event = fromState(epoch, stream, packed);
        if (mode !== 'since' || event.event.timestamp >= (position as string)) older.push(event);
      }
      perStream.push(older.length > 0 ? older.concat(events) : events);
    }
    const events = perStream.length === 1 ? (perStream[0] as StoredEvent[]) : perStream.flat().sort(bySeq);
    return [reply, events, complete, highestGap];
  }

  /** At startup, waits (bounded) for the connections; after that, fails at once while Redis is away. */
  private async ready(action: string): Promise<Redis & Scripts> {
    const commands = this.commands;
    const reader = this.reader;
    if (!commands || !reader || this.closing) throw new Error(`RedisBackend is ${this.closing ? 'closed' : 'not open'}; cannot ${action}`);
    if (!reader.position || !this.everReady) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(this.unreachable(action)), this.commandTimeoutMs);
      });
      try {
        await Promise.race([Promise.all([reader.whenPositioned(), this.commandsReady]), timeout]);
        this.everReady = true;
      } finally {
        clearTimeout(timer);
      }
    }
    if (commands.status !== 'ready') throw this.unreachable(action);
    return commands;
  }

  private unreachable(action: string): Error {
    const cause = this.lastError instanceof Error ? `: ${this.lastError.message}` : '';
    const commands = this.commands?.status ?? 'closed';
    // Commands answer, but a read now could hand a subscriber events its fan-out would then skip.
    const where =
      commands === 'ready' && !this.reader?.position
        ? `this instance's fan-out reader has not reached Redis yet (its connection ${this.readerConnection?.status ?? 'closed'}${cause})`
        : `Redis is unreachable (connection ${commands}${cause})`;
    return new Error(`${where}; could not ${action}`, { cause: this.lastError });
  }

  private failure(error: unknown, outcome: string): Error {
    const message = error instanceof Error ? error.message : String(error);
    return new Error(`Redis command failed (${message}); ${outcome}`, { cause: error });
  }

  private see(epoch: string | null, seq: number): void {
    if (epoch === null) return;
    if (epoch !== this.known.epoch) this.known = { epoch, seq };
    else if (seq > this.known.seq) this.known.seq = seq;
  }

  private discontinuity(kind: 'epoch' | 'rollback' | 'gap', epoch: string): void {
    this.counters.redisInterruptions++;
    // Subscribers' positions no longer fit what comes next: end them, and they
    // resume from history with their Last-Event-ID (exactly, or with a resync).
    this.context?.interrupt();
    if (kind === 'rollback' && epoch === this.known.epoch) {
      // Numbers this instance has seen are being handed out again, so this epoch's ids each name
      // two events now: replace it, whatever meta's seq says by then (another instance may already
      // have published it back past what this one saw). A known seq no epoch reaches makes the
      // script do so, unless the epoch is no longer this one (another instance got there first).
      const k = this.keys;
      void this.commands
        ?.ssecastEnsureEpoch(k.meta, k.fanout, k.index, k.trim, k.base, newEpoch(), epoch, Number.MAX_SAFE_INTEGER)
        .catch((error) => this.noteError(error));
    }
  }

  private noteError(error: unknown): void {
    this.lastError = error;
    this.counters.redisErrors++;
  }
}

/** Where the sequence stood when a read ran; none before the first event (no epoch, no id to give). */
function positionOf([epoch, seq]: ReadReply): EventCursor | undefined {
  return epoch ? { epoch, seq: Number(seq) } : undefined;
}

function resyncReason(after: EventCursor, reply: ReadReply, events: StoredEvent[] | 'expired'): ResyncReason | undefined {
  const [epoch, seq] = reply;
  if (after.epoch !== epoch) return 'foreign';
  if (after.seq > Number(seq)) return 'unknown';
  return events === 'expired' ? 'expired' : undefined;
}
