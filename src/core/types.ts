/** An event as the hub stored and delivered it. */
export interface PublishedEvent<T = unknown, K extends string = string> {
  /** Opaque, assigned by the hub, strictly increasing per hub across every stream. */
  id: string;
  /** Routing key: what subscribers ask for (the example uses the agent id). */
  stream: string;
  /** The SSE `event:` field. */
  type: K;
  data: T;
  /** ISO 8601, set at publish. */
  timestamp: string;
  /** The key it was published with: it supersedes earlier events of its stream with the same key. Not sent on the wire. */
  key?: string;
}

/** Why a resuming subscriber could not get an exact continuation. */
export type ResyncReason = 'unknown' | 'foreign' | 'expired';

/**
 * What a resync says: the id that could not be continued, or (for a
 * subscriber that asked for everything `since` a time) that time.
 */
export type ResyncData = { reason: ResyncReason; lastEventId: string } | { reason: 'expired'; since: string };

/**
 * The control event a subscriber gets first when its `lastEventId` cannot be
 * continued exactly. On the wire: `event: resync`, no id, data
 * `{"reason":…,"lastEventId":…}`. The fresh-connect replay follows it.
 * A `since` subscription whose history has lost events from that time gets
 * `{"reason":"expired","since":…}`, then what is left of them.
 */
export interface ResyncEvent {
  id: null;
  stream: null;
  type: 'resync';
  data: ResyncData;
  timestamp: string;
}

/** The type of the position marker: see {@link PositionEvent}. Reserved, like `resync`. */
export const POSITION_EVENT = 'ssecast-position';

/**
 * A control frame that moves a client's cursor forward without showing it
 * anything: `event: ssecast-position`, `id:` the position the replay was read
 * at, empty data. The hub sends it after a fresh (or resync) replay whose last
 * event the client received is older than an event its streams lost without
 * cover: the latest event of a key kept beside a trimmed tail, or a replay whose
 * newer events a `types` filter left out. Without it, that client's next
 * reconnect would resume from behind the loss and resync every time. Also after
 * a fresh replay that sent nothing (the client would have no id at all), and at
 * a clean end that leaves the client's cursor behind. A page's
 * `EventSource` has no listener for it; `ssecast/client` and the iterator API
 * hide it.
 */
export interface PositionEvent {
  id: string;
  stream: null;
  type: typeof POSITION_EVENT;
  data: '';
  timestamp: string;
}

/** Maps each event type to its payload type, so `publish` is type-checked. */
export type EventMapBase = Record<string, unknown>;

/** The union of published events an `EventMap` allows. */
export type EventOf<M extends EventMapBase> = {
  [K in keyof M & string]: PublishedEvent<M[K], K>;
}[keyof M & string];

/** What a subscription yields: events, and a resync notice when resume was impossible. */
export type SubscriptionEvent<M extends EventMapBase = EventMapBase> = EventOf<M> | ResyncEvent;
