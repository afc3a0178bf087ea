export { formatEvent, SseFormatError, type SseFormatErrorCode, type SseMessage } from './core/encoder.js';
export { EventManager, MAX_STREAM_NAME_LENGTH, type EventManagerOptions, type HubStats, type SubscribeOptions } from './core/event-manager.js';
export { Subscription, type CloseReason, type Delivery } from './core/subscription.js';
export { HeartbeatScheduler, type HeartbeatTarget } from './core/heartbeat.js';
export { FlushScheduler, type Flushable } from './core/flush-scheduler.js';
export { ReplayBuffer, type ReplayBufferOptions } from './core/replay-buffer.js';
export { parseEventId, formatEventId, MAX_EVENT_ID_LENGTH, type EventCursor } from './core/ids.js';
export { SsecastError, type SsecastErrorCode } from './core/errors.js';
export type { Backend, BackendContext, EventDraft, ReadQuery, ReadResult, StoredEvent } from './core/backend.js';
export { frameFor } from './core/backend.js';
export { MemoryBackend, type MemoryBackendOptions } from './backends/memory.js';
export type { EventMapBase, EventOf, PublishedEvent, ResyncData, ResyncEvent, ResyncReason, SubscriptionEvent } from './core/types.js';
export { redactSecrets, redactDeep, REDACTED } from './core/redact.js';
export {
  EventValidationError,
  type EventSchemas,
  type InferEventMap,
  type StandardIssue,
  type StandardResult,
  type StandardSchemaProps,
  type StandardSchemaV1,
} from './core/schema.js';
