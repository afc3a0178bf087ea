// Contender `raw-coalesce-ids`: `raw-coalesce` writing the frame ssecast
// writes (an `id:` line of the same length and an `event:` line), so that the
// two coalescing servers can be compared byte for byte. The ids are a counter,
// not a resumable history: this is still no library.
import http from 'node:http';
import { PATH, closeServer, listen, nodeVersion, notFound, streamOf } from './lib/common.mjs';

const HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };

/** One stream: its open responses and the frames not yet written to them. */
function newStream(name) {
  return { name, responses: new Set(), pending: '', dirty: false };
}

/** Same shape and length as ssecast's ids: `<epoch>.<seq>`. */
const EPOCH = 'mwu3ltellw97aj';
let seq = 0;
export async function start() {
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
    /** Same bare `data:` frame as `raw`, queued for this turn's flush. */
    publish(stream, data) {
      const target = streams.get(stream);
      if (!target || target.responses.size === 0) return;
      target.pending += `id: ${EPOCH}.${++seq}\nevent: tick\ndata: ${data}\n\n`;
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
