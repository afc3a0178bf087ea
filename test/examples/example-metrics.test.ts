import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createMetrics } from '../../examples/agent-work/metrics.mjs';

describe('Agent Work metrics', () => {
  it('reports the hub counters and events by type in Prometheus text', async () => {
    const hub = new EventManager();
    const metrics = createMetrics(hub);
    const sub = hub.subscribe({ streams: ['a1'], onEvent: () => {} });
    await sub.ready;
    await hub.publish('a1', 'sandbox_status', { status: 'running' });
    await hub.publish('a1', 'command_output', { output: 'x' });
    metrics.published('sandbox_status');
    metrics.published('command_output');
    metrics.published('command_output');
    const text = await metrics.registry.metrics();
    expect(text).toContain('ssecast_connections 1');
    expect(text).toContain('ssecast_events_published_total 2');
    expect(text).toContain('ssecast_events_delivered_total 2');
    expect(text).toContain('ssecast_clients_dropped_total 0');
    expect(text).toContain('ssecast_requests_rejected_total 0');
    expect(text).toContain('ssecast_hook_errors_total 0');
    expect(text).toContain('agent_work_events_total{type="command_output"} 2');
    expect(text).toContain('# TYPE ssecast_events_published_total counter');
    sub.close();
    await hub.publish('a1', 'sandbox_status', { status: 'stopped' });
    const after = await metrics.registry.metrics();
    expect(after).toContain('ssecast_connections 0');
    expect(after).toContain('ssecast_events_published_total 3');
    await hub.close();
  });
});
