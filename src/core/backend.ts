import type { EventCursor } from './ids.js';
import type { PublishedEvent, ResyncReason } from './types.js';

/**
 * A stored event: the public shape, its place in the hub's sequence, and its
 * wire bytes, encoded once and written as they are to every subscriber.
 */
export interface StoredEvent<T = unknown> {
  seq: number;
  event: PublishedEvent<T>;
  /** The complete SSE frame, blank line included. */
  frame: string;
  /** UTF-8 length of `frame`. */
  bytes: number;
}

/** What the hub hands a backend to append: already validated and serialised. */
export interface EventDraft {
  stream: string;
  type: string;
  data: unknown;
  timestamp: string;
  /** `event:` and `data:` lines; the backend adds the `id:` line once it has a number. */
  body: string;
  /** The event supersedes earlier events of its stream with this key (see `PublishOptions.key`). */
  key?: string | undefined;
}

export interface ReadQuery {
  streams: readonly string[] | '*';
  /** Resume after this id; null for a fresh subscriber. */
  after: EventCursor | null;
  /** For a fresh subscriber (or after a resync): how many recent events per stream. */
  recent: number;
  /**
   * Instead of `recent`, when `after` is null: every retained event published
   * at or after this ISO 8601 time. `resync: 'expired'` when some were lost.
   */
  since?: string | undefined;
}

export interface ReadResult {
  /** In sequence order. */
  events: StoredEvent[];
  /**
   * Set when `after` could not be continued (`events` is then the fresh
   * replay), or when events published since `since` were lost (`events` is
   * then what is left of them).
   */
  resync?: ResyncReason;
  /**
   * The newest point of the sequence when the read was made. A `resync`
   * carries it as its id, so a client that reconnects before any replayed
   * event resumes exactly from there. Without it the resync's id is empty
   * (the client's cursor resets and its next connection is a fresh one).
   */
  position?: EventCursor | undefined;
  /**
   * The highest sequence number the streams read have lost without cover
   * (trimmed unkeyed events, dropped keys, streams dropped whole): a resume
   * from before it will resync. When a fresh replay leaves a client's cursor
   * below it, the hub sends a position marker so that the next reconnect
   * resumes from `position` instead. 0 or absent: nothing lost.
   */
  gapThrough?: number | undefined;
}

/** What the hub gives a backend when it opens it. */
export interface BackendContext {
  /** Called with every appended event, from any instance, in sequence order. */
  deliver(event: StoredEvent): void;
  /** True while a stream has live subscribers; such streams are never evicted first. */
  hasSubscribers(stream: string): boolean;
  /** True when `deliver` would reach someone for this stream (its subscribers or `'*'` ones). */
  wants(stream: string): boolean;
  /** The streams with live subscribers here (a shared backend keeps them from expiring). */
  subscribedStreams(): Iterable<string>;
  /**
   * The backend lost continuity (a shared store lost data, or this instance
   * missed events): ends every subscription with reason `interrupted`, so
   * clients resume from history with their Last-Event-ID.
   */
  interrupt(): void;
}

/**
 * Where events are stored and how instances share them. The hub depends on
 * nothing else, so a backend (memory, Redis) is swapped without touching it.
 */
export interface Backend {
  open(context: BackendContext): Promise<void>;
  /** Assigns the next id of the global sequence, stores the event and feeds it to `deliver`. */
  append(draft: EventDraft): Promise<StoredEvent>;
  read(query: ReadQuery): Promise<ReadResult>;
  /**
   * Whether every event up to `position` (a read's) has reached `deliver` on
   * this instance, waiting a bounded time for it. A shared backend reads its
   * history from the store but delivers through its own fan-out, which may be
   * behind: the hub waits before a subscription goes live, so the events
   * published since it registered reach it in order, and none comes after a
   * position marker at or below the marker's id. Absent: always true.
   */
  caughtUp?(position: EventCursor): boolean | Promise<boolean>;
  /**
   * The newest point of the sequence this instance knows was reached (its own appends, what its
   * fan-out brought). A subscription notes it when it joins: what the fan-out brings later at
   * or below it was published before the subscription, and is left out of its replay like any
   * other history outside the window. Absent: everything the fan-out brings counts as new.
   */
  knownPosition?(): EventCursor | undefined;
  /**
   * Resolves once every event this instance appended has reached `deliver`
   * (a shared backend delivers through its fan-out, after `append` resolved).
   * `hub.close()` waits for it, bounded, before ending subscriptions.
   */
  flush?(): Promise<void>;
  /** Numbers for `hub.stats()`. */
  stats(): Record<string, number>;
  close(): Promise<void>;
}

/** The frame of a stored event: its id line, then the pre-encoded body. */
export function frameFor(id: string, body: string): string {
  return `id: ${id}\n${body}\n`;
}

/** Orders stored events by their place in the hub's sequence (for merging per-stream reads). */
export function bySeq(a: StoredEvent, b: StoredEvent): number {
  return a.seq - b.seq;
}
