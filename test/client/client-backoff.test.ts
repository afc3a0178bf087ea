import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, createClient, type ClientStatus, type SseClient, type SseClientError } from '../../src/client/index.js';

/**
 * ssecast/client's timing, on fake timers and a fake fetch: the reconnect
 * delays (exponential, full jitter, capped), the server's `retry:` floor,
 * `Retry-After`, the reset after a connection opens, and the options that
 * are refused. The real-socket behaviour is in client.test.ts.
 */

const clients: SseClient[] = [];

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  vi.useRealTimers();
  vi.restoreAllMocks();
});

type Answer = (signal: AbortSignal) => Response | Promise<Response>;

/** A fetch double: answers from a script (the last answer repeats) and records when it was called, in fake time. */
function fakeFetch(answers: Answer[]) {
  const calls: { at: number; init: RequestInit | undefined }[] = [];
  const fetchImpl = async (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    calls.push({ at: Date.now(), init });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)] as Answer;
    return answer(init?.signal as AbortSignal);
  };
  return {
    fetch: fetchImpl as typeof fetch,
    calls,
    gaps: () => calls.map((call, i) => call.at - (i ? (calls[i - 1] as { at: number }).at : 0)),
  };
}

const refuse: Answer = () => Promise.reject(new TypeError('fetch failed'));
const status500: Answer = () => new Response('boom', { status: 500 });

/** A 200 event stream that sends `text` and ends (like a server that restarts), or stays open until aborted. */
function stream(text: string, { end = true } = {}): Answer {
  return (signal) => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text));
        if (end) controller.close();
        // A well-behaved fetch errors the body when its signal aborts.
        else signal.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')), { once: true });
      },
    });
    return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  };
}

function start(url: string, options: Parameters<typeof createClient>[1]) {
  const client = createClient(url, options);
  clients.push(client);
  const statuses: ClientStatus[] = [];
  const errors: SseClientError[] = [];
  client.onStatus((status) => statuses.push(status));
  client.onError((error) => errors.push(error));
  return { client, statuses, errors };
}

describe('backoffDelay', () => {
  const backoff = { initialMs: 100, maxMs: 1000, factor: 2 };

  it('draws uniformly under min(maxMs, initialMs * factor^attempt)', () => {
    expect([0, 1, 2, 3, 4, 10].map((attempt) => backoffDelay(attempt, backoff, 0, () => 0.5))).toEqual([50, 100, 200, 400, 500, 500]);
    expect(backoffDelay(3, backoff, 0, () => 0)).toBe(0);
    expect(backoffDelay(3, backoff, 0, () => 0.999999)).toBe(799);
    expect(backoffDelay(50, { initialMs: 100, maxMs: 1000, factor: 1 }, 0, () => 0.5)).toBe(50);
  });

  it('never goes under the floor (the server retry:), even above maxMs', () => {
    expect(backoffDelay(0, backoff, 300, () => 0)).toBe(300);
    expect(backoffDelay(0, backoff, 300, () => 0.9)).toBe(300);
    expect(backoffDelay(3, backoff, 300, () => 0.9)).toBe(720);
    expect(backoffDelay(10, backoff, 5000, () => 0.9)).toBe(5000);
  });

  it('uses Math.random by default', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.25);
    expect(backoffDelay(2, backoff)).toBe(100);
  });
});

describe('bad options', () => {
  it.each([
    [{ backoff: { factor: 0.5 } }, 'backoff.factor must be at least 1, got 0.5'],
    [{ backoff: { initialMs: -1 } }, 'backoff.initialMs must be a non-negative finite number, got -1'],
    [{ backoff: { maxMs: Number.POSITIVE_INFINITY } }, 'backoff.maxMs must be a non-negative finite number, got Infinity'],
    [{ heartbeatTimeoutMs: -5 }, 'heartbeatTimeoutMs must be a non-negative finite number, got -5'],
    [{ maxEventBytes: Number.NaN }, 'maxEventBytes must be a non-negative finite number, got NaN'],
    [{ maxQueue: -1 }, 'maxQueue must be a non-negative finite number, got -1'],
    [{ parse: 'xml' as never }, "parse must be 'auto', 'json', 'text' or a function, got xml"],
    [{ backoff: { resetAfterMs: -1 } }, 'backoff.resetAfterMs must be a non-negative finite number, got -1'],
    [{ lastEventId: 'a\nb' }, 'lastEventId must not contain NUL, CR or LF'],
    [{ onUnauthorized: true as never }, 'onUnauthorized must be a function'],
  ])('%o is a TypeError that names the option, before any request', (options, message) => {
    const { fetch, calls } = fakeFetch([refuse]);
    expect(() => createClient('http://127.0.0.1:9/', { ...options, fetch })).toThrow(new TypeError(message));
    expect(calls).toHaveLength(0);
  });
});

