// NestJS on its Express platform (docs/frameworks.md). Nest's decorators need TypeScript's
// experimentalDecorators; test/frameworks/nest.test.ts runs this file as it is.
import 'reflect-metadata';
import { type BeforeApplicationShutdown, Controller, Get, Inject, Module, Next, Req, Res, UseGuards } from '@nestjs/common';
import type { NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import compression from 'compression';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { EventManager } from 'ssecast';
import { sse } from 'ssecast/express';
import { BearerGuard, HUB } from './nest-auth.js';
import { agentStreams, type User } from './users.js';

type AuthedRequest = Request & { user: User };

@Controller()
export class EventsController {
  // One handler for the app's lifetime: it keeps the per-user connection counts.
  private readonly handler: RequestHandler;

  constructor(@Inject(HUB) hub: EventManager) {
    this.handler = sse(hub, {
      streams: (req) => agentStreams(req.originalUrl, (req as AuthedRequest).user),
      authorize: (req) => {
        const { user } = req as AuthedRequest; // put there by BearerGuard
        return { id: user.id, streams: user.agents };
      },
    });
  }

  // @Res() tells Nest the handler owns the response: Nest sends nothing, and
  // interceptors that map the return value never see one.
  @Get('events')
  @UseGuards(BearerGuard)
  events(@Req() req: Request, @Res() res: Response, @Next() next: NextFunction): void {
    this.handler(req, res, next);
  }
}

@Module({
  controllers: [EventsController],
  providers: [{ provide: HUB, useFactory: () => new EventManager() }],
})
export class AppModule implements BeforeApplicationShutdown {
  constructor(@Inject(HUB) private readonly hub: EventManager) {}

  // Before Nest closes the HTTP server, which would otherwise wait for open streams forever.
  async beforeApplicationShutdown(): Promise<void> {
    await this.hub.close();
  }
}

export async function createApp(options: NestApplicationOptions = {}): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, options);
  app.use(compression()); // safe: the stream is sent with Cache-Control: no-transform, which compression() honours
  return app;
}
