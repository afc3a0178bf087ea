// A lightweight SSE client for the reliability benches: node:http plus
// eventsource-parser 3, cheap enough to run a thousand in one process.
//
// It follows its streams on a list of base URLs. When a stream ends or fails
// it waits the `retry:` value the server sent last (as a browser's
// EventSource does), then reconnects with `Last-Event-ID` to the NEXT URL of
// its list, so with two instances it moves to the other one. Everything it
// sees is recorded for the checker and the reports.
import http from 'node:http';
import { createParser } from 'eventsource-parser';

/**
 * @typedef {object} ReceivedEvent
 * @property {string} stream
 * @property {number} n
 * @property {string} id
 * @property {string} type
 */

/**
 * @typedef {object} ConnectionRecord
 * @property {string} url       the base URL it went to
 * @property {number} at        when the request was sent (ms after the reference time)
 * @property {number | undefined} openedAt  when a 200 response arrived
 * @property {number | undefined} endedAt   when it ended or failed
 * @property {string | undefined} lastEventId  the Last-Event-ID it sent
 * @property {number | undefined} status
 * @property {string | undefined} error  why it ended, when not cleanly
 * @property {number | undefined} retry  the retry: value received on it
 */

/**
 * @typedef {object} ClientRecord
 * @property {number} id
 * @property {string[]} streams
 * @property {ReceivedEvent[]} events
 * @property {object[]} resyncs  data of every resync event
 * @property {ConnectionRecord[]} connections
 * @property {number[]} retries  every retry: value received
 * @property {string[]} errors   parse errors and unexpected data
 */

const DEFAULT_RETRY_MS = 1000;

export class ResumingClient {
  /**
   * @param {object} options
   * @param {number} options.id
   * @param {string[]} options.urls  base URLs (http://host:port); /events?stream=… is added
   * @param {string[]} options.streams
   * @param {number} [options.refTime]  Date.now() that record times are relative to
   * @param {number} [options.defaultRetryMs]  the wait before the server has sent any retry:
   * @param {(client: ResumingClient, event: ReceivedEvent) => void} [options.onEvent]
   * @param {(client: ResumingClient, connection: ConnectionRecord) => void} [options.onOpen]
   */
  constructor({ id, urls, streams, refTime = Date.now(), defaultRetryMs = DEFAULT_RETRY_MS, onEvent, onOpen }) {
    this.id = id;
    this.urls = urls;
    this.streams = streams;
    this.refTime = refTime;
    this.retryMs = defaultRetryMs;
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.urlIndex = 0;
    /** @type {string | undefined} */
    this.lastEventId = undefined;
    this.stopped = false;
    this.query = streams.map((stream) => `stream=${encodeURIComponent(stream)}`).join('&');
    /** @type {ClientRecord} */
    this.record = { id, streams, events: [], resyncs: [], connections: [], retries: [], errors: [] };
    this.request = undefined;
    this.timer = undefined;
    this.open = false;
  }

  /** Connects to the first URL. */
  start() {
    this.connect();
    return this;
  }

  now() {
    return Date.now() - this.refTime;
  }

  connect() {
    if (this.stopped) return;
    const base = this.urls[this.urlIndex % this.urls.length];
    /** @type {ConnectionRecord} */
    const connection = {
      url: base,
      at: this.now(),
      openedAt: undefined,
      endedAt: undefined,
      lastEventId: this.lastEventId,
      status: undefined,
      error: undefined,
      retry: undefined,
    };
    this.record.connections.push(connection);
    const headers = { accept: 'text/event-stream' };
    if (this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId;
    let finished = false;
    const finish = (error) => {
      if (finished) return;
      finished = true;
      this.open = false;
      connection.endedAt = this.now();
      if (error) connection.error = String(error.code ?? error.message ?? error);
      if (this.request === req) this.request = undefined;
      this.scheduleReconnect();
    };
    const parser = createParser({
      onEvent: (message) => this.receive(message),
      onRetry: (retry) => {
        this.retryMs = retry;
        connection.retry ??= retry;
        this.record.retries.push(retry);
      },
      onError: (error) => this.record.errors.push(`parse: ${error.message}`),
    });
    const req = http.get(`${base}/events?${this.query}`, { agent: false, headers }, (res) => {
      connection.status = res.statusCode;
      if (res.statusCode !== 200) {
        res.resume();
        res.once('end', () => finish(new Error(`status ${res.statusCode}`)));
        res.on('error', finish);
        return;
      }
      connection.openedAt = this.now();
      this.open = true;
      this.onOpen?.(this, connection);
      res.setEncoding('utf8');
      res.on('data', (chunk) => parser.feed(chunk));
      res.once('end', () => finish());
      res.on('error', finish);
      res.once('close', () => finish(res.complete ? undefined : new Error('aborted')));
    });
    this.request = req;
    req.on('error', finish);
    req.once('close', () => {
      // A request that never got a response (refused, reset before headers).
      if (connection.status === undefined) finish(new Error('closed before a response'));
    });
  }

  /** @param {import('eventsource-parser').EventSourceMessage} message */
  receive(message) {
    if (message.id !== undefined && message.id !== '') this.lastEventId = message.id;
    const type = message.event ?? 'message';
    // The position marker only moves the id (taken above), as in a browser with no listener for it.
    if (type === 'ssecast-position') return;
    if (type === 'resync') {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        data = message.data;
      }
      this.record.resyncs.push(data);
      return;
    }
    let payload;
    try {
      payload = JSON.parse(message.data);
    } catch {
      this.record.errors.push(`data is not JSON: ${message.data.slice(0, 100)}`);
      return;
    }
    /** @type {ReceivedEvent} */
    const event = { stream: payload.stream, n: payload.n, id: message.id ?? '', type };
    this.record.events.push(event);
    this.onEvent?.(this, event);
  }

  scheduleReconnect() {
    if (this.stopped || this.timer) return;
    // The next URL of the list: with two instances, the other one.
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, this.retryMs);
  }

  /** Closes the connection; no reconnect after this. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.request?.destroy();
    this.request = undefined;
  }
}

/**
 * Starts `count` clients, `connectionsPerTick` at a time so that a thousand
 * do not all hit the accept queue in one instant.
 * @param {Array<ConstructorParameters<typeof ResumingClient>[0]>} specs
 * @returns {Promise<ResumingClient[]>}
 */
export async function startClients(specs, connectionsPerTick = 50) {
  const clients = [];
  for (let i = 0; i < specs.length; i++) {
    clients.push(new ResumingClient(specs[i]).start());
    if ((i + 1) % connectionsPerTick === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return clients;
}
