// A first measurement of the built package, not the peer comparison (that
// harness is its own piece of work): N raw-socket clients on one stream, a
// burst of events, deliveries per second until every client has every event.
// Server and clients share this process, so the numbers are a floor.
//   node bench/smoke.mjs [connections=1000] [events=1000]
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { EventManager } from '../dist/index.js';
import { createSseHandler } from '../dist/adapters/node.js';

const connections = Number(process.argv[2] ?? 1000);
const events = Number(process.argv[3] ?? 1000);

const hub = new EventManager({ replay: 0 });
const server = http.createServer(
  createSseHandler(hub, { maxConnectionsPerPrincipal: connections, maxConnectionsPerClient: Infinity, maxConnections: Infinity }),
);
server.maxConnections = connections + 10;
await new Promise((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
const { port } = server.address();

const counts = new Int32Array(connections);
const sockets = [];
for (let i = 0; i < connections; i++) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('latin1');
  socket.on('error', () => {}); // counted below as not opened
  // Each event frame ends in a blank line; count "\n\n" across chunk borders.
  let tail = '';
  socket.on('data', (chunk) => {
    const text = tail + chunk;
    let at = text.indexOf('\n\n');
    while (at !== -1) {
      counts[i]++;
      at = text.indexOf('\n\n', at + 2);
    }
    tail = text.endsWith('\n') ? '\n' : '';
  });
  socket.write(`GET /?stream=bench HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
  sockets.push(socket);
  // Connect in waves so the listen backlog never overflows.
  if (i % 100 === 99) while (hub.stats().connections < i - 50) await new Promise((r) => setTimeout(r, 5));
}
// On loopback a few of 10,000 connects can be reset by the kernel's SYN-flood
// guard; measure the connections that opened and say how many did not.
const connectDeadline = Date.now() + 10_000;
while (hub.stats().connections < connections && Date.now() < connectDeadline) await new Promise((r) => setTimeout(r, 10));
const open = [];
for (let i = 0; i < connections; i++) if (!sockets[i].destroyed) open.push(i);
await new Promise((r) => setTimeout(r, 200));
counts.fill(0);

const heapBefore = process.memoryUsage().heapUsed;
const start = process.hrtime.bigint();
for (let n = 0; n < events; n++) await hub.publish('bench', 'tick', { n, t: Date.now() });
const published = process.hrtime.bigint();
const target = events;
while (open.some((i) => counts[i] < target)) await new Promise((r) => setImmediate(r));
const done = process.hrtime.bigint();

const seconds = Number(done - start) / 1e9;
const result = {
  node: process.version,
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  connections,
  opened: open.length,
  events,
  publishSeconds: Number(published - start) / 1e9,
  totalSeconds: seconds,
  deliveriesPerSecond: Math.round((open.length * events) / seconds),
  heapGrowthMiB: +((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20).toFixed(1),
  dropped: hub.stats().dropped,
};
console.log(JSON.stringify(result, null, 2));
for (const socket of sockets) socket.destroy();
await hub.close();
server.close();
