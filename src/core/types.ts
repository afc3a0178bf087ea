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

/** Maps each event type to its payload type, so `publish` is type-checked. */
export type EventMapBase = Record<string, unknown>;

/** The union of published events an `EventMap` allows. */
export type EventOf<M extends EventMapBase> = {
  [K in keyof M & string]: PublishedEvent<M[K], K>;
}[keyof M & string];

/** What a subscription yields: events, and a resync notice when resume was impossible. */
export type SubscriptionEvent<M extends EventMapBase = EventMapBase> = EventOf<M> | ResyncEvent;
