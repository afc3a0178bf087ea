/** One dispatched event: `id` is its own `id:` field, `undefined` when it had none. */
export interface ParsedEvent {
  type: string;
  data: string;
  id: string | undefined;
}

export interface ParserCallbacks {
  onEvent(event: ParsedEvent): void;
  /**
   * The last event ID, when a message that had a valid `id:` field is dispatched (its blank line
   * arrived), even a message with no data: WHATWG commits the last event ID there. An `id:` of a
   * message cut off before its blank line is never committed, so a reconnect does not skip it.
   */
  onId(id: string): void;
  onRetry(ms: number): void;
}

/**
 * WHATWG's "interpret an event stream", on decoded text (TextDecoder drops
 * the BOM). Lines end in CRLF, LF or CR, also when a CRLF is split across
 * chunks. Written here rather than taken from eventsource-parser, which
 * drops the `id:` of a message without data: a server's `id:` alone (an
 * empty one resets the client's position) would be lost.
 */
export class EventStreamParser {
  private readonly lineEnd = /\r\n?|\n/g;
  private pending = '';
  /** The last chunk ended in CR: an LF that starts the next chunk ends the same line. */
  private afterCR = false;
  private data: string[] = [];
  private dataLength = 0;
  private type = '';
  private id: string | undefined;
  /** An `id:` field was read in the message being parsed. */
  private idSeen = false;

  constructor(private readonly callbacks: ParserCallbacks) {}

  /** UTF-16 code units held for the event being read: its data and the unfinished line. */
  get buffered(): number {
    return this.pending.length + this.dataLength;
  }

  feed(text: string): void {
    if (text === '') return;
    let start = this.afterCR && text.charCodeAt(0) === 10 ? 1 : 0;
    this.afterCR = false;
    this.lineEnd.lastIndex = start;
    for (let match: RegExpExecArray | null; (match = this.lineEnd.exec(text)); ) {
      const line = this.pending + text.slice(start, match.index);
      this.pending = '';
      start = this.lineEnd.lastIndex;
      if (match[0] === '\r' && start === text.length) this.afterCR = true;
      this.line(line);
    }
    this.pending += text.slice(start);
  }

  private line(line: string): void {
    if (line === '') return this.dispatch();
    const colon = line.indexOf(':');
    if (colon === 0) return; // a comment: heartbeats
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + (line.charCodeAt(colon + 1) === 32 ? 2 : 1));
    if (field === 'data') {
      this.data.push(value);
      this.dataLength += value.length + 1;
    } else if (field === 'event') this.type = value;
    else if (field === 'id') {
      if (value.includes('\0')) return;
      this.id = value;
      this.idSeen = true;
    } else if (field === 'retry' && /^\d+$/.test(value)) this.callbacks.onRetry(Number(value));
  }

  private dispatch(): void {
    const { data, type, id, idSeen } = this;
    this.data = [];
    this.dataLength = 0;
    this.type = '';
    this.id = undefined;
    this.idSeen = false;
    if (idSeen) this.callbacks.onId(id as string);
    if (data.length > 0) this.callbacks.onEvent({ type: type || 'message', data: data.join('\n'), id });
  }
}
