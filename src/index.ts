// The public API of `ssecast`. Adapters, the Redis backend, the client and redaction are
// subpath exports (`ssecast/node`, `/express`, `/fastify`, `/fetch`, `/redis`, `/client`,
// `/redact`), so importing the core never loads them.
export { EventManager, type EventManagerOptions, type HistorySettings } from './event-manager.js';
export {
  Hub,
  MAX_KEY_LENGTH,
  MAX_STREAM_NAME_LENGTH,
  type HubErrorContext,
  type HubOptions,
  type HubSettings,
  type HubStats,
  type PublishOptions,
  type SubscribeOptions,
} from './core/hub.js';
export { Subscription, type CloseReason, type Delivery } from './core/subscription.js';
export { formatEvent, SseFormatError, type SseFormatErrorCode, type SseMessage } from './core/encoder.js';
export { HeartbeatScheduler, type HeartbeatTarget } from './core/heartbeat.js';
export { FlushScheduler, type Flushable } from './core/flush-scheduler.js';
export { SsecastError, type SsecastErrorCode } from './core/errors.js';
export { POSITION_EVENT } from './core/types.js';
export type {
  EventMapBase,
  EventOf,
  PositionEvent,
  PublishedEvent,
  ResyncData,
  ResyncEvent,
  ResyncReason,
  SubscriptionEvent,
} from './core/types.js';
export {
  EventValidationError,
  type EventSchemas,
  type InferEventMap,
  type StandardIssue,
  type StandardResult,
  type StandardSchemaProps,
  type StandardSchemaV1,
} from './core/schema.js';
// For backend authors: the interface, the frame and id helpers a backend needs, and the default backend.
export type { Backend, BackendContext, EventDraft, ReadQuery, ReadResult, StoredEvent } from './core/backend.js';
export { frameFor } from './core/backend.js';
export { parseEventId, formatEventId, MAX_EVENT_ID_LENGTH, type EventCursor } from './core/ids.js';
export { MemoryBackend, type MemoryBackendOptions } from './backends/memory/index.js';
