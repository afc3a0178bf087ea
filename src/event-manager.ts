import { MemoryBackend } from './backends/memory/index.js';
import type { Backend } from './core/backend.js';
import { Hub, type HubOptions, type HubSettings } from './core/hub.js';
import type { EventMapBase } from './core/types.js';

// `any` by default, so options typed without an event map still fit a typed hub.
export interface EventManagerOptions<M extends EventMapBase = any> extends Omit<HubOptions<M>, 'backend'> {
  /**
   * Where events are stored and how instances share them.
   * @defaultValue a `MemoryBackend` built from the history options below
   */
  backend?: Backend;
  /** Events kept per stream for replay and resume (memory backend). @defaultValue 100 */
  historySize?: number;
  /** Bytes kept per stream (memory backend); `maxEventBytes` must not exceed it. @defaultValue 262144 (256 KiB) */
  historyBytes?: number;
  /** Bytes kept across all streams (memory backend). @defaultValue 67108864 (64 MiB) */
  historyTotalBytes?: number;
  /**
   * Keys whose latest event is kept per stream (memory backend): the state a
   * late joiner gets however far back it was published. Past it the least
   * recently updated key goes. @defaultValue 1000
   */
  maxKeysPerStream?: number;
  /** Streams whose history is kept; least recently used ones without subscribers go first (memory backend). @defaultValue 10000 */
  maxStreams?: number;
  /** History of a stream untouched for this long is dropped (memory backend). @defaultValue 3600000 (1 h) */
  streamIdleTtlMs?: number;
}

/** The memory backend's settings as an `EventManager` resolved them (they apply only when it built the backend). */
export interface HistorySettings {
  historySize: number;
  historyBytes: number;
  historyTotalBytes: number;
  maxKeysPerStream: number;
  maxStreams: number;
  streamIdleTtlMs: number;
}

/**
 * The hub as most applications want it: a {@link Hub} with a `MemoryBackend`
 * by default, built from the history options. This is the one place where
 * the core meets a backend; pass `backend` (a `RedisBackend`) to share
 * history and fan-out between instances, or build a `Hub` yourself.
 *
 * @example
 * type Events = { git_operation: { operation: string; progress: number } };
 * const hub = new EventManager<Events>();
 * await hub.publish('agent-1', 'git_operation', { operation: 'clone', progress: 45 });
 */
export class EventManager<M extends EventMapBase = EventMapBase> extends Hub<M> {
  declare readonly options: Readonly<HubSettings & HistorySettings>;

  constructor(options: EventManagerOptions<M> = {}) {
    const history: HistorySettings = {
      historySize: options.historySize ?? 100,
      historyBytes: options.historyBytes ?? 256 * 1024,
      historyTotalBytes: options.historyTotalBytes ?? 64 * 1024 * 1024,
      maxKeysPerStream: options.maxKeysPerStream ?? 1000,
      maxStreams: options.maxStreams ?? 10_000,
      streamIdleTtlMs: options.streamIdleTtlMs ?? 60 * 60 * 1000,
    };
    const maxEventBytes = options.maxEventBytes ?? 64 * 1024;
    // An event the history cannot hold would be stored and trimmed at once, or evict everything else.
    if (
      !options.backend &&
      typeof maxEventBytes === 'number' &&
      maxEventBytes > Math.min(history.historyBytes, history.historyTotalBytes)
    ) {
      throw new TypeError(
        `maxEventBytes (${maxEventBytes}) must not exceed historyBytes (${history.historyBytes}) or historyTotalBytes (${history.historyTotalBytes})`,
      );
    }
    const backend =
      options.backend ??
      new MemoryBackend({
        maxEventsPerStream: history.historySize,
        maxBytesPerStream: history.historyBytes,
        maxTotalBytes: history.historyTotalBytes,
        maxKeysPerStream: history.maxKeysPerStream,
        maxStreams: history.maxStreams,
        idleTtlMs: history.streamIdleTtlMs,
      });
    super({ ...options, backend });
    (this as { options: HubSettings & HistorySettings }).options = { ...this.options, ...history };
  }
}
