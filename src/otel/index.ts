/**
 * OpenTelemetry metrics for a hub: observable instruments read from `hub.stats()` at collection
 * time. Only types come from `@opentelemetry/api`; the meter is the caller's, so this module
 * imports nothing at runtime and works with whichever api copy the application resolved.
 */
import type { Attributes, BatchObservableResult, Meter, Observable, ValueType } from '@opentelemetry/api';

/** What the metrics read: a hub (`Hub`, `EventManager`), or anything with the same `stats()`. */
export interface StatsSource {
  stats(): Record<string, number>;
  /** True once the hub is closing: collections go on until its `close()` has finished, then stop. */
  readonly closed?: boolean;
  /** The hub's own `close()`, which returns the shutdown in progress once it has begun. */
  close?(): Promise<void> | void;
}

export interface HubMetricsOptions {
  /**
   * Attributes on every observation, such as `{ 'ssecast.hub': 'main' }`: what tells two hubs
   * apart on one meter.
   */
  attributes?: Attributes;
  /**
   * Hears of a `stats()` that threw during a collection; that collection reports nothing for
   * the hub, the others go on. @defaultValue `console.error`
   */
  onError?: (error: unknown) => void;
}

export interface HubMetrics {
  /** False after `unregister()`, or once a collection has read the hub after its `close()` finished. */
  readonly registered: boolean;
  /** Removes the batch callback: the instruments report nothing more for this hub. Idempotent. */
  unregister(): void;
  [Symbol.dispose](): void;
}

type Kind = 'counter' | 'updown' | 'gauge';

interface Spec {
  name: string;
  kind: Kind;
  unit: string;
  stat: string;
  description: string;
  /** Only created when the hub's stats have the field at registration (the Redis backend's). */
  optional?: true;
}

/** The instruments, in the order of the table in docs/metrics.md. */
export const HUB_INSTRUMENTS: readonly Readonly<Spec>[] = [
  {
    name: 'ssecast.connections',
    kind: 'updown',
    unit: '{connection}',
    stat: 'connections',
    description: 'Open event-stream connections (subscriptions).',
  },
  {
    name: 'ssecast.streams',
    kind: 'updown',
    unit: '{stream}',
    stat: 'streams',
    description: "Streams with at least one subscriber ('*' not counted).",
  },
  { name: 'ssecast.events.published', kind: 'counter', unit: '{event}', stat: 'published', description: 'Events accepted by publish.' },
  {
    name: 'ssecast.events.delivered',
    kind: 'counter',
    unit: '{event}',
    stat: 'delivered',
    description: 'Events handed to subscribers (one per subscriber per event).',
  },
  {
    // Named as the Agent Work example's prom-client metric, so both routes give one Prometheus name.
    name: 'ssecast.clients.dropped',
    kind: 'counter',
    unit: '{client}',
    stat: 'dropped',
    description: 'Subscribers cut off for falling behind (slow consumers).',
  },
  { name: 'ssecast.resyncs', kind: 'counter', unit: '{resync}', stat: 'resyncs', description: 'Resume requests answered with resync.' },
  {
    name: 'ssecast.requests.rejected',
    kind: 'counter',
    unit: '{request}',
    stat: 'rejected',
    description: 'Stream requests an HTTP handler refused before opening a stream.',
  },
  {
    name: 'ssecast.hook.errors',
    kind: 'counter',
    unit: '{error}',
    stat: 'hookErrors',
    description: "Failures reported to the hub's onError.",
  },
  {
    name: 'ssecast.redis.connected',
    kind: 'gauge',
    unit: '1',
    stat: 'redisConnected',
    description: "1 while the Redis backend's command connection is ready.",
    optional: true,
  },
  {
    name: 'ssecast.redis.interruptions',
    kind: 'counter',
    unit: '{interruption}',
    stat: 'redisInterruptions',
    description: 'Times the Redis fan-out lost continuity and streams were ended to resume from history.',
    optional: true,
  },
  {
    name: 'ssecast.redis.errors',
    kind: 'counter',
    unit: '{error}',
    stat: 'redisErrors',
    description: 'Redis connection errors seen by the backend.',
    optional: true,
  },
];

// `ValueType.INT` is 0; written as a literal so that `ValueType` stays a type-only import.
const INT = 0 as ValueType.INT;

/**
 * Attribute sets registered per meter, with the registration that holds each: two callbacks
 * observing one series would silently overwrite each other.
 */
const registered = new WeakMap<Meter, Map<string, { hub: StatsSource; unregister(): void }>>();

// The api's meter when no SDK is installed (or before it is): it exports nothing, and
// `metrics.getMeter()` returns that one object for every name, so the guard would refuse
// a second hub there for no reason. The api is a type-only import, so it is told by its class
// name, or, where a bundler minified that, by what it does: it hands out one shared instrument
// for every name, where an SDK makes one per name.
const isNoopMeter = (meter: Meter, counters: Observable[]) =>
  (meter as { constructor?: { name?: string } }).constructor?.name === 'NoopMeter' ||
  (counters.length > 1 && counters.every((counter) => counter === counters[0]));

