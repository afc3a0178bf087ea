// The Agent Work backend: an Express app that streams an AI coding agent's
// work to a browser page, built on ssecast the way a user would build it.
//   node examples/agent-work/server.mjs      (npm run example builds first)
// Environment: PORT (8000), HOST (127.0.0.1), SSE_JWT_SECRET (auth on when set),
// E2B_API_KEY (E2B sandboxes instead of local processes), GITHUB_API_URL,
// GITHUB_TOKEN, GITHUB_REPOSITORY (owner/repo), SSE_RETRY_MS (3000),
// SSE_HEARTBEAT_MS (15000).
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import express from 'express';
import { EventManager } from 'ssecast';
import { sse } from 'ssecast/express';
import { keyFor, principalOf, tokenOf } from './auth.mjs';
import { eventSchemas } from './events.mjs';
import { createBareRemote } from './git.mjs';
import { fakeGitHub } from './github.mjs';
import { createMetrics } from './metrics.mjs';
import { createSandboxProvider } from './sandbox.mjs';
import { AGENT_ID, DEFAULT_COMMAND, TaskError, TaskRunner } from './tasks.mjs';

const MAX_COMMAND_LENGTH = 4096;
/**
 * The hub's history. Everything that is state is keyed (events.mjs), and the hub keeps the latest
 * event of every key (up to 1,000 keys per agent, about 140 tasks) however much output follows; so
 * these bound only the output lines kept for a late joiner: the last 1,000 events of an agent, all
 * replayed to a page that connects fresh. A 2,000-line task keeps its last ~990 lines, and the page
 * says how many earlier ones the server no longer holds. 2 MiB per agent leaves room for 1,000
 * lines of about 2 KB each; a longer line takes more room, and fewer lines are kept.
 */
export const HISTORY = Object.freeze({ historySize: 1000, historyBytes: 2 * 1024 * 1024, replay: 1000 });
/** Heartbeats as an `event: heartbeat` (not a comment), so the page sees them and can tell live from stale. */
export const HEARTBEAT_EVENT = 'heartbeat';
const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
// The page's SSE client, resolved as an app resolves it: the `import` condition
// of ssecast/client is the ES module build, self-contained.
const CLIENT_MODULE = fileURLToPath(import.meta.resolve('ssecast/client'));

/**
 * Builds the app. Listening is the caller's: `listen()` below, or a test's
 * own server.
 * @param {{ env?: NodeJS.ProcessEnv, log?: Pick<Console, 'log' | 'warn' | 'error'> }} [options]
 */
