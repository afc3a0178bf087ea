// Sandbox service for the agent-work example: where an agent's commands run, and how
// their output becomes `sandbox_status` / `command_output` events.
//
//   LocalSandbox   - a temp directory + real child processes (the default, no account needed)
//   E2BSandbox     - an E2B cloud sandbox (used when E2B_API_KEY is set; the `e2b` package is a dev dependency here)
//   SandboxService - wraps a provider and publishes lifecycle + output events, in order.
//
// Types live in sandbox.d.mts next to this file; the JSDoc below mirrors them.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** @typedef {'stdout' | 'stderr'} StreamName */
/**
 * @typedef {object} RunOptions
 * @property {(stream: StreamName, line: string) => void} onLine called once per output line, without the line break
 * @property {AbortSignal} [signal] aborting kills the command
 * @property {number} [timeoutMs] kill the command after this long (default 120000)
 */
/**
 * @typedef {object} Sandbox
 * @property {string} id
 * @property {string} workdir where commands run
 * @property {(command: string, options: RunOptions) => Promise<{ exitCode: number }>} run
 * @property {() => Promise<void>} stop kills what runs and releases the sandbox; safe to call twice
 */
/**
 * @typedef {object} SandboxProvider
 * @property {(options: { sandboxId: string }) => Promise<Sandbox>} create
 */

/**
 * Control characters (but tab) become U+FFFD, as a terminal would show something for them: JSON
 * writes each as a six-byte \u escape, so a 16 KiB line of them (`cat` of a binary file) would
 * be over the hub's 64 KiB maxEventBytes and fail a command that succeeded. U+FFFD is three bytes.
 * @param {string} line
 */
export function printable(line) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it replaces
  return line.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '\uFFFD');
}

export const DEFAULT_TIMEOUT_MS = 120_000;
export const MAX_LINE_LENGTH = 16 * 1024;
export const TRUNCATED_SUFFIX = '…[truncated]';
export const MAX_PENDING_LINES = 10_000;
/** Exit codes reported when the sandbox, not the command, ended it (as GNU timeout / shells do). */
export const EXIT_TIMEOUT = 124;
export const EXIT_ABORTED = 130;
export const EXIT_STOPPED = 137;
/** After the shell exits, how long to wait for a background child that still holds its stdout. */
const EXIT_GRACE_MS = 1_000;

/**
 * Splits a byte or text stream into lines: handles chunks that cut a line or a UTF-8 sequence in
 * two, CRLF, and a last line without a newline. A line longer than `maxLineLength` (UTF-16 code
 * units) is cut there and marked with TRUNCATED_SUFFIX; the rest of it is skipped, so memory stays
 * bounded whatever the command prints.
 */
export class LineSplitter {
  #onLine;
  #max;
  #decoder = new StringDecoder('utf8');
  #pending = '';
  #skipping = false;

  /**
   * @param {(line: string) => void} onLine
   * @param {{ maxLineLength?: number }} [options]
   */
  constructor(onLine, { maxLineLength = MAX_LINE_LENGTH } = {}) {
    this.#onLine = onLine;
    this.#max = maxLineLength;
  }

  /** @param {string | Uint8Array} chunk */
  write(chunk) {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    let start = 0;
    while (start < text.length) {
      const nl = text.indexOf('\n', start);
      const end = nl === -1 ? text.length : nl;
      if (this.#skipping) {
        if (nl === -1) return;
        this.#skipping = false;
      } else {
        this.#pending += text.slice(start, end);
        if (nl !== -1) {
          this.#emit(stripCR(this.#pending));
          this.#pending = '';
        } else if (this.#pending.length > this.#max + 1) {
          // Too long even if it ends in "\r\n": cut now, skip up to the next newline.
          this.#emit(this.#pending);
          this.#pending = '';
          this.#skipping = true;
          return;
        }
      }
      if (nl === -1) return;
      start = nl + 1;
    }
  }