describe('reconnect timing (fake timers)', () => {
  it('waits min(maxMs, initialMs * factor^attempt) * random between failed attempts, and reports each', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { fetch, calls, gaps } = fakeFetch([refuse, status500, refuse]);
    const { client, statuses, errors } = start('http://example.test/events', {
      fetch,
      backoff: { initialMs: 100, maxMs: 1000, factor: 3 },
    });
    await vi.advanceTimersByTimeAsync(10_000);
    // 50, 150, 450, then capped at 1000 * 0.5.
    expect(gaps().slice(0, 8)).toEqual([0, 50, 150, 450, 500, 500, 500, 500]);
    expect(calls.length).toBe(1 + 3 + Math.floor((10_000 - 650) / 500));
    expect(client.status).toBe('reconnecting');
    expect(statuses).toEqual(['reconnecting']);
    expect(errors.slice(0, 3).map((error) => [error.code, error.status, error.willRetry])).toEqual([
      ['ERR_NETWORK', undefined, true],
      ['ERR_HTTP_STATUS', 500, true],
      ['ERR_NETWORK', undefined, true],
    ]);
    expect(errors[1]?.serverMessage).toBe('boom');
    client.close();
    const made = calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls.length).toBe(made);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('spreads a retry over the whole [0, cap) range: full jitter, not a fixed delay', async () => {
    vi.useFakeTimers({ now: 0 });
    const draws = [0, 0.99, 0.3];
    vi.spyOn(Math, 'random').mockImplementation(() => draws.shift() ?? 0.5);
    const { fetch, gaps } = fakeFetch([refuse]);
    start('http://example.test/events', { fetch, backoff: { initialMs: 1000, maxMs: 60_000, factor: 2 } });
    await vi.advanceTimersByTimeAsync(3_500);
    // attempt 0: 0 * 1000; attempt 1: 0.99 * 2000; attempt 2: 0.3 * 4000.
    expect(gaps().slice(0, 4)).toEqual([0, 0, 1980, 1200]);
  });

  it('starts again from initialMs once a connection has delivered an event', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { fetch, calls, gaps } = fakeFetch([refuse, refuse, refuse, stream('id: 1\ndata: {"n":1}\n\n'), refuse, refuse]);
    const { client, statuses } = start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 10_000, factor: 2 } });
    const seen: unknown[] = [];
    client.on('message', (event) => seen.push(event.data));
    await vi.advanceTimersByTimeAsync(1_000);
    // 50, 100, 200; the stream opens and ends; 50 again (not 400), then 100.
    expect(gaps().slice(0, 6)).toEqual([0, 50, 100, 200, 50, 100]);
    expect(seen).toEqual([{ n: 1 }]);
    expect(statuses.slice(0, 3)).toEqual(['reconnecting', 'open', 'reconnecting']);
    expect(client.lastEventId).toBe('1');
    // The attempt after the stream carried the id it resumes from.
    expect(new Headers(calls[3]?.init?.headers).get('last-event-id')).toBeNull();
    expect(new Headers(calls[4]?.init?.headers).get('last-event-id')).toBe('1');
  });

  it("never reconnects sooner than the server's retry:, whatever the backoff draws", async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { fetch, calls, gaps } = fakeFetch([stream('retry: 5000\n\n'), refuse, status500]);
    const { client } = start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 1000 } });
    await vi.advanceTimersByTimeAsync(4_999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10_000);
    // Every later failure waits the floor too, above maxMs.
    expect(gaps().slice(0, 4)).toEqual([0, 5000, 5000, 5000]);
    expect(client.status).toBe('reconnecting');
  });

  it('waits at least Retry-After on a 429, then connects', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const tooMany: Answer = () =>
      new Response(JSON.stringify({ error: 'too_many_connections', message: 'at most 1 open streams per user; close one first' }), {
        status: 429,
        headers: { 'content-type': 'application/json', 'retry-after': '2' },
      });
    const { fetch, calls } = fakeFetch([tooMany, stream('data: hi\n\n', { end: false })]);
    const { client, errors } = start('http://example.test/events', { fetch, backoff: { initialMs: 100 } });
    await vi.advanceTimersByTimeAsync(1_999);
    expect(calls).toHaveLength(1);
    expect(client.status).toBe('reconnecting');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      code: 'ERR_HTTP_STATUS',
      status: 429,
      willRetry: true,
      serverMessage: 'at most 1 open streams per user; close one first',
    });
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    expect(client.status).toBe('open');
  });

  it('aborts a connection that sends nothing for heartbeatTimeoutMs, and reconnects after the last id', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { fetch, calls } = fakeFetch([stream('retry: 10\n\nid: e1\ndata: 1\n\n', { end: false })]);
    const { client, errors } = start('http://example.test/events', { fetch, heartbeatTimeoutMs: 1000, backoff: { initialMs: 10 } });
    await vi.advanceTimersByTimeAsync(999);
    expect(client.status).toBe('open');
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1 + 10);
    expect(errors.map((error) => [error.code, error.willRetry])).toEqual([['ERR_STALE', true]]);
    expect(calls).toHaveLength(2);
    expect(new Headers(calls[1]?.init?.headers).get('last-event-id')).toBe('e1');
  });

  it('keeps backing off across connections that open and end before proving healthy (no event, no id)', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // What a server in trouble does: 200, the retry: preamble and a comment, then the end.
    const { fetch, gaps } = fakeFetch([stream('retry: 10\n\n: hi\n\n')]);
    const { statuses } = start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 1000, factor: 2 } });
    await vi.advanceTimersByTimeAsync(3_000);
    expect(gaps().slice(0, 7)).toEqual([0, 50, 100, 200, 400, 500, 500]);
    expect(statuses.slice(0, 4)).toEqual(['open', 'reconnecting', 'open', 'reconnecting']);
  });

  it('does not start over after a connection the watchdog aborted for silence', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // A buffering proxy: 200 and headers, then nothing.
    const { fetch, gaps } = fakeFetch([stream('', { end: false })]);
    const { errors } = start('http://example.test/events', { fetch, heartbeatTimeoutMs: 1000, backoff: { initialMs: 100, maxMs: 1000 } });
    await vi.advanceTimersByTimeAsync(6_000);
    expect(gaps().slice(0, 5)).toEqual([0, 1050, 1100, 1200, 1400]);
    expect(errors.every((error) => error.code === 'ERR_STALE')).toBe(true);
  });

  it('starts over after a quiet connection that kept receiving heartbeats for resetAfterMs', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const beats =
      (count: number): Answer =>
      () => {
        let sent = 0;
        let timer: ReturnType<typeof setInterval>;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('retry: 10\n\n'));
            timer = setInterval(() => {
              controller.enqueue(new TextEncoder().encode(':heartbeat\n\n'));
              if (++sent === count) {
                clearInterval(timer);
                controller.close();
              }
            }, 1000);
          },
          cancel: () => clearInterval(timer),
        });
        return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
      };
    const { fetch, gaps } = fakeFetch([refuse, refuse, refuse, beats(3), refuse, beats(5), refuse]);
    start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 100_000, resetAfterMs: 5000 } });
    await vi.advanceTimersByTimeAsync(12_000);
    // 3 s of heartbeats is under resetAfterMs: the backoff goes on (400 after 200, then 800);
    // 5 s of them is enough: it starts over at 50.
    expect(gaps().slice(0, 8)).toEqual([0, 50, 100, 200, 3000 + 400, 800, 5000 + 50, 100]);
  });

  it('caps a huge retry: at 10 * maxMs instead of overflowing the timer into a tight loop', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { fetch, gaps } = fakeFetch([stream('retry: 99999999999999999999\n\n'), refuse]);
    start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 1000 } });
    await vi.advanceTimersByTimeAsync(25_000);
    expect(gaps().slice(0, 3)).toEqual([0, 10_000, 10_000]);
  });

  it('reads a Retry-After that is an HTTP date', async () => {
    vi.useFakeTimers({ now: Date.parse('2030-01-01T00:00:00Z') });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const unavailable: Answer = () => new Response(null, { status: 503, headers: { 'retry-after': 'Tue, 01 Jan 2030 00:00:03 GMT' } });
    const { fetch, gaps } = fakeFetch([unavailable, stream('data: hi\n\n', { end: false })]);
    const { client } = start('http://example.test/events', { fetch, backoff: { initialMs: 100 } });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(gaps()[1]).toBe(3000);
    expect(client.status).toBe('open');
  });

  it('treats an unreadable Retry-After as none: the backoff still paces the retries (no retry storm)', async () => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const unavailable: Answer = () => new Response(null, { status: 503, headers: { 'retry-after': 'soon' } });
    const { fetch, gaps, calls } = fakeFetch([unavailable]);
    start('http://example.test/events', { fetch, backoff: { initialMs: 100, maxMs: 1000 } });
    await vi.advanceTimersByTimeAsync(1000);
    // Full jitter at 0.5: 50, 100, 200, 400 ms; it used to be a NaN delay, about 1 ms, ~1,000 requests a second.
    expect(gaps().slice(1, 4)).toEqual([50, 100, 200]);
    expect(calls.length).toBeLessThanOrEqual(6);
  });

  it('retries a 401 once, at once, with fresh headers when onUnauthorized says so; a second 401 closes it', async () => {
    vi.useFakeTimers({ now: 0 });
    const unauthorized: Answer = () =>
      new Response('{"error":"unauthorized","message":"token expired"}', { status: 401, headers: { 'content-type': 'application/json' } });
    const { fetch, calls } = fakeFetch([unauthorized]);
    let n = 0;
    const { client, errors } = start('http://example.test/events', {
      fetch,
      headers: () => ({ authorization: `Bearer t${++n}` }),
      onUnauthorized: () => true,
    });
    await vi.advanceTimersByTimeAsync(10);
    expect(client.status).toBe('closed');
    expect(calls.map((call) => new Headers(call.init?.headers).get('authorization'))).toEqual(['Bearer t1', 'Bearer t2']);
    expect(errors.map((error) => [error.code, error.status, error.willRetry, error.serverMessage])).toEqual([
      ['ERR_HTTP_STATUS', 401, true, 'token expired'],
      ['ERR_HTTP_STATUS', 401, false, 'token expired'],
    ]);
  });
});
