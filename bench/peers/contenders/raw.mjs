// Contender `raw`: node:http with no library, the floor the others are measured
// against. Each event's frame is built once and written to every response of
// its stream, one res.write() per connection per event.
import http from 'node:http';
import { PATH, closeServer, listen, nodeVersion, notFound, streamOf } from './lib/common.mjs';

const HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };

export async function start() {
  /** @type {Map<string, Set<http.ServerResponse>>} stream name → its open responses */
  const streams = new Map();
  let open = 0;

  /** Opens a stream response and forgets it when the socket goes. */
  function serve(req, res) {
    const name = streamOf(req.url);
    if (!name) return notFound(res);
    res.writeHead(200, HEADERS);
    // node:http holds the head until the first write; the client waits for it.
    res.flushHeaders();
    let set = streams.get(name);
    if (!set) streams.set(name, (set = new Set()));
    set.add(res);
    open++;
    res.once('close', () => {
      set.delete(res);
      open--;
      if (set.size === 0 && streams.get(name) === set) streams.delete(name);
    });
  }

  const server = http.createServer(serve);
  const port = await listen(server);

  return {
    port,
    path: PATH,
    version: nodeVersion,
    /** No `event:` line: the bare `data:` frame is the smallest valid event. */
    publish(stream, data) {
      const set = streams.get(stream);
      if (!set) return;
      const frame = `data: ${data}\n\n`;
      for (const res of set) res.write(frame);
    },
    connections: () => open,
    close: () => closeServer(server),
  };
}