  /** Flushes a trailing line that has no newline (and any incomplete UTF-8 sequence, as U+FFFD). */
  end() {
    const rest = this.#decoder.end();
    if (rest) this.write(rest);
    if (!this.#skipping && this.#pending) this.#emit(stripCR(this.#pending));
    this.#pending = '';
    this.#skipping = false;
  }

  /** @param {string} line */
  #emit(line) {
    if (line.length > this.#max) {
      let cut = line.slice(0, this.#max);
      const last = cut.charCodeAt(cut.length - 1);
      if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1); // don't split a surrogate pair
      line = cut + TRUNCATED_SUFFIX;
    }
    this.#onLine(line);
  }
}

/** @param {string} line */
const stripCR = (line) => (line.endsWith('\r') ? line.slice(0, -1) : line);

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/**
 * Kills a whole process group (the shell and everything it started), ignoring "already gone".
 * @param {number} pgid
 */
function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ESRCH') throw err;
  }
}

/** @param {number} pgid */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM';
  }
}

/** Live local sandboxes, so that a process.exit() of the server leaves no processes or dirs. */
const live = new Set(/** @type {LocalSandboxInstance[]} */ ([]));
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const sandbox of live) sandbox.stopSync();
  });
}

/** A sandbox on this machine: a temporary directory and real shell processes. */
export class LocalSandbox {
  #maxLineLength;

  /** @param {{ maxLineLength?: number }} [options] */
  constructor({ maxLineLength = MAX_LINE_LENGTH } = {}) {
    this.#maxLineLength = maxLineLength;
  }

  /**
   * @param {{ sandboxId: string }} options
   * @returns {Promise<Sandbox>}
   */
  async create({ sandboxId }) {
    const workdir = await mkdtemp(join(tmpdir(), 'agent-work-'));
    return new LocalSandboxInstance(sandboxId, workdir, this.#maxLineLength);
  }
}

/**
 * @typedef {object} RunningCommand
 * @property {(reason: 'timeout' | 'abort' | 'stop') => void} kill
 * @property {Promise<unknown>} done
 */

/** @implements {Sandbox} */
class LocalSandboxInstance {
  /** @type {Set<RunningCommand>} */
  #running = new Set();
  /** Process groups of finished commands that left background processes behind. */
  #groups = new Set(/** @type {number[]} */ ([]));
  /** @type {Promise<void> | undefined} */
  #stopping;
  #maxLineLength;

  /**
   * @param {string} id
   * @param {string} workdir
   * @param {number} maxLineLength
   */
  constructor(id, workdir, maxLineLength) {
    this.id = id;
    this.workdir = workdir;
    this.#maxLineLength = maxLineLength;
    live.add(this);
    installExitHook();
  }

