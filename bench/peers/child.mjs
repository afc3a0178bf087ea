// The bench's child processes (a server, a load client) and their IPC, by
// PROTOCOL.md: a request carries an id; the answer is `done` or `error`.
// Used by run.mjs and by bench/reliability's slow-clients and churn cases.
import { fork } from 'node:child_process';

/** How long the server may take to see every client connection open, or closed. */
const SETTLE_MS = 30_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Forks `file` and returns a handle to call it by the protocol (`{ id, cmd }` →
 * `done` or `error`). A call to a process that has exited fails at once, so a
 * contender that crashes fails its run quickly instead of waiting out timeouts.
 */
export function startChild(label, file, args, execArgv) {
  const child = fork(file, args, { execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  // Whatever the children print is progress, not table.
  const forward = (stream) => stream.on('data', (chunk) => process.stderr.write(String(chunk).replace(/^(?=.)/gm, `  ${label}| `)));
  forward(child.stdout);
  forward(child.stderr);
  const pending = new Map();
  let nextId = 1;
  let exited = null;
  let onReady;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} sent no ready message within 20 s`)), 20_000);
    onReady = (message) => (clearTimeout(timer), resolve(message));
    child.once(
      'exit',
      (code, signal) => (clearTimeout(timer), reject(new Error(`${label} exited while starting (${signal ?? `code ${code}`})`))),
    );
  });
  ready.catch(() => {}); // awaited by the caller; this only keeps an early exit from being an unhandled rejection
  child.on('message', (message) => {
    if (message?.type === 'ready') return onReady(message);
    const entry = pending.get(message?.id);
    if (!entry) return;
    pending.delete(message.id);
    clearTimeout(entry.timer);
    if (message.type === 'error') entry.reject(new Error(`${label} ${entry.cmd}: ${message.message}`));
    else entry.resolve(message);
  });
  child.on('exit', (code, signal) => {
    exited = signal ?? `code ${code}`;
    for (const entry of pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new Error(`${label} exited (${exited}) during ${entry.cmd}`));
    }
    pending.clear();
  });
  child.on('error', () => {}); // an IPC send to a dying process; the exit handler reports it
  /** @returns {Promise<any>} */
  const call = (cmd, fields = {}, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      if (exited) return reject(new Error(`${label} has exited (${exited}); cannot ${cmd}`));
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${label} ${cmd}: no answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      pending.set(id, { cmd, resolve, reject, timer });
      child.send({ ...fields, id, cmd });
    });
  /** Asks it to exit, then kills it; resolves once it is gone. */
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    call('exit', {}, 3000).catch(() => {});
    await Promise.race([gone, sleep(3000)]);
    if (!exited) child.kill('SIGKILL');
    await Promise.race([gone, sleep(5000)]);
  };
  return {
    label,
    ready,
    call,
    stop,
    kill: () => exited || child.kill('SIGKILL'),
    get exited() {
      return exited;
    },
  };
}

/** Polls the server until `test(connections)` holds; resolves with the count and how long it took. */
export async function settle(server, test, what, limitMs = SETTLE_MS) {
  const started = performance.now();
  let connections;
  while (performance.now() - started < limitMs) {
    ({ connections } = await server.call('connections'));
    if (test(connections)) return { connections, ms: Math.round(performance.now() - started) };
    await sleep(50);
  }
  throw new Error(`the server still has ${connections} connections after ${limitMs / 1000} s (waiting for ${what})`);
}
