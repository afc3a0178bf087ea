// NestJS on its Fastify platform (docs/frameworks.md). Nest's decorators need TypeScript's
// experimentalDecorators; test/frameworks/nest.test.ts runs this file as it is.
import 'reflect-metadata';
import type { IncomingMessage } from 'node:http';
import { type BeforeApplicationShutdown, Controller, Get, Inject, Module, Req, Res, UseGuards } from '@nestjs/common';
import type { NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type EventMapBase, EventManager } from 'ssecast';
import { createSseHandler, type NodeResponse } from 'ssecast/node';
import { BearerGuard, HUB } from './nest-auth.js';
import { agentStreams, type User } from './users.js';

type AuthedRequest = IncomingMessage & { user: User };

@Controller()
export class EventsController {
  // One handler for the app's lifetime: it keeps the per-user connection counts.
  private readonly handler: (req: AuthedRequest, res: NodeResponse) => void;

  constructor(@Inject(HUB) hub: EventManager) {
    this.handler = createSseHandler<EventMapBase, AuthedRequest>(hub, {
      streams: (req) => agentStreams(req.url ?? '/', req.user),
      authorize: (req) => ({ id: req.user.id, streams: req.user.agents }),
    });
  }

  @Get('events')
  @UseGuards(BearerGuard)
  events(@Req() request: FastifyRequest & { user: User }, @Res() reply: FastifyReply): void {
    // @Res() stops Nest from sending. hijack() tells Fastify the same: the response is
    // written outside its lifecycle, so it sends nothing for this request whatever
    // resolves later, as the ssecast/fastify plugin does.
    reply.hijack();
    // ssecast/node serves Node's own request and response, which Fastify keeps as .raw.
    this.handler(Object.assign(request.raw, { user: request.user }), reply.raw);
  }
}

@Module({
  controllers: [EventsController],
  providers: [{ provide: HUB, useFactory: () => new EventManager() }],
})
export class AppModule implements BeforeApplicationShutdown {
  constructor(@Inject(HUB) private readonly hub: EventManager) {}

  // Before Nest closes Fastify, whose close() would otherwise wait for open streams forever.
  async beforeApplicationShutdown(): Promise<void> {
    await this.hub.close();
  }
}

export async function createApp(options: NestApplicationOptions = {}): Promise<NestFastifyApplication> {
  return NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), options);
}