  /**
   * @param {string} command
   * @param {RunOptions} options
   * @returns {Promise<{ exitCode: number }>}
   */
  run(command, { onLine, signal, timeoutMs = DEFAULT_TIMEOUT_MS }) {
    if (this.#stopping) return Promise.reject(new Error(`sandbox ${this.id} is stopped`));
    if (signal?.aborted) {
      onLine('stderr', '[sandbox] command aborted');
      return Promise.resolve({ exitCode: EXIT_ABORTED });
    }
    /** @type {(value: { exitCode: number }) => void} */
    let resolve = () => {};
    /** @type {(reason: unknown) => void} */
    let reject = () => {};
    const done = new Promise((res, rej) => ((resolve = res), (reject = rej)));

    /** @type {unknown} */
    let callbackError;
    /** @param {StreamName} stream */
    const lineTo = (stream) => (/** @type {string} */ line) => {
      if (callbackError !== undefined) return;
      try {
        onLine(stream, line);
      } catch (err) {
        callbackError = err;
        kill('stop');
      }
    };
    const out = new LineSplitter(lineTo('stdout'), { maxLineLength: this.#maxLineLength });
    const err = new LineSplitter(lineTo('stderr'), { maxLineLength: this.#maxLineLength });

    // detached: the shell leads a new process group, so one kill reaches everything it started.
    const child = spawn(command, {
      shell: true,
      cwd: this.workdir,
      env: process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid;
    child.stdout.on('data', (chunk) => out.write(chunk));
    child.stderr.on('data', (chunk) => err.write(chunk));

    /** @type {'timeout' | 'abort' | 'stop' | undefined} */
    let reason;
    let settled = false;
    /** @type {NodeJS.Timeout | undefined} */
    let grace;
    /** @param {'timeout' | 'abort' | 'stop'} why */
    const kill = (why) => {
      if (settled || reason) return;
      reason = why;
      if (pid !== undefined) killGroup(pid);
    };
    const onAbort = () => kill('abort');
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => kill('timeout'), timeoutMs);
    /** @type {RunningCommand} */
    const running = { kill, done: done.catch(() => {}) };
    this.#running.add(running);

    /**
     * @param {number | null} code
     * @param {NodeJS.Signals | null} sig
     * @param {Error} [spawnError]
     */
    const finish = (code, sig, spawnError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      signal?.removeEventListener('abort', onAbort);
      this.#running.delete(running);
      out.end();
      err.end();
      if (pid !== undefined && groupAlive(pid)) {
        if (this.#stopping) killGroup(pid);
        else this.#groups.add(pid); // e.g. `server &`: keep it until stop()
      }
      if (spawnError) return reject(spawnError);
      if (callbackError !== undefined) return reject(callbackError);
      if (reason === 'timeout') {
        onLine('stderr', `[sandbox] command timed out after ${timeoutMs} ms and was killed`);
        return resolve({ exitCode: EXIT_TIMEOUT });
      }
      if (reason === 'abort') {
        onLine('stderr', '[sandbox] command aborted');
        return resolve({ exitCode: EXIT_ABORTED });
      }
      if (reason === 'stop') {
        onLine('stderr', '[sandbox] command killed: sandbox stopped');
        return resolve({ exitCode: EXIT_STOPPED });
      }
      resolve({ exitCode: code ?? 128 + (sig ? (osConstants.signals[sig] ?? 0) : 0) });
    };
    child.on('error', (error) => finish(null, null, error));
    child.on('close', (code, sig) => finish(code, sig));
    child.on('exit', (code, sig) => {
      if (settled) return;
      // A background process may keep the pipes open forever; don't wait on it.
      grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, sig);
      }, EXIT_GRACE_MS);
    });
    return done;
  }

  /** @returns {Promise<void>} */
  stop() {
    this.#stopping ??= (async () => {
      const waits = [...this.#running].map((r) => (r.kill('stop'), r.done));
      for (const pgid of this.#groups) killGroup(pgid);
      this.#groups.clear();
      await Promise.all(waits);
      await rm(this.workdir, { recursive: true, force: true, maxRetries: 3 });
      live.delete(this);
    })();
    return this.#stopping;
  }

  /** Last-resort cleanup from process 'exit': synchronous only. */
  stopSync() {
    for (const r of this.#running) r.kill('stop');
    for (const pgid of this.#groups) killGroup(pgid);
    rmSync(this.workdir, { recursive: true, force: true });
  }
}

/** An E2B cloud sandbox. Needs an API key and the optional `e2b` package (v2). */
export class E2BSandbox {
  #apiKey;
  #template;

  /** @param {{ apiKey?: string, template?: string }} options */
  constructor({ apiKey, template } = {}) {
    if (!apiKey) throw new Error('E2BSandbox needs an E2B API key: set E2B_API_KEY (or pass { apiKey })');
    this.#apiKey = apiKey;
    this.#template = template;
  }

  /**
   * @param {{ sandboxId: string }} options
   * @returns {Promise<Sandbox>}
   */
  async create({ sandboxId }) {
    const specifier = 'e2b'; // optional dependency: resolved only when E2B is actually used
    /** @type {any} */
    const e2b = await import(specifier).catch((cause) => {
      throw new Error("E2BSandbox needs the 'e2b' package: npm install e2b", { cause });
    });
    const opts = { apiKey: this.#apiKey };
    const sbx = this.#template ? await e2b.Sandbox.create(this.#template, opts) : await e2b.Sandbox.create(opts);
    /** @type {Promise<void> | undefined} */
    let stopping;
    return {
      id: sandboxId,
      workdir: '/home/user',
      async run(command, { onLine, signal, timeoutMs = DEFAULT_TIMEOUT_MS }) {
        const out = new LineSplitter((line) => onLine('stdout', line));
        const err = new LineSplitter((line) => onLine('stderr', line));
        const flush = () => (out.end(), err.end());
        try {
          const result = await sbx.commands.run(command, {
            cwd: '/home/user',
            timeoutMs,
            signal, // honoured by e2b >= 2.21
            onStdout: (/** @type {string} */ data) => out.write(data),
            onStderr: (/** @type {string} */ data) => err.write(data),
          });
          flush();
          return { exitCode: result.exitCode };
        } catch (error) {
          flush();
          const exitCode = /** @type {{ exitCode?: unknown }} */ (error)?.exitCode;
          if (typeof exitCode === 'number') return { exitCode }; // CommandExitError: non-zero exit
          if (signal?.aborted) return (onLine('stderr', '[sandbox] command aborted'), { exitCode: EXIT_ABORTED });
          throw error;
        }
      },
      stop: () => (stopping ??= sbx.kill().then(() => {})),
    };
  }
}

/**
 * E2B when E2B_API_KEY is set, otherwise local processes in a temp dir.
 * @param {Record<string, string | undefined>} [env]
 * @returns {SandboxProvider}
 */
export function createSandboxProvider(env = process.env) {
  return env.E2B_API_KEY ? new E2BSandbox({ apiKey: env.E2B_API_KEY, template: env.E2B_TEMPLATE }) : new LocalSandbox();
}

/**
 * @typedef {'creating' | 'running' | 'stopped' | 'error'} SandboxStatus
 * @typedef {{ sandbox_id: string, agent_id: string, status: SandboxStatus, message?: string, timestamp: string }} SandboxStatusData
 *   `message` only with status 'error'
 * @typedef {{ sandbox_id: string, line: number, output: string, stream: StreamName, timestamp: string }} CommandOutputData
 *   `output` is one line, ending in '\n'; `line` numbers the lines this service published, from 1, in publish order
 */

/**
 * Publishes an event; may be async (it is awaited, one at a time).
 * @typedef {(type: 'sandbox_status' | 'command_output', data: SandboxStatusData | CommandOutputData) => unknown} Emit
 */

/** Runs sandboxes for agents and publishes what happens to them as events. */
export class SandboxService {
  #provider;
  #emit;
  #maxPendingLines;
  /** The number of the last output line published: one count across every run() of this service (one task). */
  #line = 0;

  /** @param {{ provider: SandboxProvider, emit: Emit, maxPendingLines?: number }} options */
  constructor({ provider, emit, maxPendingLines = MAX_PENDING_LINES }) {
    this.#provider = provider;
    this.#emit = emit;
    this.#maxPendingLines = maxPendingLines;
  }

  /**
   * Creates a sandbox: `creating`, then `running` (or `error`, and the failure is rethrown).
   * @param {{ sandboxId: string, agentId: string }} options
   * @returns {Promise<Sandbox>}
   */
  async start({ sandboxId, agentId }) {
    const status = (/** @type {Record<string, unknown>} */ extra) =>
      this.#emit('sandbox_status', { sandbox_id: sandboxId, agent_id: agentId, ...extra, timestamp: new Date().toISOString() });
    await status({ status: 'creating' });
    /** @type {Sandbox} */
    let sandbox;
    try {
      sandbox = await this.#provider.create({ sandboxId });
    } catch (error) {
      try {
        await status({ status: 'error', message: messageOf(error) });
      } catch {
        // the creation failure is the error worth reporting
      }
      throw error;
    }
    try {
      await status({ status: 'running' });
    } catch (error) {
      await sandbox.stop(); // nobody would ever stop it otherwise
      throw error;
    }
    return sandbox;
  }

  /**
   * Runs a command, publishing each output line as `command_output`, in the order produced, numbered
   * from 1 (a dropped line gets no number, so the numbers have no gaps of their own).
   * Emits are chained one at a time; if more than `maxPendingLines` wait, further lines are
   * dropped and one stderr notice says how many. If an emit fails, the rest of the output is not
   * published and run() rejects with that error once the command has finished.
   * @param {Sandbox} sandbox
   * @param {string} command
   * @param {{ agentId?: string, signal?: AbortSignal, timeoutMs?: number }} [options]
   * @returns {Promise<{ exitCode: number }>}
   */
  async run(sandbox, command, { signal, timeoutMs } = {}) {
    /** @type {Promise<void>} */
    let chain = Promise.resolve();
    let pending = 0;
    let dropped = 0;
    /** @type {{ error: unknown } | undefined} */
    let failed;
    /**
     * @param {StreamName} stream
     * @param {string} line
     */
    const enqueue = (stream, line) => {
      const data = {
        sandbox_id: sandbox.id,
        line: ++this.#line,
        output: `${printable(line)}\n`,
        stream,
        timestamp: new Date().toISOString(),
      };
      pending++;
      chain = chain.then(async () => {
        pending--;
        if (failed) return;
        try {
          await this.#emit('command_output', data);
        } catch (error) {
          failed = { error };
        }
      });
    };
    const flushDropped = () => {
      if (dropped === 0) return;
      enqueue('stderr', `[sandbox] ${dropped} output line(s) dropped: events could not be published fast enough`);
      dropped = 0;
    };
    /**
     * @param {StreamName} stream
     * @param {string} line
     */
    const onLine = (stream, line) => {
      if (pending >= this.#maxPendingLines) {
        dropped++;
        return;
      }
      flushDropped();
      enqueue(stream, line);
    };

    /** @type {RunOptions} */
    const options = { onLine };
    if (signal) options.signal = signal;
    if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
    /** @type {{ exitCode: number }} */
    let result;
    try {
      result = await sandbox.run(command, options);
    } finally {
      flushDropped();
      await chain; // never rejects: emit failures are caught into `failed`
    }
    if (failed) throw failed.error;
    return result;
  }

  /**
   * Stops a sandbox, then publishes `stopped`, or `error` with the message of `error` (the failure
   * that ended the task). The sandbox is stopped even if publishing fails.
   * @param {Sandbox} sandbox
   * @param {{ agentId: string, error?: unknown }} options
   * @returns {Promise<void>}
   */
  async stop(sandbox, { agentId, error }) {
    /** @type {{ error: unknown } | undefined} */
    let stopFailed;
    try {
      await sandbox.stop();
    } catch (stopError) {
      stopFailed = { error: stopError };
    }
    const data = { sandbox_id: sandbox.id, agent_id: agentId };
    const timestamp = new Date().toISOString();
    if (error !== undefined) await this.#emit('sandbox_status', { ...data, status: 'error', message: messageOf(error), timestamp });
    else if (stopFailed)
      await this.#emit('sandbox_status', {
        ...data,
        status: 'error',
        message: `could not stop sandbox: ${messageOf(stopFailed.error)}`,
        timestamp,
      });
    else await this.#emit('sandbox_status', { ...data, status: 'stopped', timestamp });
    if (stopFailed) throw stopFailed.error;
  }
}
