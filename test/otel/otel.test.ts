import { describe, expect, it, vi } from 'vitest';
import { metrics as otelMetrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { EventManager, MemoryBackend } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { HUB_INSTRUMENTS, registerHubMetrics } from '../../src/otel/index.js';
import { cleanupAfterEach, freePort, floodUntilDropped, openStream, stalledClient, startServer, waitUntil } from '../support/helpers.js';
import { REDIS_URL, redisBackend, sharedClient } from '../support/redis.js';
import type { RedisBackend } from '../../src/backends/redis/index.js';

const cleanups = cleanupAfterEach();

/** A reader the test pulls from: collect() runs every observable callback once. */
class PullReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

interface Point {
  kind: string;
  monotonic: boolean | undefined;
  unit: string;
  value: number;
  attributes: Record<string, unknown>;
}

/** Every ssecast data point of one collection, by instrument name (one point per name unless `all`). */
function points(resourceMetrics: ResourceMetrics): Map<string, Point[]> {
  const out = new Map<string, Point[]>();
  for (const scope of resourceMetrics.scopeMetrics)
    for (const metric of scope.metrics) {
      if (!metric.descriptor.name.startsWith('ssecast.')) continue;
      for (const dp of metric.dataPoints) {
        const list = out.get(metric.descriptor.name) ?? [];
        list.push({
          kind: DataPointType[metric.dataPointType] as string,
          monotonic: 'isMonotonic' in metric ? metric.isMonotonic : undefined,
          unit: metric.descriptor.unit,
          value: dp.value as number,
          attributes: dp.attributes,
        });
        out.set(metric.descriptor.name, list);
      }
    }
  return out;
}

function setup() {
  const reader = new PullReader();
  const provider = new MeterProvider({ readers: [reader] });
  cleanups.push(() => provider.shutdown());
  const meter = provider.getMeter('ssecast-test');
  const collect = async () => {
    const { resourceMetrics, errors } = await reader.collect();
    expect(errors).toEqual([]);
    return points(resourceMetrics);
  };
  /** name -> value, for the one point each instrument has. */
  const values = async () => {
    const all = await collect();
    return Object.fromEntries([...all].map(([name, list]) => [name, list.length === 1 ? list[0]?.value : list.map((p) => p.value)]));
  };
  return { meter, collect, values };
}

describe('ssecast/otel: hub.stats() as observable instruments', () => {
  it('reports connections, streams, published, delivered, resyncs and rejected requests from a real HTTP server and real clients', async () => {
    const hub = new EventManager({ historySize: 3 });
    const server = await startServer(createSseHandler(hub, { maxConnections: 1, replay: 0 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { meter, collect, values } = setup();
    registerHubMetrics(meter, hub, { attributes: { 'ssecast.hub': 'main' } });

    const first = await collect();
    // Kind, monotonicity and unit of each instrument, as documented in docs/metrics.md.
    expect(Object.fromEntries([...first].map(([name, [p]]) => [name, [p?.kind, p?.monotonic, p?.unit]]))).toEqual({
      'ssecast.connections': ['SUM', false, '{connection}'],
      'ssecast.streams': ['SUM', false, '{stream}'],
      'ssecast.events.published': ['SUM', true, '{event}'],
      'ssecast.events.delivered': ['SUM', true, '{event}'],
      'ssecast.clients.dropped': ['SUM', true, '{client}'],
      'ssecast.resyncs': ['SUM', true, '{resync}'],
      'ssecast.requests.rejected': ['SUM', true, '{request}'],
      'ssecast.hook.errors': ['SUM', true, '{error}'],
    });
    for (const [, [p]] of first) expect(p?.attributes).toEqual({ 'ssecast.hub': 'main' });
    expect(await values()).toMatchObject({ 'ssecast.connections': 0, 'ssecast.events.published': 0 });

    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push((await hub.publish('a', 'tick', { n })).id);
    await client.waitFor((c) => c.events.length === 5);
    expect(await values()).toEqual({
      'ssecast.connections': 1,
      'ssecast.streams': 1,
      'ssecast.events.published': 5,
      'ssecast.events.delivered': 5,
      'ssecast.clients.dropped': 0,
      'ssecast.resyncs': 0,
      'ssecast.requests.rejected': 0,
      'ssecast.hook.errors': 0,
    });

    // maxConnections is 1: the second stream is refused with 503, before any subscription.
    const refused = await openStream(`${server.url}/?stream=a`);
    expect(refused.status).toBe(503);
    // Not a hub-level limit: a 401 from authorize counts the same (see the next test).
    expect(await values()).toMatchObject({ 'ssecast.connections': 1, 'ssecast.requests.rejected': 1 });

    client.close();
    await waitUntil(() => hub.stats().connections === 0);
    // History keeps 3 of the 5: resuming after the first is too old, and is answered with resync.
    const resumed = await openStream(`${server.url}/?stream=a`, { 'last-event-id': ids[0] as string });
    cleanups.push(() => resumed.close());
    await resumed.waitFor((c) => c.events.some((e) => e.event === 'resync'));
    expect(await values()).toMatchObject({ 'ssecast.connections': 1, 'ssecast.resyncs': 1, 'ssecast.requests.rejected': 1 });
    resumed.close();
    await waitUntil(() => hub.stats().connections === 0);
    expect(await values()).toMatchObject({
      'ssecast.connections': 0,
      'ssecast.streams': 0,
      'ssecast.events.published': 5,
      'ssecast.resyncs': 1,
    });
  });

  it('counts a 401 from authorize as a rejected request', async () => {
    const hub = new EventManager();
    const server = await startServer(createSseHandler(hub, { authorize: () => null }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { meter, values } = setup();
    registerHubMetrics(meter, hub);
    for (let i = 0; i < 2; i++) expect((await openStream(`${server.url}/?stream=a`)).status).toBe(401);
    expect(await values()).toMatchObject({ 'ssecast.requests.rejected': 2, 'ssecast.connections': 0 });
  });

  it('counts a slow consumer cut off as dropped', async () => {
    const hub = new EventManager({ maxEventBytes: 16 * 1024 });
    const server = await startServer(createSseHandler(hub, { maxUnsentBytes: 64 * 1024 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { meter, values } = setup();
    registerHubMetrics(meter, hub);
    const stalled = stalledClient(server.port, '/?stream=a');
    cleanups.push(() => void stalled.socket.destroy());
    await waitUntil(() => hub.stats().connections === 1);
    await floodUntilDropped(hub, 'a');
    await waitUntil(() => hub.stats().connections === 0);
    expect(await values()).toMatchObject({ 'ssecast.clients.dropped': 1, 'ssecast.connections': 0 });
  });

  it('calls stats() once per collection and touches no instrument on publish', async () => {
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    const { meter, values } = setup();
    const stats = vi.spyOn(hub, 'stats');
    registerHubMetrics(meter, hub);
    expect(stats).toHaveBeenCalledTimes(1); // at registration: which optional instruments exist
    for (let n = 0; n < 100; n++) await hub.publish('a', 'tick', { n });
    expect(stats).toHaveBeenCalledTimes(1);
    await values();
    expect(stats).toHaveBeenCalledTimes(2);
    expect(await values()).toMatchObject({ 'ssecast.events.published': 100 });
    expect(stats).toHaveBeenCalledTimes(3);
  });

  it('unregister() removes the callback: the hub is not read again, and the attributes may be registered again', async () => {
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    const { meter, values } = setup();
    const handle = registerHubMetrics(meter, hub);
    await hub.publish('a', 'tick', {});
    expect(await values()).toMatchObject({ 'ssecast.events.published': 1 });
    handle.unregister();
    handle.unregister();
    expect(handle.registered).toBe(false);
    const stats = vi.spyOn(hub, 'stats');
    await hub.publish('a', 'tick', {});
    // The SDK keeps reporting a cumulative series at its last observed value; nothing reads the hub.
    expect(await values()).toMatchObject({ 'ssecast.events.published': 1 });
    expect(stats).not.toHaveBeenCalled();
    {
      using again = registerHubMetrics(meter, hub);
      expect(again.registered).toBe(true);
      expect(await values()).toMatchObject({ 'ssecast.events.published': 2 });
    }
    await hub.publish('a', 'tick', {});
    const calls = stats.mock.calls.length;
    expect(await values()).toMatchObject({ 'ssecast.events.published': 2 });
    expect(stats).toHaveBeenCalledTimes(calls);
  });

  it('refuses the same attributes twice on one meter; two hubs with their own attributes share it', async () => {
    const a = new EventManager();
    const b = new EventManager();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const { meter, collect } = setup();
    registerHubMetrics(meter, a, { attributes: { 'ssecast.hub': 'a' } });
    expect(() => registerHubMetrics(meter, b, { attributes: { 'ssecast.hub': 'a' } })).toThrow(/already registered on this meter/);
    registerHubMetrics(meter, b, { attributes: { 'ssecast.hub': 'b' } });
    await a.publish('x', 't', {});
    await b.publish('x', 't', {});
    await b.publish('x', 't', {});
    const published = (await collect()).get('ssecast.events.published') ?? [];
    expect(published.map((p) => [p.attributes['ssecast.hub'], p.value]).sort()).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
    // Another meter is another set of series.
    const other = setup();
    registerHubMetrics(other.meter, a, { attributes: { 'ssecast.hub': 'a' } });
    expect(await other.values()).toMatchObject({ 'ssecast.events.published': 1 });
  });

  it('reads a closed hub once more, then removes its callback', async () => {
    const hub = new EventManager();
    const { meter, values } = setup();
    const handle = registerHubMetrics(meter, hub);
    await hub.publish('a', 'tick', {});
    expect(await values()).toMatchObject({ 'ssecast.events.published': 1 });
    const client = hub.subscribe({ streams: ['a'], onEvent: () => {} });
    await client.ready;
    await hub.publish('a', 'tick', {});
    expect(await values()).toMatchObject({ 'ssecast.events.published': 2, 'ssecast.connections': 1 });
    await hub.close();
    expect(handle.registered).toBe(true);
    const stats = vi.spyOn(hub, 'stats');
    // One last read: the series end on the closed hub's numbers, then the callback is gone.
    expect(await values()).toMatchObject({ 'ssecast.events.published': 2, 'ssecast.connections': 0, 'ssecast.streams': 0 });
    expect(stats).toHaveBeenCalledTimes(1);
    expect(handle.registered).toBe(false);
    expect(await values()).toMatchObject({ 'ssecast.events.published': 2, 'ssecast.connections': 0 });
    expect(stats).toHaveBeenCalledTimes(1);
    // Its attributes are free again, for a hub that replaces it.
    const next = new EventManager();
    cleanups.push(() => next.close());
    registerHubMetrics(meter, next);
    expect(await values()).toMatchObject({ 'ssecast.events.published': 0 });
  });

  it('while close() is still draining, keeps reading the hub; the series end on the numbers after the drain', async () => {
    // An append in flight on a slow backend: close() waits for it, and the numbers move meanwhile.
    class SlowBackend extends MemoryBackend {
      override async append(draft: Parameters<MemoryBackend['append']>[0]) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return super.append(draft);
      }
    }
    const hub = new EventManager({ backend: new SlowBackend() });
    const subscriptions = [0, 1].map(() => hub.subscribe({ streams: ['s'], onEvent: () => {} }));
    await Promise.all(subscriptions.map((subscription) => subscription.ready));
    const { meter, values } = setup();
    const handle = registerHubMetrics(meter, hub);
    const published = hub.publish('s', 'tick', {});
    await new Promise((resolve) => setTimeout(resolve, 20));
    const closing = hub.close();
    // Mid-drain: the hub is closed to new work, but still delivering what it accepted.
    expect(await values()).toMatchObject({ 'ssecast.connections': 2, 'ssecast.events.published': 0 });
    expect(handle.registered).toBe(true);
    await closing;
    await published;
    expect(await values()).toMatchObject({ 'ssecast.connections': 0, 'ssecast.events.published': 1, 'ssecast.events.delivered': 2 });
    expect(handle.registered).toBe(false);
    // What a cumulative SDK keeps exporting from then on.
    expect(await values()).toMatchObject({ 'ssecast.connections': 0, 'ssecast.events.published': 1, 'ssecast.events.delivered': 2 });
  });

  it('lets a replacement hub take the attributes of a closed one before any collection (a restart)', async () => {
    const { meter, values } = setup();
    const old = new EventManager();
    registerHubMetrics(meter, old, { attributes: { 'ssecast.hub': 'main' } });
    await old.close();
    const next = new EventManager();
    cleanups.push(() => next.close());
    await next.publish('a', 'tick', {});
    const handle = registerHubMetrics(meter, next, { attributes: { 'ssecast.hub': 'main' } });
    expect(await values()).toMatchObject({ 'ssecast.events.published': 1 });
    expect(handle.registered).toBe(true);
    // The open replacement still holds them.
    expect(() => registerHubMetrics(meter, new EventManager(), { attributes: { 'ssecast.hub': 'main' } })).toThrow(TypeError);
  });

  it('treats attribute values as exporters write them: 1 and "1" are the same series, refused twice', () => {
    const { meter } = setup();
    const a = new EventManager();
    const b = new EventManager();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    registerHubMetrics(meter, a, { attributes: { shard: 1 } });
    expect(() => registerHubMetrics(meter, b, { attributes: { shard: '1' } })).toThrow(/already registered/);
  });

  it('accepts any number of hubs on the api’s no-op meter (no SDK installed): nothing is exported, nothing throws', async () => {
    // Without a global provider, getMeter() returns one no-op meter for every name.
    const noop = otelMetrics.getMeterProvider().getMeter('x');
    expect(otelMetrics.getMeterProvider().getMeter('y')).toBe(noop);
    const hubs = [new EventManager(), new EventManager()];
    const handles = hubs.map((hub) => registerHubMetrics(noop, hub));
    expect(handles.map((handle) => handle.registered)).toEqual([true, true]);
    await hubs[0]?.close();
    const again = new EventManager();
    cleanups.push(
      () => hubs[1]?.close(),
      () => again.close(),
    );
    expect(registerHubMetrics(noop, again).registered).toBe(true);
  });

  it('knows the no-op meter by what it does where a bundler renamed its class: a second hub is accepted', async () => {
    const noop = otelMetrics.getMeterProvider().getMeter('x');
    // What a minifier leaves: the api's no-op meter under a one-letter class name.
    const Minified = class extends (noop.constructor as new () => typeof noop) {};
    Object.defineProperty(Minified, 'name', { value: 'e' });
    const meter = new Minified();
    const hubs = [new EventManager(), new EventManager()];
    cleanups.push(...hubs.map((hub) => () => hub.close()));
    expect(hubs.map((hub) => registerHubMetrics(meter, hub).registered)).toEqual([true, true]);
    // An SDK meter still refuses the same series twice.
    const { meter: sdk } = setup();
    registerHubMetrics(sdk, hubs[0] as EventManager);
    expect(() => registerHubMetrics(sdk, hubs[1] as EventManager)).toThrow(/already registered/);
  });

  it('a stats() that throws fails neither the collection nor the other hubs', async () => {
    let broken = false;
    const hub = new EventManager();
    const ok = new EventManager();
    cleanups.push(
      () => hub.close(),
      () => ok.close(),
    );
    const real = hub.stats.bind(hub);
    vi.spyOn(hub, 'stats').mockImplementation(() => {
      if (broken) throw new Error('backend went away');
      return real();
    });
    const { meter, collect } = setup();
    const onError = vi.fn();
    registerHubMetrics(meter, hub, { attributes: { 'ssecast.hub': 'broken' }, onError: () => (onError(), { thrown: true }) });
    registerHubMetrics(meter, ok, { attributes: { 'ssecast.hub': 'ok' } });
    broken = true;
    const got = await collect();
    expect(onError).toHaveBeenCalledTimes(1);
    expect(got.get('ssecast.connections')?.map((p) => p.attributes['ssecast.hub'])).toEqual(['ok']);
    // A reporter that throws too is contained.
    const worse = new EventManager();
    cleanups.push(() => worse.close());
    const real2 = worse.stats.bind(worse);
    let fail = false;
    vi.spyOn(worse, 'stats').mockImplementation(() => {
      if (fail) throw new Error('x');
      return real2();
    });
    registerHubMetrics(meter, worse, {
      attributes: { 'ssecast.hub': 'worse' },
      onError: () => {
        throw new Error('reporter');
      },
    });
    fail = true;
    expect((await collect()).get('ssecast.connections')?.map((p) => p.attributes['ssecast.hub'])).toEqual(['ok']);
  });

  it('refuses what is not a meter or a hub', () => {
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    const { meter } = setup();
    expect(() => registerHubMetrics({} as never, hub)).toThrow(TypeError);
    expect(() => registerHubMetrics(meter, {} as never)).toThrow(TypeError);
  });

  it('works with the global meter provider of @opentelemetry/api (the usual set-up)', async () => {
    const reader = new PullReader();
    const provider = new MeterProvider({ readers: [reader] });
    otelMetrics.setGlobalMeterProvider(provider);
    cleanups.push(async () => {
      otelMetrics.disable();
      await provider.shutdown();
    });
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    using _metrics = registerHubMetrics(otelMetrics.getMeter('app'), hub);
    await hub.publish('a', 't', {});
    const got = points((await reader.collect()).resourceMetrics);
    expect(got.get('ssecast.events.published')?.[0]?.value).toBe(1);
  });

  it('exports through the SDK’s InMemoryMetricExporter and a PeriodicExportingMetricReader, as a pipeline would', async () => {
    const hub = new EventManager();
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    // A long interval: the test exports with forceFlush(), not on a timer.
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const provider = new MeterProvider({ readers: [reader] });
    cleanups.push(() => provider.shutdown());
    registerHubMetrics(provider.getMeter('app'), hub, { attributes: { 'ssecast.hub': 'main' } });
    const client = await openStream(`${server.url}/events?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    await hub.publish('a', 'tick', { n: 1 });
    await client.waitFor((c) => c.events.length === 1);
    await reader.forceFlush();
    const exported = exporter.getMetrics().at(-1) as ResourceMetrics;
    const got = points(exported);
    expect(got.get('ssecast.connections')?.[0]).toMatchObject({ value: 1, attributes: { 'ssecast.hub': 'main' } });
    expect(got.get('ssecast.events.published')?.[0]?.value).toBe(1);
    expect(got.get('ssecast.events.delivered')?.[0]?.value).toBe(1);
  });

  it('serves the Prometheus text format through the OpenTelemetry Prometheus exporter', async () => {
    const hub = new EventManager();
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const port = await freePort();
    const exporter = new PrometheusExporter({ host: '127.0.0.1', port });
    await exporter.startServer();
    const provider = new MeterProvider({ readers: [exporter] });
    cleanups.push(() => provider.shutdown());
    registerHubMetrics(provider.getMeter('ssecast'), hub, { attributes: { 'ssecast.hub': 'main' } });

    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    await hub.publish('a', 'tick', { n: 1 });
    await hub.publish('a', 'tick', { n: 2 });
    await client.waitFor((c) => c.events.length === 2);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const lines = text.split('\n').filter((line) => line.startsWith('ssecast_') || line.includes(' ssecast_'));
    const samples = Object.fromEntries(
      lines.filter((l) => !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]),
    );
    const labels = '{ssecast_hub="main",otel_scope_name="ssecast"}';
    expect(samples).toEqual({
      [`ssecast_connections${labels}`]: 1,
      [`ssecast_streams${labels}`]: 1,
      [`ssecast_events_published_total${labels}`]: 2,
      [`ssecast_events_delivered_total${labels}`]: 2,
      [`ssecast_clients_dropped_total${labels}`]: 0,
      [`ssecast_resyncs_total${labels}`]: 0,
      [`ssecast_requests_rejected_total${labels}`]: 0,
      [`ssecast_hook_errors_total${labels}`]: 0,
    });
    expect(text).toContain('# TYPE ssecast_events_published_total counter');
    expect(text).toContain('# TYPE ssecast_connections gauge');
    expect(text).toContain('# HELP ssecast_events_published_total Events accepted by publish.');
  });
});

describe.skipIf(!REDIS_URL)('ssecast/otel with the Redis backend', () => {
  it('adds the Redis instruments, and an interruption shows up', async () => {
    const hub = new EventManager({ backend: redisBackend() });
    const backend = hub.backend as RedisBackend;
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    await waitUntil(() => hub.stats().redisConnected === 1);
    const { meter, collect, values } = setup();
    registerHubMetrics(meter, hub);
    const kinds = Object.fromEntries(
      [...(await collect())]
        .filter(([name]) => name.startsWith('ssecast.redis.'))
        .map(([name, [p]]) => [name, [p?.kind, p?.monotonic, p?.unit]]),
    );
    expect(kinds).toEqual({
      'ssecast.redis.connected': ['GAUGE', undefined, '1'],
      'ssecast.redis.interruptions': ['SUM', true, '{interruption}'],
      'ssecast.redis.errors': ['SUM', true, '{error}'],
    });
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    await hub.publish('a', 'tick', { n: 0 });
    await client.waitFor((c) => c.events.length === 1);
    expect(await values()).toMatchObject({
      'ssecast.redis.connected': 1,
      'ssecast.redis.interruptions': 0,
      'ssecast.redis.errors': 0,
      'ssecast.events.published': 1,
    });
    // Numbers handed out that this instance never sees, as if the fan-out had been trimmed past
    // it: the backend loses continuity, ends its streams, and counts an interruption.
    await sharedClient().hincrby(`{${backend.prefix}}:meta`, 'seq', 3);
    await hub.publish('a', 'tick', { n: 1 });
    await waitUntil(() => hub.stats().redisInterruptions === 1, 5000, 'the interruption');
    expect(await values()).toMatchObject({ 'ssecast.redis.interruptions': 1, 'ssecast.redis.connected': 1 });
    // The same through the Prometheus exporter (a second provider: its own set of series).
    const port = await freePort();
    const exporter = new PrometheusExporter({ host: '127.0.0.1', port });
    await exporter.startServer();
    const provider = new MeterProvider({ readers: [exporter] });
    cleanups.push(() => provider.shutdown());
    registerHubMetrics(provider.getMeter('ssecast'), hub);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toContain('ssecast_redis_interruptions_total{otel_scope_name="ssecast"} 1\n');
    expect(text).toContain('ssecast_redis_errors_total{otel_scope_name="ssecast"} 0\n');
    expect(text).toContain('ssecast_redis_connected{otel_scope_name="ssecast"} 1\n');
    expect(text).toContain('# TYPE ssecast_redis_connected gauge');
  });
});

describe('the instrument table', () => {
  it('maps every stat the docs list, once', () => {
    expect(HUB_INSTRUMENTS.map((spec) => spec.stat)).toEqual([
      'connections',
      'streams',
      'published',
      'delivered',
      'dropped',
      'resyncs',
      'rejected',
      'hookErrors',
      'redisConnected',
      'redisInterruptions',
      'redisErrors',
    ]);
    expect(new Set(HUB_INSTRUMENTS.map((spec) => spec.name)).size).toBe(HUB_INSTRUMENTS.length);
  });
});
