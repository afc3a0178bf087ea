// Contender `better-sse` (0.16): one Channel per stream, created on first use;
// a Session per connection, registered with its stream's channel; publish is
// channel.broadcast(data, 'tick').
//
// Options: only `serializer` is changed, to pass the data through. Its default
// (JSON.stringify) would send the already-JSON string as a quoted JSON string,
// with every `"` escaped. Defaults kept, as a user gets them:
// - every event carries `id:<random UUID>` (40 bytes; broadcast always writes an
//   id and draws one UUID per event when none is given: there is no way to omit it);
// - fields are written as `event:tick` / `data:…` (no space after the colon);
// - the default sanitizer runs two regex replaces over the data once per
//   session per event (broadcast calls session.push for each session, which
//   encodes the event again for every connection);
// - retry 2000 ms sent once on connect; a keep-alive comment every 10 s from a
//   setInterval per session; TCP_NODELAY set on each socket; extra headers
//   (Pragma, X-Accel-Buffering, a long Cache-Control).
import http from 'node:http';
import { createChannel, createSession } from 'better-sse';
import { PATH, closeServer, listen, notFound, packageVersion, streamOf } from './lib/common.mjs';

const SESSION_OPTIONS = { serializer: (data) => data };

export async function start() {
  /** @type {Map<string, import('better-sse').Channel>} */
  const channels = new Map();

  function channelFor(name) {
    let channel = channels.get(name);
    if (!channel) channels.set(name, (channel = createChannel()));
    return channel;
  }

  /**
   * createSession resolves once the head is sent (at setImmediate). The channel
   * deregisters a session on its `disconnected` event; a client that left
   * before that point would never emit it again, so it is not registered.
   */
  async function serve(req, res) {
    const name = streamOf(req.url);
    if (!name) return notFound(res);
    const session = await createSession(req, res, SESSION_OPTIONS);
    if (session.getRequest().signal.aborted) return;
    channelFor(name).register(session);
  }

  const server = http.createServer((req, res) => {
    serve(req, res).catch((error) => {
      console.error('better-sse: could not open a session', error);
      res.destroy();
    });
  });
  const port = await listen(server);

  return {
    port,
    path: PATH,
    version: packageVersion('better-sse'),
    publish(stream, data) {
      channels.get(stream)?.broadcast(data, 'tick');
    },
    connections() {
      let open = 0;
      for (const channel of channels.values()) open += channel.sessionCount;
      return open;
    },
    /** Dropping the sockets fires each session's `disconnected`, which clears its keep-alive timer. */
    close: () => closeServer(server),
  };
}
