import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { createAgentWorkApp } from '../../examples/agent-work/server.mjs';
import { issueToken, keyFor } from '../../examples/agent-work/auth.mjs';
import {
  cleanupAfterEach,
  listen,
  openStream,
  waitUntil,
  type ParsedEvent,
  type StreamClient,
  type TestServer,
} from '../support/helpers.js';

const SECRET = 'agent-work-test-secret-at-least-32-bytes';
const GHP = 'ghp_' + 'S3cr3tT0k3nV4lu3F0rT3st1ng0000000000';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const cleanups = cleanupAfterEach();

async function start(
  env: Record<string, string> = {},
): Promise<{ server: TestServer; base: string; hub: Awaited<ReturnType<typeof createAgentWorkApp>>['hub'] }> {
  const agentWork = await createAgentWorkApp({ env, log: { log() {}, warn() {}, error() {} } });
  const server = await listen(http.createServer(agentWork.app));
  agentWork.setOrigin(server.url);
  cleanups.push(
    () => agentWork.close(),
    () => server.close(),
  );
  return { server, base: server.url, hub: agentWork.hub };
}

async function runTask(base: string, agent: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/api/v1/agents/${agent}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

const data = (event: ParsedEvent) => JSON.parse(event.data) as Record<string, unknown>;
/** A task's last event is its record with the outcome. */
const finished = (client: StreamClient, count = 1) =>
  client.events.filter((e) => e.event === 'task_status' && ['completed', 'failed'].includes(data(e).status as string)).length >= count;
/** What the hub keys each event with (examples/agent-work/events.mjs), derived from what the client received. */
const keyOf = (type: string, d: Record<string, unknown>) =>
  ({
    task_status: `task:${d.task_id}`,
    sandbox_status: `task:${d.task_id}:sandbox`,
    git_operation: `task:${d.task_id}:git:${d.operation}`,
    pr_created: `task:${d.task_id}:pr`,
  })[type];
const seqOf = (id: string | undefined) => Number(String(id).split('.')[1]);

describe('Agent Work over HTTP', () => {
  it('streams a whole task in order, with every field of the five event types and a timestamp on each', async () => {
    const { base } = await start();
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => stream.close());
    const response = await runTask(base, 'agent-1', { command: "printf 'one\\ntwo\\n'; echo warn 1>&2" });
    expect(response.status).toBe(202);
    const ids = (await response.json()) as { task_id: string; sandbox_id: string };
    expect(ids).toEqual({ task_id: expect.stringMatching(/^task-/), sandbox_id: expect.stringMatching(/^sbx-/) });
    await stream.waitFor(finished, 20_000, 'the task to finish');

    const events = stream.events.map((e) => ({ type: e.event as string, data: data(e) }));
    for (const event of events) {
      expect(event.data.timestamp).toMatch(ISO);
      expect(event.data.task_id).toBe(ids.task_id);
      // One connection may follow several agents: every payload says whose it is.
      expect(event.data.agent_id).toBe('agent-1');
    }
    // The order of the flow: sandbox up, clone, branch, the command, commit, push, PR, sandbox down.
    const milestones = events
      .filter((e) => e.type !== 'command_output' && !(e.type === 'git_operation' && e.data.status === 'in_progress'))
      .map((e) => `${e.type}:${e.data.operation ?? ''}:${e.data.status ?? ''}`);
    const firstOutput = events.findIndex((e) => e.type === 'command_output');
    expect(milestones).toEqual([
      'task_status::running',
      'sandbox_status::creating',
      'sandbox_status::running',
      'git_operation:clone:started',
      'git_operation:clone:completed',
      'git_operation:branch:started',
      'git_operation:branch:completed',
      'git_operation:commit:started',
      'git_operation:commit:completed',
      'git_operation:push:started',
      'git_operation:push:completed',
      'pr_created::',
      'sandbox_status::stopped',
      'task_status::completed',
    ]);
    expect(events[firstOutput - 1]).toMatchObject({ type: 'git_operation', data: { operation: 'branch', status: 'completed' } });

    // The task's record, when it starts and when it ends: what a card shows as status, command, start time and duration.
    const records = events.filter((e) => e.type === 'task_status').map((e) => e.data);
    const command = "printf 'one\\ntwo\\n'; echo warn 1>&2";
    expect(records[0]).toEqual({
      task_id: ids.task_id,
      agent_id: 'agent-1',
      sandbox_id: ids.sandbox_id,
      command,
      status: 'running',
      started_at: expect.stringMatching(ISO),
      timestamp: expect.stringMatching(ISO),
    });
    expect(records[1]).toEqual({
      ...records[0],
      status: 'completed',
      finished_at: expect.stringMatching(ISO),
      timestamp: expect.any(String),
    });
    expect(Date.parse(records[1]?.finished_at as string)).toBeGreaterThanOrEqual(Date.parse(records[0]?.started_at as string));

    const status = events.find((e) => e.type === 'sandbox_status')?.data;
    expect(status).toEqual({
      sandbox_id: ids.sandbox_id,
      agent_id: 'agent-1',
      status: 'creating',
      task_id: ids.task_id,
      timestamp: expect.any(String),
    });
    const clone = events.filter((e) => e.type === 'git_operation' && e.data.operation === 'clone');
    const progress = clone.map((e) => e.data.progress as number);
    expect(progress[0]).toBe(0);
    expect(progress.at(-1)).toBe(100);
    expect(progress.some((p) => p > 0 && p < 100)).toBe(true);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    for (const e of clone)
      expect(Object.keys(e.data).sort()).toEqual(expect.arrayContaining(['message', 'operation', 'sandbox_id', 'status', 'timestamp']));
    // In order per stream; stdout and stderr are separate pipes, so not across them.
    const lines = (stream: string) =>
      events.filter((e) => e.type === 'command_output' && e.data.stream === stream).map((e) => e.data.output);
    expect(lines('stdout')).toEqual(['one\n', 'two\n']);
    expect(lines('stderr')).toEqual(['warn\n']);
    // Numbered per task, from 1, in the order published.
    expect(events.filter((e) => e.type === 'command_output').map((e) => e.data.line)).toEqual([1, 2, 3]);
    const output = events.find((e) => e.type === 'command_output' && e.data.stream === 'stdout')?.data;
    expect(output).toEqual({
      sandbox_id: ids.sandbox_id,
      line: expect.any(Number),
      output: 'one\n',
      stream: 'stdout',
      task_id: ids.task_id,
      agent_id: 'agent-1',
      timestamp: expect.any(String),
    });
    const pr = events.find((e) => e.type === 'pr_created')?.data as Record<string, unknown>;
    expect(pr).toEqual({
      task_id: ids.task_id,
      agent_id: 'agent-1',
      pr_url: `${base}/github/acme/agent-work-demo/pull/1`,
      pr_number: 1,
      timestamp: expect.any(String),
    });
    expect(await (await fetch(pr.pr_url as string)).text()).toContain(`Agent task ${ids.task_id}`);
  }, 30_000);

  it('keeps secrets out of the stream: tokens in output and in URLs are redacted', async () => {
    const { base } = await start();
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => stream.close());
    const command = [
      `echo "GITHUB_TOKEN=${GHP}"`,
      `echo "remote: https://x-access-token:${GHP}@github.com/acme/app.git" 1>&2`,
      'echo "Authorization: Bearer abc.def-123456789"',
      'echo "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"',
    ].join('; ');
    await runTask(base, 'agent-1', { command });
    await stream.waitFor(finished, 20_000, 'the task to finish');
    expect(stream.raw).not.toContain(GHP);
    expect(stream.raw).not.toContain('abc.def-123456789');
    expect(stream.raw).not.toContain('github_pat_11');
    // stdout and stderr are separate pipes: their lines may interleave either way.
    expect(
      stream.events
        .filter((e) => e.event === 'command_output')
        .map((e) => data(e).output)
        .sort(),
    ).toEqual([
      'Authorization: [REDACTED]\n',
      'GITHUB_TOKEN=[REDACTED]\n',
      'pat [REDACTED]\n',
      'remote: https://[REDACTED]@github.com/acme/app.git\n',
    ]);
  }, 30_000);

  it('reports a failing command with its error and still stops the sandbox, with no commit or PR', async () => {
    const { base } = await start();
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-3`);
    cleanups.push(() => stream.close());
    await runTask(base, 'agent-3', { command: 'echo about to fail; exit 3' });
    await stream.waitFor(finished, 20_000, 'the task to finish');
    const [sandbox, last] = stream.events.slice(-2) as [ParsedEvent, ParsedEvent];
    expect(sandbox.event).toBe('sandbox_status');
    expect(data(sandbox)).toMatchObject({ status: 'error', message: expect.stringContaining('exited with code 3') });
    expect(last.event).toBe('task_status');
    expect(data(last)).toMatchObject({
      status: 'failed',
      message: 'the command exited with code 3',
      started_at: expect.stringMatching(ISO),
      finished_at: expect.stringMatching(ISO),
    });
    expect(stream.events.some((e) => e.event === 'pr_created')).toBe(false);
    expect(stream.events.some((e) => e.event === 'git_operation' && data(e).operation === 'commit')).toBe(false);
  }, 30_000);

  it('keeps agents apart: a stream sees only the agents it asked for', async () => {
    const { base } = await start();
    const one = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    const both = await openStream(`${base}/api/v1/sse?agent_id=agent-1&agent_id=agent-2`);
    cleanups.push(
      () => one.close(),
      () => both.close(),
    );
    await runTask(base, 'agent-2', { command: 'echo for two' });
    await both.waitFor(finished, 20_000, 'the task to finish');
    expect(both.events.length).toBeGreaterThan(10);
    expect(one.events).toEqual([]);
  }, 30_000);

  it('follows two agents on one connection, and resumes it with one Last-Event-ID: every event of both once, in order', async () => {
    const { base } = await start();
    const url = `${base}/api/v1/sse?agent_id=agent-1&agent_id=agent-2`;
    const reference = await openStream(url);
    const first = await openStream(url);
    cleanups.push(
      () => reference.close(),
      () => first.close(),
    );
    const slow = 'for i in $(seq 1 30); do echo "line $i"; sleep 0.02; done';
    await runTask(base, 'agent-1', { command: slow });
    await runTask(base, 'agent-2', { command: slow });
    await first.waitFor((c) => c.events.filter((e) => e.event === 'command_output').length >= 10, 20_000, 'some output');
    first.close();
    const resumeFrom = first.events.at(-1)?.id as string;
    const second = await openStream(url, { 'last-event-id': resumeFrom });
    cleanups.push(() => second.close());
    await reference.waitFor((c) => finished(c, 2), 30_000, 'both tasks to finish');
    await second.waitFor((c) => c.events.at(-1)?.id === reference.events.at(-1)?.id, 10_000, 'the resumed stream to catch up');

    const joined = [...first.events, ...second.events];
    expect(second.events.some((e) => e.event === 'resync')).toBe(false);
    expect(joined.map((e) => e.id)).toEqual(reference.events.map((e) => e.id));
    expect(new Set(joined.map((e) => data(e).agent_id))).toEqual(new Set(['agent-1', 'agent-2']));
  }, 40_000);

  it('keeps every task whole for a late joiner, however much output follows: the state is keyed, the output is the tail', async () => {
    const { base } = await start();
    const live = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => live.close());
    const small = (await (await runTask(base, 'agent-1', { command: 'echo small' })).json()) as { task_id: string };
    await live.waitFor((c) => finished(c, 1), 20_000, 'the first task to finish');
    const long = (await (await runTask(base, 'agent-1', { command: 'seq 1 2000' })).json()) as { task_id: string };
    await live.waitFor((c) => finished(c, 2), 60_000, 'the 2,000-line task to finish');
    const lastId = live.events.at(-1)?.id;

    const late = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => late.close());
    await late.waitFor((c) => c.events.at(-1)?.id === lastId, 10_000, 'the replay');
    const events = late.events.map((e) => ({ id: e.id as string, type: e.event as string, data: data(e) }));

    // In id order, each once.
    const seqs = events.map((e) => seqOf(e.id));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    // Every key's last value is the one the live stream saw last, and no key goes back to an older value.
    const latest = new Map<string, { id: string | undefined; data: string }>();
    for (const e of live.events) {
      const key = keyOf(e.event as string, data(e));
      if (key) latest.set(key, { id: e.id, data: e.data });
    }
    const seen = new Map<string, { id: string | undefined; data: string }>();
    for (const e of late.events) {
      const key = keyOf(e.event as string, data(e));
      if (key) seen.set(key, { id: e.id, data: e.data });
    }
    expect(seen).toEqual(latest);

    // The first task's events are all long gone from the tail: what is left of it is its state, one event per key, whole.
    const first = events.filter((e) => e.data.task_id === small.task_id);
    expect(first.map((e) => `${e.type}:${e.data.operation ?? e.data.status}`)).toEqual([
      'git_operation:clone',
      'git_operation:branch',
      'git_operation:commit',
      'git_operation:push',
      'pr_created:undefined',
      'sandbox_status:stopped',
      'task_status:completed',
    ]);
    for (const e of first.filter((e) => e.type === 'git_operation')) expect(e.data).toMatchObject({ status: 'completed', progress: 100 });

    // The long one: its state, and the last lines it printed, numbered without a gap up to 2,000.
    const second = events.filter((e) => e.data.task_id === long.task_id);
    const lines = second.filter((e) => e.type === 'command_output').map((e) => e.data);
    const firstLine = lines[0]?.line as number;
    expect(firstLine).toBeGreaterThan(1);
    expect(lines.map((line) => line.line)).toEqual(Array.from({ length: 2001 - firstLine }, (_, i) => firstLine + i));
    expect(lines.map((line) => line.output)).toEqual(Array.from({ length: 2001 - firstLine }, (_, i) => `${firstLine + i}\n`));
    // The hub keeps the last 1,000 events: the lines, and the task's events after them.
    expect(lines.length).toBeGreaterThan(900);
    expect(second.at(-1)).toMatchObject({ type: 'task_status', data: { status: 'completed', command: 'seq 1 2000' } });
    for (const operation of ['clone', 'branch', 'commit', 'push']) {
      const bar = second.filter((e) => e.type === 'git_operation' && e.data.operation === operation).at(-1);
      expect(bar?.data).toMatchObject({ status: 'completed', progress: 100 });
    }
    expect(second.some((e) => e.type === 'pr_created')).toBe(true);
  }, 90_000);

  it('sends heartbeats as events the page can see, at the interval it is told', async () => {
    await expect(createAgentWorkApp({ env: { SSE_HEARTBEAT_MS: 'soon' }, log: { log() {}, warn() {}, error() {} } })).rejects.toThrow(
      /SSE_HEARTBEAT_MS/,
    );
    const { base } = await start({ SSE_HEARTBEAT_MS: '200' });
    expect(await (await fetch(`${base}/api/v1/config`)).json()).toEqual({ heartbeat_event: 'heartbeat', heartbeat_ms: 200 });
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => stream.close());
    await stream.waitFor((c) => c.events.filter((e) => e.event === 'heartbeat').length >= 2, 5_000, 'two heartbeat events');
    for (const event of stream.events) expect(event).toEqual({ event: 'heartbeat', id: undefined, data: '' });
    expect(stream.raw).toContain('event: heartbeat\ndata:');
    expect(stream.comments).not.toContain('heartbeat');
  });

  it('validates every payload with its zod schema: an invalid one is refused at publish and never reaches the page', async () => {
    const { base, hub } = await start();
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => stream.close());
    await waitUntil(() => hub.stats().connections === 1);
    // The types already refuse these; the schemas catch what JavaScript callers and drifting services send.
    const untyped = hub as unknown as { publish(stream: string, type: string, data: unknown): Promise<unknown> };
    const publish = (type: string, data: unknown) => untyped.publish('agent-1', type, data);
    const now = new Date().toISOString();
    await expect(publish('sandbox_status', { sandbox_id: 's', agent_id: 'agent-1', status: 'paused', timestamp: now })).rejects.toThrow(
      /^invalid sandbox_status event for stream "agent-1": data\.status: /,
    );
    await expect(
      publish('git_operation', { sandbox_id: 's', operation: 'clone', status: 'started', message: 'x', progress: 140, timestamp: now }),
    ).rejects.toThrow(/data\.progress: /);
    await expect(publish('pr_created', { pr_url: 'javascript:alert(1)', pr_number: 1, timestamp: now })).rejects.toThrow(/data\.pr_url: /);
    await expect(
      publish('command_output', { sandbox_id: 's', line: 1, output: 'x', stream: 'stdout', timestamp: now, extra: 1 }),
    ).rejects.toThrow(/data: /);
    await expect(publish('command_output', { sandbox_id: 's', line: 0, output: 'x', stream: 'stdout', timestamp: now })).rejects.toThrow(
      /data\.line: /,
    );
    await expect(
      publish('task_status', {
        task_id: 't',
        agent_id: 'a',
        sandbox_id: 's',
        command: 'x',
        status: 'done',
        started_at: now,
        timestamp: now,
      }),
    ).rejects.toThrow(/data\.status: /);
    await expect(publish('deploy_started', {})).rejects.toThrow('no schema for event type "deploy_started"');
    await publish('command_output', { sandbox_id: 's', line: 1, output: 'ok\n', stream: 'stdout', timestamp: now });
    await stream.waitFor((c) => c.events.length === 1);
    expect(stream.events.map((e) => e.event)).toEqual(['command_output']);
  });

  it('answers bad task requests with 400 and a message', async () => {
    const { base } = await start();
    expect((await runTask(base, 'bad agent!', {})).status).toBe(400);
    expect((await runTask(base, 'agent-1', { command: 42 })).status).toBe(400);
    expect((await runTask(base, 'agent-1', { command: 'x'.repeat(5000) })).status).toBe(400);
    const malformed = await fetch(`${base}/api/v1/agents/agent-1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{oops',
    });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: 'bad_request' });
    expect((await fetch(`${base}/api/v1/sse`)).status).toBe(400);
  });

  it('serves /healthz, the page, and /metrics in Prometheus text', async () => {
    const { base } = await start();
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ ok: true });
    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('Agent Work');
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => stream.close());
    await runTask(base, 'agent-1', { command: 'echo metrics' });
    await stream.waitFor(finished, 20_000, 'the task to finish');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('ssecast_connections 1');
    expect(metrics).toMatch(/ssecast_events_published_total \d+/);
    expect(metrics).toMatch(/ssecast_events_delivered_total \d+/);
    expect(metrics).toContain('ssecast_clients_dropped_total 0');
    expect(metrics).toContain('agent_work_events_total{type="pr_created"} 1');
    expect(metrics).toContain('agent_work_events_total{type="command_output"} 1');
  }, 30_000);
});

