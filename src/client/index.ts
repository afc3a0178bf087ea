export {
  createClient,
  SseClient,
  type ClientEvent,
  type ClientEventOf,
  type ClientOptions,
  type ClientStatus,
  type HeadersSource,
  type ResyncEvent,
  type UnauthorizedResponse,
} from './client.js';
export { SseClientError, type SseClientErrorCode, type SseClientErrorDetails } from './errors.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export type { EventMapBase, ResyncData, ResyncReason } from '../core/types.js';