export async function createAgentWorkApp({ env = process.env, log = console } = {}) {
  const heartbeatMs = Number(env.SSE_HEARTBEAT_MS ?? 15_000);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 100)
    throw new TypeError(`SSE_HEARTBEAT_MS must be an integer of at least 100, got ${env.SSE_HEARTBEAT_MS}`);
  const hub = new EventManager({ ...HISTORY, heartbeatMs, heartbeatEvent: HEARTBEAT_EVENT, schemas: eventSchemas });
  const metrics = createMetrics(hub);
  const key = env.SSE_JWT_SECRET ? keyFor(env.SSE_JWT_SECRET) : undefined;
  const workRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-work-remote-'));
  const remote = await createBareRemote(workRoot);
  /** The server's own origin, known once it listens; the in-process GitHub needs it. */
  let origin = '';
  const [owner, repo] = /^[\w.-]+\/[\w.-]+$/.test(env.GITHUB_REPOSITORY ?? '')
    ? String(env.GITHUB_REPOSITORY).split('/')
    : ['acme', 'agent-work-demo'];
  const runner = new TaskRunner({
    hub,
    metrics,
    sandboxProvider: createSandboxProvider(env),
    remoteUrl: remote.url,
    github: {
      get baseUrl() {
        return env.GITHUB_API_URL ?? `${origin}/github-api`;
      },
      token: env.GITHUB_TOKEN ?? 'ghp_in_process_example_token_0000000000',
      owner,
      repo,
    },
    log,
  });

  /** @param {import('express').Request} req */
  const principal = (req) =>
    key
      ? principalOf(
          tokenOf({ header: (name) => req.get(name), query: (name) => new URL(req.originalUrl, 'http://x').searchParams.get(name) }),
          key,
        )
      : undefined;

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => res.json({ ok: true }));
  // What the page needs to know to call a quiet stream stale: nothing, not even a heartbeat, for two intervals.
  app.get('/api/v1/config', (_req, res) => res.json({ heartbeat_event: HEARTBEAT_EVENT, heartbeat_ms: heartbeatMs }));
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get(
    '/api/v1/sse',
    sse(hub, {
      streams: (req) => new URL(req.originalUrl, 'http://x').searchParams.getAll('agent_id'),
      ...(key ? { authorize: principal } : {}),
      maxConnectionsPerPrincipal: 10,
      retryMs: Number(env.SSE_RETRY_MS ?? 3000),
    }),
  );
  app.post('/api/v1/agents/:agentId/tasks', express.json({ limit: '16kb' }), async (req, res) => {
    const { agentId } = req.params;
    if (!AGENT_ID.test(agentId))
      return res.status(400).json({ error: 'bad_request', message: 'agent ids are 1 to 64 of A-Z, a-z, 0-9, _ and -' });
    if (key) {
      const who = await principal(req);
      if (!who) return res.status(401).json({ error: 'unauthorized', message: 'authentication required' });
      if (who.streams !== '*' && !who.streams.includes(agentId)) {
        return res.status(403).json({ error: 'forbidden', message: `not allowed to run tasks for ${agentId}` });
      }
    }
    const command = req.body?.command ?? DEFAULT_COMMAND;
    if (typeof command !== 'string' || command.trim() === '' || command.length > MAX_COMMAND_LENGTH) {
      return res
        .status(400)
        .json({ error: 'bad_request', message: `command must be a non-empty string of at most ${MAX_COMMAND_LENGTH} characters` });
    }
    try {
      res.status(202).json(runner.start(agentId, command));
    } catch (error) {
      if (error instanceof TaskError) return res.status(429).json({ error: 'too_many_tasks', message: error.message });
      throw error;
    }
  });
  if (!env.GITHUB_API_URL) {
    const github = fakeGitHub({ webBase: () => `${origin}/github` });
    app.use('/github-api', github);
    app.use('/github', github);
  }
  app.get('/vendor/ssecast-client.js', (_req, res) => {
    res.sendFile(CLIENT_MODULE, { maxAge: '1m', headers: { 'content-type': 'text/javascript; charset=utf-8' } });
  });
  app.use(express.static(PUBLIC_DIR, { index: 'index.html' }));
  // Malformed JSON and the like: a JSON answer, never a stack trace.
  app.use((/** @type {any} */ error, /** @type {any} */ _req, /** @type {import('express').Response} */ res, /** @type {any} */ _next) => {
    const status = typeof error?.status === 'number' && error.status < 500 ? error.status : 500;
    if (status === 500) log.error('[agent-work]', error);
    res.status(status).json({
      error: status === 500 ? 'internal_error' : 'bad_request',
      message: status === 500 ? 'something went wrong' : String(error.message),
    });
  });

  return {
    app,
    hub,
    runner,
    auth: Boolean(key),
    /** Tells the app where it is reachable (the in-process GitHub builds URLs from it). */
    setOrigin(/** @type {string} */ value) {
      origin = value;
    },
    async close() {
      await runner.idle();
      await hub.close();
      await fs.rm(workRoot, { recursive: true, force: true });
    },
  };
}

/**
 * Starts the example on PORT/HOST and prints where.
 * @param {NodeJS.ProcessEnv} env
 */
export async function listen(env = process.env) {
  // The port first: a second `npm run example` must say the port is taken, not die with a stack
  // after making a temporary git remote it never removes.
  const server = http.createServer();
  const host = env.HOST ?? '127.0.0.1';
  const port = Number(env.PORT ?? 8000);
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(undefined));
    });
  } catch (error) {
    const code = /** @type {NodeJS.ErrnoException} */ (error).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    console.error(
      code === 'EADDRINUSE'
        ? `Port ${port} on ${host} is already in use (another npm run example?). Stop it, or pick another: PORT=8001 npm run example`
        : `Not allowed to listen on ${host}:${port}. Pick another port: PORT=8001 npm run example`,
    );
    process.exitCode = 1;
    return undefined;
  }
  const agentWork = await createAgentWorkApp({ env });
  server.on('request', agentWork.app);
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  agentWork.setOrigin(origin);
  console.log(`Agent Work is live on ${origin}/  (stream: ${origin}/api/v1/sse?agent_id=agent-1)`);
  if (!agentWork.auth)
    console.warn('SSE_JWT_SECRET is not set: the stream and the task API are open to anyone who can reach this address.');
  if (!agentWork.auth && !['127.0.0.1', 'localhost', '::1'].includes(host)) {
    console.warn(`Listening on ${host}: POST /api/v1/agents/:id/tasks runs shell commands on this machine. Set SSE_JWT_SECRET.`);
  }
  const shutdown = async () => {
    server.close();
    await agentWork.close();
    process.exit(0);
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  return { server, origin, ...agentWork };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await listen();
