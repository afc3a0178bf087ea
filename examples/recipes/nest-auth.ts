// What the two NestJS recipes share: the hub as a provider, and the guard that authenticates.
import 'reflect-metadata';
import type { IncomingHttpHeaders } from 'node:http';
import { type CanActivate, type ExecutionContext, Injectable, UnauthorizedException } from '@nestjs/common';
import { type User, userFromAuthorization } from './users.js';

/** Injection token of the hub. A token rather than the class, so no type metadata is needed. */
export const HUB = Symbol('ssecast hub');

/**
 * Runs before the route handler, so an unauthenticated request is answered
 * 401 by Nest's exception layer and never reaches ssecast. It only
 * authenticates: which streams the user may read is ssecast's `authorize`,
 * which answers 403 with the stream it refused.
 */
@Injectable()
export class BearerGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    // Express's request or Fastify's: both have the headers, and both take the user.
    const request = context.switchToHttp().getRequest<{ headers: IncomingHttpHeaders; user?: User }>();
    const user = userFromAuthorization(request.headers.authorization);
    if (!user) throw new UnauthorizedException();
    request.user = user;
    return true;
  }
}
