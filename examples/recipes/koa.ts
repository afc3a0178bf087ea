// Koa 3 with @koa/router (docs/frameworks.md); test/frameworks/koa.test.ts runs this file as it is.
import type { IncomingMessage } from 'node:http';
import Router from '@koa/router';
import Koa from 'koa';
import type { EventManager } from 'ssecast';
import type { EventMapBase } from 'ssecast';
import { createSseHandler } from 'ssecast/node';
import { agentStreams, type User, userFromAuthorization } from './users.js';

interface State {
  user: User;
}

type AuthedRequest = IncomingMessage & { user: User };

export function createApp(hub: EventManager): Koa<State> {
  const sse = createSseHandler<EventMapBase, AuthedRequest>(hub, {
    streams: (req) => agentStreams(req.url ?? '/', req.user),
    authorize: (req) => ({ id: req.user.id, streams: req.user.agents }),
  });

  const router = new Router<State>();
  router.get('/events', (ctx) => {
    // Koa writes ctx.body (or a 404) once the middleware chain returns; the stream is ssecast's.
    ctx.respond = false;
    sse(Object.assign(ctx.req, { user: ctx.state.user }), ctx.res);
  });

  const app = new Koa<State>();
  // Authentication, answered here before any route: ssecast never sees a stranger.
  app.use(async (ctx, next) => {
    const user = userFromAuthorization(ctx.get('authorization'));
    if (!user) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = { error: 'unauthorized' };
      return;
    }
    ctx.state.user = user;
    await next();
  });
  app.use(router.routes()).use(router.allowedMethods());
  // Koa watches every response, ctx.respond = false or not, and reports a socket error as an
  // error of the app: a reader closing its tab resets the socket, which is no error for a stream.
  // With a listener of its own the app no longer logs through its default handler.
  app.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return;
    console.error(error);
  });
  return app;
}