describe('Agent Work with SSE_JWT_SECRET', () => {
  const key = keyFor(SECRET);
  const token = (agents: string[] | '*', sub = 'alice') => issueToken({ sub, agents }, key);

  it('answers 401 without a token or with a forged one, 403 for another agent, 429 past ten streams', async () => {
    const { base } = await start({ SSE_JWT_SECRET: SECRET });
    const url = `${base}/api/v1/sse?agent_id=agent-1`;
    const none = await openStream(url);
    expect(none.status).toBe(401);
    const forged = await issueToken({ sub: 'alice', agents: '*' }, keyFor('not-the-server-secret-not-the-server-secret'));
    expect((await openStream(url, { authorization: `Bearer ${forged}` })).status).toBe(401);
    const alice = await token(['agent-1']);
    expect((await openStream(`${base}/api/v1/sse?agent_id=agent-2`, { authorization: `Bearer ${alice}` })).status).toBe(403);
    expect((await runTask(base, 'agent-2', {}, { authorization: `Bearer ${alice}` })).status).toBe(403);
    expect((await runTask(base, 'agent-1', {})).status).toBe(401);

    const open: StreamClient[] = [];
    for (let i = 0; i < 10; i++) open.push(await openStream(url, { authorization: `Bearer ${alice}` }));
    cleanups.push(() => open.forEach((c) => c.close()));
    expect(open.map((c) => c.status)).toEqual(Array(10).fill(200));
    const eleventh = await openStream(url, { authorization: `Bearer ${alice}` });
    expect(eleventh.status).toBe(429);
    // Another user has slots of their own.
    const bob = await openStream(url, { authorization: `Bearer ${await token('*', 'bob')}` });
    cleanups.push(() => bob.close());
    expect(bob.status).toBe(200);
  });

  it('ends the stream when the token expires, and refuses the expired token on reconnect', async () => {
    const { base } = await start({ SSE_JWT_SECRET: SECRET });
    const brief = await issueToken({ sub: 'alice', agents: ['agent-1'], expiresIn: '2s' }, key);
    const stream = await openStream(`${base}/api/v1/sse?agent_id=agent-1`, { authorization: `Bearer ${brief}` });
    cleanups.push(() => stream.close());
    expect(stream.status).toBe(200);
    await stream.ended;
    expect(stream.comments).toContain('credentials expired');
    const again = await openStream(`${base}/api/v1/sse?agent_id=agent-1`, { authorization: `Bearer ${brief}` });
    expect(again.status).toBe(401);
  }, 10_000);

  it('takes the token from the access_token cookie or query parameter, as EventSource needs', async () => {
    const { base } = await start({ SSE_JWT_SECRET: SECRET });
    const alice = await token(['agent-1']);
    const byCookie = await openStream(`${base}/api/v1/sse?agent_id=agent-1`, { cookie: `access_token=${alice}` });
    const byQuery = await openStream(`${base}/api/v1/sse?agent_id=agent-1&access_token=${alice}`);
    cleanups.push(
      () => byCookie.close(),
      () => byQuery.close(),
    );
    expect([byCookie.status, byQuery.status]).toEqual([200, 200]);
    const response = await runTask(base, 'agent-1', { command: 'echo authorised' }, { authorization: `Bearer ${alice}` });
    expect(response.status).toBe(202);
    await waitUntil(() => byQuery.events.some((e) => e.event === 'pr_created'), 20_000, 'the PR');
    expect(byCookie.events.length).toBeGreaterThan(0);
  }, 30_000);
});
