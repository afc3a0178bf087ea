/**
 * Every adapter mounted the way its users mount it, behind a real HTTP
 * server on 127.0.0.1, so that one conformance suite can run against all of
 * them. Hooks get a neutral view of the request, whatever the framework.
 */
import http from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import Fastify, { type FastifyRequest } from 'fastify';
import { createAdaptorServer } from '@hono/node-server';
import type { EventManager } from '../../src/index.js';
import type { Principal, SseHandlerOptions } from '../../src/http/gate.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { sse } from '../../src/adapters/express.js';
import ssecastFastify from '../../src/adapters/fastify.js';
import { createFetchHandler } from '../../src/adapters/fetch.js';
import { listen, type TestServer } from './helpers.js';

/** What a hook sees, the same for every adapter. */
export interface RequestInfo {
  url: URL;
  header(name: string): string | undefined;
}

export interface NeutralOptions extends Omit<SseHandlerOptions<never>, 'streams' | 'authorize' | 'onError' | 'clientKey'> {
  streams?: (req: RequestInfo) => readonly string[] | '*' | Promise<readonly string[] | '*'>;
  authorize?: (req: RequestInfo) => Principal | null | undefined | Promise<Principal | null | undefined>;
  onError?: (error: unknown) => void;
}

export interface Adapter {
  name: string;
  /** Serves `hub` at /events with `options`; the server owns nothing else. */
  mount(hub: EventManager<any>, options?: NeutralOptions): Promise<TestServer>;
}

function adapt<Req>(options: NeutralOptions, info: (req: Req) => RequestInfo): SseHandlerOptions<Req> {
  const { streams, authorize, onError, ...rest } = options;
  return {
    ...rest,
    ...(streams ? { streams: (req: Req) => streams(info(req)) } : {}),
    ...(authorize ? { authorize: (req: Req) => authorize(info(req)) } : {}),
    ...(onError ? { onError: (error: unknown) => onError(error) } : {}),
  };
}

function nodeInfo(req: http.IncomingMessage & { originalUrl?: string }): RequestInfo {
  return {
    url: new URL(req.originalUrl ?? req.url ?? '/', 'http://localhost'),
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  };
}

function expressAdapter(name: string, express: typeof express5): Adapter {
  return {
    name,
    mount: async (hub, options = {}) => {
      const app = express();
      // app.use, so that other methods reach the handler and get its 405.
      app.use('/events', sse(hub, adapt(options, nodeInfo)));
      return listen(http.createServer(app));
    },
  };
}

export const ADAPTERS: Adapter[] = [
  {
    name: 'node:http',
    mount: async (hub, options = {}) => listen(http.createServer(createSseHandler(hub, adapt(options, nodeInfo)))),
  },
  expressAdapter('Express 5', express5),
  expressAdapter('Express 4', express4 as unknown as typeof express5),
  {
    name: 'Fastify 5',
    mount: async (hub, options = {}) => {
      let server: http.Server | undefined;
      const app = Fastify({
        serverFactory: (handler) => (server = http.createServer(handler)),
      });
      await app.register(ssecastFastify, {
        hub,
        path: '/events',
        ...adapt<FastifyRequest>(options, (req) => nodeInfo(req.raw)),
      });
      await app.ready();
      return listen(server as http.Server, () => app.close());
    },
  },
  {
    name: 'fetch (behind @hono/node-server)',
    mount: async (hub, options = {}) => {
      const handler = createFetchHandler(
        hub,
        adapt<Request>(options, (req) => ({ url: new URL(req.url), header: (name) => req.headers.get(name) ?? undefined })),
      );
      return listen(createAdaptorServer({ fetch: handler }) as http.Server);
    },
  },
];
