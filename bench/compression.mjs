// Bytes saved by `compress: true` on a command-output workload, over real
// HTTP on 127.0.0.1, and what it costs: zlib memory per connection and
// server CPU per delivered event. Also compares zlib settings, which is how
// the defaults were chosen.
//   node bench/compression.mjs [events=2000] [connections=200]
// Writes bench/results/compression.json. Run with --expose-gc for steadier memory figures.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import { EventManager } from '../dist/index.js';
import { createSseHandler } from '../dist/adapters/node.js';
import { commandOutput } from './fixtures/command-output.mjs';

const events = Number(process.argv[2] ?? 2000);
const connections = Number(process.argv[3] ?? 200);
const lines = commandOutput(events, 42);
const payloads = lines.map((line, i) => ({
  task_id: 'task-7f3a9c',
  sandbox_id: 'sbx-2b81e0',
  stream: line.stderr ? 'stderr' : 'stdout',
  line: line.text,
  seq: i,
}));

/** Streams the workload to `connections` clients; returns bytes on the wire and server CPU. */
async function run(compress, acceptEncoding) {
  const hub = new EventManager({ replay: 0, heartbeatMs: 0 });
  const server = http.createServer(
    createSseHandler(hub, {
      compress,
      maxConnectionsPerPrincipal: connections,
      maxConnectionsPerClient: Infinity,
      maxConnections: Infinity,
    }),
  );
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const received = [];
  const requests = [];
  for (let i = 0; i < connections; i++) {
    received.push(
      new Promise((resolve, reject) => {
        const request = http.get(
          { port, host: '127.0.0.1', path: '/?stream=agent-1', headers: { 'accept-encoding': acceptEncoding } },
          (res) => {
            let bytes = 0;
            res.on('data', (chunk) => (bytes += chunk.length));
            res.on('end', () => resolve({ bytes, encoding: res.headers['content-encoding'] ?? 'identity' }));
          },
        );
        request.on('error', reject);
        requests.push(request);
      }),
    );
  }
  while (hub.stats().connections < connections) await new Promise((r) => setTimeout(r, 5));
  // Memory of open connections (both ends live in this process; the
  // difference between settings is the server's compressor state).
  await hub.publish('agent-1', 'command_output', payloads[0]);
  await new Promise((r) => setTimeout(r, 50));
  global.gc?.();
  const rssOpen = process.memoryUsage().rss;
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < payloads.length; i++) {
    await hub.publish('agent-1', 'command_output', payloads[i]);
    // Command output arrives a few lines at a time, not in one burst.
    if (i % 20 === 19) await new Promise((r) => setImmediate(r));
  }
  await hub.close();
  const results = await Promise.all(received);
  const used = process.cpuUsage(cpu);
  const elapsedMs = performance.now() - started;
  await new Promise((resolve) => server.close(resolve));
  return {
    encoding: results[0].encoding,
    bytesPerClient: results[0].bytes,
    cpuMicrosPerDelivery: (used.user + used.system) / ((events + 1) * connections),
    elapsedMs,
    rssPerConnectionKiB: (rssOpen - rssBefore) / connections / 1024,
  };
}

const identity = await run(false, 'gzip');
// Warm-up effects (JIT, allocator) land on the first run; measure identity again.
Object.assign(identity, await run(false, 'gzip'));
const rows = [{ setting: 'off (identity)', ...identity }];
for (const [label, compress] of [
  ['compress: true (level 6, windowBits 13, memLevel 7)', true],
  ['zlib defaults (level 6, windowBits 15, memLevel 8)', { windowBits: 15, memLevel: 8 }],
  ['small (level 6, windowBits 10, memLevel 5)', { windowBits: 10, memLevel: 5 }],
  ['medium (level 6, windowBits 12, memLevel 6)', { windowBits: 12, memLevel: 6 }],
  ['fast (level 1, windowBits 13, memLevel 7)', { level: 1 }],
]) {
  rows.push({ setting: label, ...(await run(compress, 'gzip, deflate, br')) });
}

const rawBytes = identity.bytesPerClient;
console.log(
  `command-output workload: ${events} command_output events, ${connections} connections, ${(rawBytes / 1024).toFixed(0)} KiB per client uncompressed`,
);
console.log(
  'setting'.padEnd(54),
  'bytes/client'.padStart(12),
  'saved'.padStart(7),
  'µs CPU/delivery'.padStart(16),
  '+RSS KiB/conn'.padStart(14),
);
for (const row of rows) {
  row.savedPercent = Number((100 * (1 - row.bytesPerClient / rawBytes)).toFixed(1));
  row.extraRssPerConnectionKiB = Math.max(0, row.rssPerConnectionKiB - identity.rssPerConnectionKiB);
  console.log(
    row.setting.padEnd(54),
    String(row.bytesPerClient).padStart(12),
    `${row.savedPercent}%`.padStart(7),
    row.cpuMicrosPerDelivery.toFixed(2).padStart(16),
    row.extraRssPerConnectionKiB.toFixed(0).padStart(14),
  );
}

fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
fs.writeFileSync(
  new URL('./results/compression.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, events, connections, rows }, null, 2)}\n`,
);
