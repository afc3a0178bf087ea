// Prometheus metrics through prom-client: the hub's own counters, read at
// scrape time, plus published events by type, counted by the app. The ssecast_*
// names are the ones ssecast/otel gives through the OpenTelemetry Prometheus
// exporter, so a dashboard works with either (docs/metrics.md).
import client from 'prom-client';

/**
 * @param {{ stats(): Record<string, number> }} hub
 */
export function createMetrics(hub) {
  const registry = new client.Registry();
  /** @param {string} name @param {string} help @param {string} stat @param {'gauge' | 'counter'} kind */
  const fromStats = (name, help, stat, kind) => {
    const Metric = kind === 'gauge' ? client.Gauge : client.Counter;
    new Metric({
      name,
      help,
      registers: [registry],
      collect() {
        // The hub owns the number; the metric only reports it at scrape time.
        const value = hub.stats()[stat] ?? 0;
        if (this instanceof client.Gauge) this.set(value);
        else {
          this.reset();
          this.inc(value);
        }
      },
    });
  };
  fromStats('ssecast_connections', 'Open event-stream connections.', 'connections', 'gauge');
  fromStats('ssecast_streams', 'Streams with at least one subscriber.', 'streams', 'gauge');
  fromStats('ssecast_events_published_total', 'Events accepted by the hub.', 'published', 'counter');
  fromStats('ssecast_events_delivered_total', 'Events handed to subscribers (one per subscriber per event).', 'delivered', 'counter');
  fromStats('ssecast_clients_dropped_total', 'Subscribers cut off for falling behind.', 'dropped', 'counter');
  fromStats('ssecast_resyncs_total', 'Resume requests answered with resync.', 'resyncs', 'counter');
  fromStats('ssecast_requests_rejected_total', 'Stream requests refused before opening a stream.', 'rejected', 'counter');
  fromStats('ssecast_hook_errors_total', "Failures reported to the hub's onError.", 'hookErrors', 'counter');
  const byType = new client.Counter({
    name: 'agent_work_events_total',
    help: 'Events published by the Agent Work services, by event type.',
    labelNames: ['type'],
    registers: [registry],
  });
  client.collectDefaultMetrics({ register: registry, prefix: 'agent_work_' });
  return {
    registry,
    /** @param {string} type */
    published(type) {
      byType.inc({ type });
    },
  };
}
