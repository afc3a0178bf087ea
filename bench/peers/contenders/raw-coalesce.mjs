// Contender `raw-coalesce`: node:http with no library, but the frames a stream
// gets within one event-loop turn are joined and written once per socket at
// setImmediate: one write (and usually one TCP segment) per connection per
// turn instead of one per event.
import http from 'node:http';
import { PATH, closeServer, listen, nodeVersion, notFound, streamOf } from './lib/common.mjs';

const HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };

/** One stream: its open responses and the frames not yet written to them. */
function newStream(name) {
  return { name, responses: new Set(), pending: '', dirty: false };
}

export function start() {
  return startCoalescing((data) => `data: ${data}\n\n`);
}

/** The coalescing server, writing the frame `frameOf(data)` builds for each event. */
export async function startCoalescing(frameOf) {
  /** @type {Map<string, ReturnType<typeof newStream>>} */
  const streams = new Map();
  /** Streams with pending frames, written by the next flush. */
  const dirty = [];
  let flushScheduled = false;
  let open = 0;

  function serve(req, res) {
    const name = streamOf(req.url);
    if (!name) return notFound(res);
    res.writeHead(200, HEADERS);
    res.flushHeaders(); // the client waits for the head; node:http holds it until the first write
    let stream = streams.get(name);
    if (!stream) streams.set(name, (stream = newStream(name)));
    stream.responses.add(res);
    open++;
    res.once('close', () => {
      stream.responses.delete(res);
      open--;
      // A dirty stream is still referenced by `dirty`; flush() drops it when empty.
      if (stream.responses.size === 0 && !stream.dirty) forget(stream);
    });
  }

  /** Drops a stream nobody follows any more (a new connection makes a fresh one). */
  function forget(stream) {
    if (streams.get(stream.name) === stream) streams.delete(stream.name);
  }

  /** Writes each dirty stream's joined frames once to each of its responses. */
  function flush() {
    flushScheduled = false;
    for (const stream of dirty) {
      const chunk = stream.pending;
      stream.pending = '';
      stream.dirty = false;
      for (const res of stream.responses) res.write(chunk);
      if (stream.responses.size === 0) forget(stream);
    }
    dirty.length = 0;
  }

  const server = http.createServer(serve);
  const port = await listen(server);

  return {
    port,
    path: PATH,
    version: nodeVersion,
    /** The event's frame, queued for this turn's flush. */
    publish(stream, data) {
      const target = streams.get(stream);
      if (!target || target.responses.size === 0) return;
      target.pending += frameOf(data);
      if (!target.dirty) {
        target.dirty = true;
        dirty.push(target);
      }
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    },
    connections: () => open,
    close: () => closeServer(server),
  };
}
