// Contender `raw` of the scale bench: bench/peers/contenders/raw.mjs (node:http,
// no library, one frame string written to every response of a stream) plus the
// heartbeat raw.mjs does not have and cannot be given from outside (it keeps its
// responses to itself): one setInterval that writes a `:heartbeat` comment to
// every open response, the cheapest heartbeat a hand-written server would have.
// It writes to every connection whatever it last got, where ssecast skips the
// ones written to within the interval; in the heartbeat window nothing else is
// written, so both write to every connection once per round.
import http from 'node:http';
import { PATH, closeServer, listen, nodeVersion, notFound, streamOf } from '../../peers/contenders/lib/common.mjs';

const HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };
const HEARTBEAT = ':heartbeat\n\n';

export async function start({ heartbeatMs = 30_000 } = {}) {
  /** @type {Map<string, Set<http.ServerResponse>>} */
  const streams = new Map();
  let open = 0;

  function serve(req, res) {
    const name = streamOf(req.url);
    if (!name) return notFound(res);
    res.writeHead(200, HEADERS);
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
  const timer = setInterval(() => {
    for (const set of streams.values()) for (const res of set) res.write(HEARTBEAT);
  }, heartbeatMs);
  timer.unref();

  return {
    port,
    path: PATH,
    version: nodeVersion,
    publish(stream, data) {
      const set = streams.get(stream);
      if (!set) return;
      const frame = `data: ${data}\n\n`;
      for (const res of set) res.write(frame);
    },
    connections: () => open,
    close() {
      clearInterval(timer);
      return closeServer(server);
    },
  };
}