/**
 * Registers observable instruments for `hub` on `meter`, in one batch callback: `stats()` is
 * read once per collection and publishing touches no instrument.
 *
 * After `hub.close()` has finished, the next collection observes the closed hub's final numbers
 * once and removes the callback. Several hubs can share a meter with different `attributes`; the
 * same attributes twice on one meter throw, unless the first hub is closed (a restart: the new
 * registration takes over) or the meter is the api's no-op one (no SDK: nothing is exported).
 *
 * @example
 * import { metrics } from '@opentelemetry/api';
 * const hubMetrics = registerHubMetrics(metrics.getMeter('app'), hub, { attributes: { 'ssecast.hub': 'main' } });
 * // later, or left to hub.close()
 * hubMetrics.unregister();
 */
export function registerHubMetrics(meter: Meter, hub: StatsSource, options: HubMetricsOptions = {}): HubMetrics {
  if (!meter || typeof meter.addBatchObservableCallback !== 'function')
    throw new TypeError('registerHubMetrics needs an OpenTelemetry Meter (metrics.getMeter(name))');
  if (!hub || typeof hub.stats !== 'function') throw new TypeError('registerHubMetrics needs a hub (anything with stats())');
  const attributes: Attributes = { ...options.attributes };
  // Exporters write attribute values as text (Prometheus labels): 1 and '1' are one series.
  const key = JSON.stringify(
    Object.entries(attributes)
      .map(([name, value]): [string, string] => [name, String(value)])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  const onError = options.onError ?? ((error: unknown) => console.error('ssecast: hub.stats() failed during a metrics collection', error));

  const present = hub.stats();
  const observed: [Observable, string][] = [];
  const counters: Observable[] = [];
  for (const spec of HUB_INSTRUMENTS) {
    if (spec.optional && typeof present[spec.stat] !== 'number') continue;
    const settings = { description: spec.description, unit: spec.unit, valueType: INT };
    const instrument =
      spec.kind === 'counter'
        ? meter.createObservableCounter(spec.name, settings)
        : spec.kind === 'updown'
          ? meter.createObservableUpDownCounter(spec.name, settings)
          : meter.createObservableGauge(spec.name, settings);
    observed.push([instrument, spec.stat]);
    if (spec.kind === 'counter') counters.push(instrument);
  }
  const instruments = observed.map(([instrument]) => instrument);
  // Checked once the instruments exist (creating them is harmless: an SDK returns the same
  // storage for a name asked twice, and nothing observes them without a callback).
  let keys = registered.get(meter);
  const holder = keys?.get(key);
  // A closed hub's registration gives way to its replacement (a restart before any collection).
  if (holder?.hub.closed) holder.unregister();
  else if (holder && !isNoopMeter(meter, counters))
    throw new TypeError(
      `ssecast metrics with the attributes ${key} are already registered on this meter; give each hub its own attributes (such as 'ssecast.hub')`,
    );

  let active = true;
  const unregister = () => {
    if (!active) return;
    active = false;
    meter.removeBatchObservableCallback(callback, instruments);
    const keys = registered.get(meter);
    if (keys?.get(key)?.unregister === unregister) keys.delete(key);
  };
  const observe = (result: BatchObservableResult) => {
    let stats: Record<string, number>;
    try {
      stats = hub.stats();
    } catch (error) {
      try {
        onError(error);
      } catch {
        // A failing reporter must not fail the collection of every other instrument either.
      }
      return;
    }
    for (const [instrument, stat] of observed) {
      const value = stats[stat];
      if (typeof value === 'number' && Number.isFinite(value)) result.observe(instrument, value, attributes);
    }
  };
  // Set once the hub is seen closing: whether its close() has finished. A hub that is closing
  // still delivers what publish accepted (up to 2 s), so its numbers still move until then.
  let shutDown: { done: boolean } | undefined;
  const lastRead = async (result: BatchObservableResult) => {
    if (!shutDown) {
      const state = (shutDown = { done: typeof hub.close !== 'function' });
      Promise.resolve(hub.close?.()).then(
        () => (state.done = true),
        () => (state.done = true),
      );
    }
    // A close() that has finished has settled by the next macrotask; one still draining has not,
    // and the collection does not wait for it. (The SDK awaits a batch callback's promise.)
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (!active) return;
    observe(result);
    // Observed one last time: the series end on the closed hub's numbers (connections 0), which a
    // cumulative SDK then keeps reporting. The SDK has already walked its callback list.
    if (shutDown.done) unregister();
  };
  const callback = (result: BatchObservableResult) => {
    if (!active) return;
    // Synchronous while the hub is open, as any exporter expects.
    if (hub.closed) return lastRead(result);
    observe(result);
  };
  meter.addBatchObservableCallback(callback, instruments);
  if (!keys) registered.set(meter, (keys = new Map()));
  // On the no-op meter a second hub may share the key; the first keeps it, nothing is exported.
  if (!keys.has(key)) keys.set(key, { hub, unregister });

  return {
    get registered() {
      return active;
    },
    unregister,
    [Symbol.dispose]: unregister,
  };
}
