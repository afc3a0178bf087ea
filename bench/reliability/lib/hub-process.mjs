// Forks bench/reliability/hub-server.mjs and talks to it over IPC.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('../hub-server.mjs', import.meta.url));

/** Every hub process started here; killed on exit whatever happens. */
const alive = new Set();
process.once('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});

/**
 * @typedef {object} HubOptions
 * @property {'memory' | 'redis'} [backend]
 * @property {string} [redisUrl]
 * @property {string} [prefix]
 * @property {number | { min: number, max: number }} [retryMs]
 * @property {number} [historySize]
 * @property {number} [heartbeatMs]
 */

/**
 * @typedef {object} HubProcess
 * @property {number} port
 * @property {number} pid
 * @property {string} url  base URL, e.g. http://127.0.0.1:PORT
 * @property {(cmd: string, args?: object) => Promise<any>} request
 * @property {Promise<any>} handoff  resolves with the 'handoff' message sent on SIGTERM
 * @property {Promise<any>} shutdownReport  resolves with the 'shutdown' message (or undefined if it never came)
 * @property {Promise<{ code: number | null, signal: string | null }>} exited
 * @property {() => Promise<{ code: number | null, signal: string | null, report: any }>} terminate  SIGTERM and wait
 * @property {() => void} kill  SIGKILL
 * @property {() => string} stderr  the tail of its stderr
 */

/**
 * Starts one hub-server process and waits until it listens.
 * @param {HubOptions} [options]
 * @returns {Promise<HubProcess>}
 */
export async function startHub(options = {}) {
  const args = ['--backend', options.backend ?? 'memory', '--history', String(options.historySize ?? 1000)];
  if (options.redisUrl) args.push('--redis-url', options.redisUrl);
  if (options.prefix) args.push('--prefix', options.prefix);
  if (options.heartbeatMs !== undefined) args.push('--heartbeat', String(options.heartbeatMs));
  const retry = options.retryMs ?? 3000;
  if (typeof retry === 'number') args.push('--retry', String(retry));
  else args.push('--retry-min', String(retry.min), '--retry-max', String(retry.max));

  const child = fork(SERVER, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  alive.add(child);
  let stderrTail = '';
  child.stderr?.on('data', (chunk) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-8000);
  });
  child.stdout?.resume();
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      alive.delete(child);
      resolve({ code, signal });
    }),
  );

  let nextId = 0;
  const pending = new Map();
  let resolveHandoff;
  let resolveShutdown;
  const handoff = new Promise((resolve) => (resolveHandoff = resolve));
  const shutdownReport = new Promise((resolve) => (resolveShutdown = resolve));
  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  child.on('message', (message) => {
    if (message?.type === 'ready') return resolveReady(message);
    if (message?.type === 'handoff') return resolveHandoff(message);
    if (message?.type === 'shutdown') return resolveShutdown(message);
    const waiter = pending.get(message?.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.type === 'error') waiter.reject(new Error(`hub-server ${message.id}: ${message.message}`));
    else waiter.resolve(message);
  });
  void exited.then(({ code, signal }) => {
    rejectReady(new Error(`hub-server exited before it was ready (code ${code}, signal ${signal}): ${stderrTail}`));
    resolveHandoff(undefined);
    resolveShutdown(undefined);
    for (const waiter of pending.values()) waiter.reject(new Error(`hub-server exited (code ${code}, signal ${signal})`));
    pending.clear();
  });

  const { port, pid } = await ready;
  return {
    port,
    pid,
    url: `http://127.0.0.1:${port}`,
    request(cmd, extra = {}) {
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ ...extra, id, cmd });
      });
    },
    handoff,
    shutdownReport,
    exited,
    async terminate() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const result = await exited;
      clearTimeout(timer);
      const report = await Promise.race([shutdownReport, new Promise((resolve) => setTimeout(resolve, 100))]);
      return { ...result, report };
    },
    kill() {
      child.kill('SIGKILL');
    },
    stderr: () => stderrTail,
  };
}
