import type * as Zlib from 'node:zlib';
import type { SseTransport } from './connection.js';

/**
 * zlib settings for a compressed stream. The defaults trade a little ratio
 * for memory, which matters at thousands of connections: a smaller window and
 * memLevel than zlib's own (15 and 8) keep about half the state per
 * connection for a ratio a point or two lower (figures: docs/adapters.md, Compression).
 */
export interface CompressOptions {
  /** @defaultValue 6 */
  level?: number;
  /** @defaultValue 13 (8 KiB window) */
  windowBits?: number;
  /** @defaultValue 7 */
  memLevel?: number;
}

export type CompressOption = boolean | CompressOptions;

/** The gzip settings `compress` asks for, or null when compression is off. */
export function gzipSettings(option: CompressOption | undefined): Required<CompressOptions> | null {
  if (!option) return null;
  const given = option === true ? {} : option;
  const settings = { level: given.level ?? 6, windowBits: given.windowBits ?? 13, memLevel: given.memLevel ?? 7 };
  check(settings.level, 0, 9, 'compress.level');
  check(settings.windowBits, 9, 15, 'compress.windowBits');
  check(settings.memLevel, 1, 9, 'compress.memLevel');
  return settings;
}

function check(value: number, min: number, max: number, name: string): void {
  if (!Number.isInteger(value) || value < min || value > max)
    throw new TypeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
}

/**
 * True when `Accept-Encoding` accepts gzip: listed (or `*`) with a non-zero
 * q-value, and not refused by `gzip;q=0`.
 */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (!acceptEncoding) return false;
  let gzip: number | undefined;
  let star: number | undefined;
  for (const part of acceptEncoding.split(',')) {
    const [name = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (Number.isNaN(q)) continue;
    if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (name === '*') star = q;
  }
  return (gzip ?? star ?? 0) > 0;
}

/** Where compressed bytes go: a `ServerResponse`, or a ReadableStream controller. */
export interface ByteSink {
  /** False means full: stop until the sink calls back (`GzipTransport.resume`). */
  write(bytes: Uint8Array): boolean;
  readonly bufferedBytes: number;
  end(): void;
  abort(): void;
}

export interface GzipTransport extends SseTransport {
  /** The sink can take more bytes. */
  resume(): void;
  /** Frees zlib's memory at once (the peer left). */
  destroy(): void;
}

/**
 * An `SseTransport` that gzips into a sink and flushes (Z_SYNC_FLUSH) after
 * every write, so each write is decodable by the client as soon as it
 * arrives: compression never holds an event back. Backpressure runs from the
 * sink through zlib to the writer: a full sink pauses zlib's output, zlib's
 * input fills, and `write` returns false until `onDrain`.
 */
export function gzipTransport(zlib: typeof Zlib, settings: Required<CompressOptions>, sink: ByteSink, onDrain: () => void): GzipTransport {
  return new GzipStream(zlib, settings, sink, onDrain);
}

// A class, not an object literal with a getter: V8 gives every such literal a hidden class of its own.
class GzipStream implements GzipTransport {
  private readonly gzip: Zlib.Gzip;
  private readonly sink: ByteSink;
  private readonly flushMode: number;
  private ending = false;

  constructor(zlib: typeof Zlib, settings: Required<CompressOptions>, sink: ByteSink, onDrain: () => void) {
    const gzip = zlib.createGzip(settings);
    this.gzip = gzip;
    this.sink = sink;
    this.flushMode = zlib.constants.Z_SYNC_FLUSH;
    gzip.on('data', (chunk: Buffer) => {
      if (!sink.write(chunk)) gzip.pause();
    });
    gzip.on('drain', onDrain);
    gzip.on('end', () => sink.end());
    // zlib fails only on misuse or memory exhaustion; the stream cannot go on either way.
    gzip.on('error', () => sink.abort());
  }

  write(chunk: string | Uint8Array): boolean {
    const accepted = this.gzip.write(chunk);
    this.gzip.flush(this.flushMode);
    return accepted;
  }

  get bufferedBytes(): number {
    return this.gzip.writableLength + this.gzip.readableLength + this.sink.bufferedBytes;
  }

  end(): void {
    if (this.ending) return;
    this.ending = true;
    this.gzip.end();
  }

  abort(): void {
    this.gzip.destroy();
    this.sink.abort();
  }

  resume(): void {
    this.gzip.resume();
  }

  destroy(): void {
    this.gzip.destroy();
  }
}
