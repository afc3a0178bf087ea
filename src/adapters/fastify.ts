import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { gzipSettings } from '../http/compression.js';
import type { SseConnection } from '../http/connection.js';
import { isGone, reject, SseGate, type SseHandlerOptions } from '../http/gate.js';
import { answer, nodeRequestView, openNodeStream } from '../http/node-stream.js';
import { rejectionHeaders } from '../http/reject.js';

export type { MsRange, Principal, RetryRange, SseHandlerOptions } from '../http/gate.js';
export type { CompressOptions } from '../http/compression.js';

export interface SsecastFastifyOptions<M extends EventMapBase = EventMapBase> extends SseHandlerOptions<FastifyRequest> {
  /** The hub whose events are served. The plugin does not close it. */
  hub: Hub<M>;
  /** Route of the stream. */
  path: string;
}

// Other methods are routed too, so they get the gate's 405 with `Allow: GET`
// rather than a 404 that suggests the stream is not there. OPTIONS is left to
// CORS plugins.
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

const plugin: FastifyPluginAsync<SsecastFastifyOptions<any>> = async (app, { hub, path, ...options }) => {
  const gate = new SseGate<FastifyRequest>(hub, {
    ...options,
    onError: options.onError ?? ((error, request) => request.log.error({ err: error }, 'ssecast: a stream hook failed')),
  });
  const gzip = gzipSettings(options.compress);
  const open = new Set<SseConnection>();

  app.route({
    method: METHODS,
    url: path,
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const view = nodeRequestView(request.raw, reply.raw, request.url);
      const outcome = await gate.admit(request, view);
      if (isGone(outcome)) return reply.hijack();
      if (!outcome.ok) {
        const body = JSON.stringify(outcome.body);
        return reply.code(outcome.status).headers(rejectionHeaders(outcome, body)).send(body);
      }
      // From here the response is ours: Fastify must not send or time it out.
      reply.hijack();
      // The client may have left while the hooks were awaited.
      if (view.gone()) return outcome.release();
      let connection: SseConnection | undefined;
      try {
        connection = openNodeStream(
          hub,
          request.raw,
          reply.raw,
          outcome,
          gzip,
          (reason) => {
            open.delete(connection as SseConnection);
            if (reason === 'slow_consumer') request.log.warn('ssecast: client fell behind and was cut off; it resumes with Last-Event-ID');
            else if (reason === 'error')
              request.log.warn('ssecast: the stream ended on an error (history unreadable or transport failure)');
            else if (reason === 'interrupted')
              request.log.warn('ssecast: the backend lost continuity; the client resumes with Last-Event-ID');
            else if (reason === 'rotated')
              request.log.debug('ssecast: the stream reached maxConnectionAgeMs; the client resumes with Last-Event-ID');
          },
          (error) => gate.report(error, request),
        );
      } catch (error) {
        outcome.release();
        gate.report(error, request);
        answer(reply.raw, reject(500, 'the stream could not be opened'));
        return;
      }
      if (connection.isOpen) open.add(connection);
    },
  });

  // Before the server stops accepting: open streams would otherwise keep
  // app.close() waiting for requests that never end.
  app.addHook('preClose', async () => {
    for (const connection of [...open]) connection.close('closed');
    open.clear();
  });
};

/**
 * Fastify 5 plugin serving an event stream at `path`.
 *
 * @example
 * await app.register(ssecastFastify, { hub, path: '/api/v1/sse', streams: (req) => [(req.query as any).agent_id] });
 */
export const ssecastFastify = fp(plugin, { fastify: '5.x', name: 'ssecast' });
export default ssecastFastify;
