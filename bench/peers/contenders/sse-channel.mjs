// Contender `sse-channel` (4): one SseChannel per stream, created on first use;
// channel.addClient(req, res) per connection; publish is
// channel.send({ event: 'tick', data }).
//
// Defaults kept: jsonEncode false (the data string is sent as is), no `id`, so
// nothing goes to its history (historySize 500 applies to events with an id);
// a `:ok` comment on connect; a ping comment every 20 s from one timer per
// channel. The frame is encoded once per send and written to every client.
// Clients are kept in an array: a disconnect is an indexOf + splice.
import http from 'node:http';
import SseChannel from 'sse-channel';
import { PATH, closeServer, listen, notFound, packageVersion, streamOf } from './lib/common.mjs';

export async function start() {
  /** @type {Map<string, SseChannel>} */
  const channels = new Map();

  function channelFor(name) {
    let channel = channels.get(name);
    if (!channel) channels.set(name, (channel = new SseChannel()));
    return channel;
  }

  /** addClient writes the head and removes the client itself on req/res close. */
  function serve(req, res) {
    const name = streamOf(req.url);
    if (!name) return notFound(res);
    channelFor(name).addClient(req, res);
  }

  const server = http.createServer(serve);
  const port = await listen(server);

  return {
    port,
    path: PATH,
    version: packageVersion('sse-channel'),
    publish(stream, data) {
      channels.get(stream)?.send({ event: 'tick', data });
    },
    connections() {
      let open = 0;
      for (const channel of channels.values()) open += channel.getConnectionCount();
      return open;
    },
    /** channel.close() stops the ping timer and ends its responses. */
    close() {
      for (const channel of channels.values()) channel.close();
      return closeServer(server);
    },
  };
}
