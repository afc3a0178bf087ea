// The example's git service: clone, branch, commit and push with the real git
// CLI, each step reported as `git_operation` events that the app publishes
// over SSE. No shell is involved: every git runs through child_process.spawn
// with an argument array, a clean environment and a timeout.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** Milliseconds a git process may run before it is killed. */
export const DEFAULT_TIMEOUT_MS = 120_000;
/** Event messages are cut to this many characters. */
export const MAX_MESSAGE_LENGTH = 500;
const DEFAULT_AUTHOR_NAME = 'ssecast agent';
const DEFAULT_AUTHOR_EMAIL = 'agent@example.invalid';
/** Grace between SIGTERM and SIGKILL for a git that overran its timeout. */
const KILL_GRACE_MS = 2_000;
const MAX_CAPTURE = 1 << 20;

/**
 * @typedef {'clone' | 'branch' | 'commit' | 'push'} GitOperation
 * @typedef {'started' | 'in_progress' | 'completed' | 'failed'} GitOperationStatus
 * @typedef {{
 *   sandbox_id: string,
 *   operation: GitOperation,
 *   status: GitOperationStatus,
 *   message: string,
 *   progress?: number,
 *   timestamp: string,
 * }} GitOperationEvent
 * @typedef {(type: 'git_operation', data: GitOperationEvent) => unknown} Emit
 * @typedef {{ phase: string, percent: number }} GitProgress
 * @typedef {Record<string, readonly [number, number]>} PhaseWeights
 * @typedef {{
 *   cwd?: string,
 *   timeoutMs?: number,
 *   env?: Record<string, string>,
 *   onStderrLine?: (line: string) => void,
 * }} RunGitOptions
 * @typedef {{
 *   args: string[],
 *   code: number | null,
 *   signal: NodeJS.Signals | null,
 *   timedOut: boolean,
 *   stdout: string,
 *   stderrLines: string[],
 * }} RunGitResult
 */

/** Overall progress of a clone: each phase of git's output owns a slice of 0-100. */
export const CLONE_WEIGHTS = Object.freeze({
  counting: /** @type {const} */ ([0, 10]),
  compressing: /** @type {const} */ ([10, 20]),
  receiving: /** @type {const} */ ([20, 90]),
  resolving: /** @type {const} */ ([90, 100]),
});

/** Overall progress of a push ("remote: Resolving deltas" is the receiving side's work). */
export const PUSH_WEIGHTS = Object.freeze({
  counting: /** @type {const} */ ([0, 10]),
  compressing: /** @type {const} */ ([10, 20]),
  writing: /** @type {const} */ ([20, 90]),
  resolving: /** @type {const} */ ([90, 100]),
});

/** An error from a git step; its message is safe to show (no credentials). */
export class GitError extends Error {
  /**
   * @param {string} message
   * @param {{ operation?: GitOperation, code?: number | null, signal?: NodeJS.Signals | null, timedOut?: boolean }} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'GitError';
    /** @type {GitOperation | undefined} */
    this.operation = details.operation;
    /** @type {number | null} */
    this.code = details.code ?? null;
    /** @type {NodeJS.Signals | null} */
    this.signal = details.signal ?? null;
    this.timedOut = details.timedOut ?? false;
  }
}

// ---------------------------------------------------------------------------
// Credentials

const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#'"`]*@/gi;

/**
 * A remote URL as it may be shown to people: the userinfo (`user:token@`) of a
 * `scheme://` URL is removed; anything else is returned as given.
 * @param {string} url
 * @returns {string}
 */
export function displayUrl(url) {
  return String(url).replace(URL_USERINFO, '$1');
}

/**
 * Removes the userinfo of every `scheme://user:pass@host` in a text (a line of
 * git's output, an error message).
 * @param {string} text
 * @returns {string}
 */
export function redactCredentials(text) {
  return String(text).replace(URL_USERINFO, '$1');
}

/**
 * @param {string} text
 * @returns {string}
 */
function safeMessage(text) {
  const clean = redactCredentials(text).replace(/\s+/g, ' ').trim();
  return clean.length > MAX_MESSAGE_LENGTH ? `${clean.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : clean;
}

// ---------------------------------------------------------------------------
// git's progress output

// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC is exactly what an ANSI sequence starts with
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const PROGRESS = /^(?:remote:\s*)?([A-Z][A-Za-z]*(?: [A-Za-z]+)*):\s+(\d{1,3})%\s*\(\d+\/\d+\)/;

/**
 * Reads one line of git's progress output, such as
 * `Receiving objects:  45% (90/200), 1.20 MiB | 2.00 MiB/s` or
 * `remote: Counting objects:  10% (21/204)`. A chunk of several `\r`- or
 * `\n`-separated updates yields its last progress update. The phase is the
 * first word, lower-cased: counting, compressing, receiving, resolving,
 * writing, updating...
 * @param {string} line
 * @returns {GitProgress | null}
 */
export function parseGitProgress(line) {
  const parts = String(line).split(/[\r\n]/);
  for (let i = parts.length - 1; i >= 0; i--) {
    const match = PROGRESS.exec((parts[i] ?? '').replace(ANSI, '').trim());
    if (match) {
      const label = /** @type {string} */ (match[1]);
      const phase = /** @type {string} */ (label.split(' ')[0]).toLowerCase();
      return { phase, percent: Math.min(100, Number(match[2])) };
    }
  }
  return null;
}

/**
 * Splits a stream of text into lines at `\n`, `\r\n` and the bare `\r` that
 * git uses to redraw a progress line. Empty lines are skipped.
 * @param {(line: string) => void} onLine
 * @returns {{ write(chunk: string): void, end(): void }}
 */
export function createLineSplitter(onLine) {
  let pending = '';
  return {
    write(chunk) {
      pending += chunk;
      const parts = pending.split(/\r\n|\r|\n/);
      pending = parts.pop() ?? '';
      if (pending.length > 64 * 1024) {
        parts.push(pending);
        pending = '';
      }
      for (const part of parts) if (part.trim()) onLine(part);
    },
    end() {
      if (pending.trim()) onLine(pending);
      pending = '';
    },
  };
}

/**
 * Turns progress lines into one overall, never-decreasing integer percentage.
 * `onUpdate` runs when a phase is seen for the first time, when a phase
 * reaches 100% and when the value has grown by at least `step` since the last
 * update; the value stays below 100 (100 is the completed event's).
 * @param {PhaseWeights} weights
 * @param {(progress: number, line: string) => void} onUpdate
 * @param {number} [step]
 * @returns {(line: string) => void}
 */
export function createProgressTracker(weights, onUpdate, step = 5) {
  let overall = 0;
  let reported = -Infinity;
  /** @type {Set<string>} */
  const seen = new Set();
  return (line) => {
    const progress = parseGitProgress(line);
    if (!progress) return;
    const slice = weights[progress.phase];
    if (!slice) return;
    const [from, to] = slice;
    overall = Math.min(99, Math.max(overall, Math.floor(from + ((to - from) * progress.percent) / 100)));
    const newPhase = !seen.has(progress.phase);
    const phaseDone = progress.percent === 100 && overall > reported;
    if (newPhase || phaseDone || overall >= reported + step) {
      seen.add(progress.phase);
      reported = overall;
      onUpdate(overall, line);
    }
  };
}

// ---------------------------------------------------------------------------
// Running git

/** Inherited GIT_* variables that only say how to reach a server, and are kept. */
const KEPT_GIT_VARIABLES = new Set([
  'GIT_SSL_CAINFO',
  'GIT_SSL_CAPATH',
  'GIT_SSH',
  'GIT_SSH_COMMAND',
  'GIT_SSH_VARIANT',
  'GIT_PROXY_COMMAND',
]);

/**
 * The environment of every git: the caller's, without inherited GIT_*
 * variables (a GIT_DIR, GIT_CONFIG_* or GIT_AUTHOR_* from a hook or a shell
 * would change what git does) other than a CA bundle or an ssh command; with
 * no system or global config (so no credential helper), no prompts, ssh in
 * batch mode, and English messages.
 * @param {Record<string, string>} [extra]
 * @returns {NodeJS.ProcessEnv}
 */
export function gitEnv(extra = {}) {
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^GIT_/i.test(key) && !KEPT_GIT_VARIABLES.has(key)) continue;
    if (key === 'SSH_ASKPASS') continue;
    env[key] = value;
  }
  if (!env.GIT_SSH && !env.GIT_SSH_COMMAND) env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
  return {
    ...env,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: os.devNull,
    GCM_INTERACTIVE: 'never',
    LC_ALL: 'C',
    LANG: 'C',
    LANGUAGE: 'C',
    ...extra,
  };
}

/**
 * Runs `git ...args` (no shell) and resolves with how it ended; it rejects
 * only when git cannot be started. On timeout the whole process group (git
 * and its helpers, such as git-remote-https) gets SIGTERM, then SIGKILL.
 * @param {string[]} args
 * @param {RunGitOptions} [options]
 * @returns {Promise<RunGitResult>}
 */
export function runGit(args, options = {}) {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const group = process.platform !== 'win32';
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, {
      cwd: options.cwd,
      env: gitEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: group,
      windowsHide: true,
    });
    let stdout = '';
    /** @type {string[]} */
    const stderrLines = [];
    let timedOut = false;
    /** @type {NodeJS.Timeout | undefined} */
    let killTimer;
    /** @type {NodeJS.Timeout | undefined} */
    let drainTimer;

    /** @param {NodeJS.Signals} signal */
    const kill = (signal) => {
      try {
        if (group && child.pid) process.kill(-child.pid, signal);
        else child.kill(signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      killTimer = setTimeout(() => kill('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    }, timeoutMs);

    const splitter = createLineSplitter((line) => {
      stderrLines.push(line);
      if (stderrLines.length > 400) stderrLines.splice(0, stderrLines.length - 200);
      options.onStderrLine?.(line);
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (/** @type {string} */ chunk) => {
      if (stdout.length < MAX_CAPTURE) stdout += chunk;
    });
    child.stderr.on('data', (/** @type {string} */ chunk) => splitter.write(chunk));

    let settled = false;
    /**
     * @param {number | null} code
     * @param {NodeJS.Signals | null} signal
     */
    const finish = (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      clearTimeout(drainTimer);
      splitter.end();
      resolve({ args, code, signal, timedOut, stdout, stderrLines });
    };
    child.on('error', (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      reject(error);
    });
    child.on('exit', (code, signal) => {
      // A helper that outlived git could hold stderr open; do not wait for it forever.
      drainTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, 1_000);
      drainTimer.unref();
    });
    child.on('close', (code, signal) => finish(code, signal));
  });
}

/**
 * The message of a failed git: its fatal/error lines (and `! [rejected]`
 * lines of a push), else its last line of output; credentials removed, at
 * most MAX_MESSAGE_LENGTH characters.
 * @param {RunGitResult} result
 * @param {number} [timeoutMs]
 * @returns {string}
 */
export function failureMessage(result, timeoutMs) {
  const name = `git ${result.args.find((arg) => !arg.startsWith('-')) ?? ''}`.trim();
  if (result.timedOut) return safeMessage(`${name} timed out after ${timeoutMs ?? '?'} ms and was killed`);
  const lines = result.stderrLines
    .map((line) => line.replace(ANSI, '').trim())
    .filter((line) => line && !parseGitProgress(line) && !/^hint:/i.test(line));
  const errors = [...new Set(lines.filter((line) => /^(?:remote:\s*)?(?:fatal|error):|^!\s/i.test(line)))];
  if (errors.length) return safeMessage(errors.join('; '));
  const last = lines.at(-1) ?? result.stdout.trim().split(/\r?\n/).at(-1);
  if (last) return safeMessage(last);
  if (result.signal) return safeMessage(`${name} was killed by ${result.signal}`);
  return safeMessage(`${name} exited with code ${result.code}`);
}

/**
 * Runs git and throws a GitError unless it exits with 0.
 * @param {string[]} args
 * @param {RunGitOptions} [options]
 * @returns {Promise<RunGitResult>}
 */
async function git(args, options = {}) {
  const result = await runGit(args, options);
  if (result.code !== 0) {
    throw new GitError(failureMessage(result, options.timeoutMs ?? DEFAULT_TIMEOUT_MS), {
      code: result.code,
      signal: result.signal,
      timedOut: result.timedOut,
    });
  }
  return result;
}

// ---------------------------------------------------------------------------
// The example's "remote"

/**
 * Deterministic, incompressible-looking bytes: SHA-256 in counter mode.
 * @param {string} seed
 * @param {number} size
 * @returns {Buffer}
 */
function pseudoRandomBytes(seed, size) {
  const blocks = [];
  for (let i = 0; i * 32 < size; i++) blocks.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(blocks).subarray(0, size);
}

/**
 * Creates `<root>/remote.git`, a bare repository whose main branch holds one
 * commit: a README.md, 200 small files under `src/` and two 200 KB binary
 * files under `assets/` (enough for a clone to report progress). The content
 * and the commit are deterministic. The URL is a file:// URL, so that git
 * uses the pack protocol (with progress) rather than local hardlinks.
 * @param {string} root
 * @param {{ timeoutMs?: number }} [options]
 * @returns {Promise<{ url: string, path: string }>}
 */
export async function createBareRemote(root, options = {}) {
  const base = path.resolve(root);
  await mkdir(base, { recursive: true });
  const remote = path.join(base, 'remote.git');
  const run = { timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  await git(['init', '--quiet', '--bare', '-b', 'main', remote], run);

  const seed = await mkdtemp(path.join(base, '.seed-'));
  try {
    await git(['init', '--quiet', '-b', 'main', seed], run);
    await writeFile(
      path.join(seed, 'README.md'),
      '# agent-work sandbox\n\nA repository that the ssecast agent-work example clones, branches, commits to and pushes.\n',
    );
    await mkdir(path.join(seed, 'src'));
    for (let i = 1; i <= 200; i++) {
      const n = String(i).padStart(3, '0');
      await writeFile(
        path.join(seed, 'src', `module-${n}.js`),
        `// module ${n}\nexport const id = ${i};\nexport const name = 'module-${n}';\nexport function value() {\n  return ${(i * 7919) % 10007};\n}\n`,
      );
    }
    await mkdir(path.join(seed, 'assets'));
    await writeFile(path.join(seed, 'assets', 'blob-a.bin'), pseudoRandomBytes('agent-work-a', 200 * 1024));
    await writeFile(path.join(seed, 'assets', 'blob-b.bin'), pseudoRandomBytes('agent-work-b', 200 * 1024));
    await git(['add', '-A'], { ...run, cwd: seed });
    const author = {
      GIT_AUTHOR_NAME: DEFAULT_AUTHOR_NAME,
      GIT_AUTHOR_EMAIL: DEFAULT_AUTHOR_EMAIL,
      GIT_COMMITTER_NAME: DEFAULT_AUTHOR_NAME,
      GIT_COMMITTER_EMAIL: DEFAULT_AUTHOR_EMAIL,
      GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
      GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
    };
    await git(['commit', '--quiet', '--no-verify', '-m', 'Initial commit'], { ...run, cwd: seed, env: author });
    await git(['push', '--quiet', remote, 'refs/heads/main:refs/heads/main'], { ...run, cwd: seed });
  } finally {
    await rm(seed, { recursive: true, force: true });
  }
  return { url: pathToFileURL(remote).href, path: remote };
}

// ---------------------------------------------------------------------------
// The service

/**
 * Checks a branch name with `git check-ref-format --branch`, and refuses what
 * git would read as an option (`-x`) or a forced refspec (`+x`).
 * @param {unknown} name
 * @param {{ cwd?: string, timeoutMs?: number }} options
 * @returns {Promise<string>}
 */
async function checkBranchName(name, options) {
  const shown = JSON.stringify(String(name)).slice(0, 200);
  if (typeof name !== 'string' || !name || /^[-+]/.test(name)) throw new GitError(`invalid branch name ${shown}`);
  const result = await runGit(['check-ref-format', '--branch', name], options);
  if (result.code !== 0 || result.stdout.trim() !== name) throw new GitError(`invalid branch name ${shown}`);
  return name;
}

/**
 * @param {unknown} value
 * @param {string} what
 * @returns {string}
 */
function requireString(value, what) {
  if (typeof value !== 'string' || !value) throw new TypeError(`${what} must be a non-empty string`);
  return value;
}

/**
 * Clones, branches, commits and pushes with the git CLI, and reports each
 * step as `git_operation` events through `emit`, awaited one after another.
 * Every operation emits `started` (progress 0), for clone and push
 * `in_progress` events with a growing progress, and then `completed`
 * (progress 100) or `failed` (after which it rejects with a GitError of the
 * same message).
 */
export class GitService {
  /** @type {Emit} */
  #emit;
  #timeoutMs;
  #authorName;
  #authorEmail;

  /**
   * @param {{ emit: Emit, timeoutMs?: number, authorName?: string, authorEmail?: string }} options
   */
  constructor(options) {
    if (typeof options?.emit !== 'function') throw new TypeError('GitService needs an emit(type, data) function');
    this.#emit = options.emit;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#authorName = options.authorName ?? DEFAULT_AUTHOR_NAME;
    this.#authorEmail = options.authorEmail ?? DEFAULT_AUTHOR_EMAIL;
  }

  /**
   * `git clone --progress <url> <dir>`.
   * @param {{ sandboxId: string, url: string, dir: string, timeoutMs?: number }} options
   * @returns {Promise<{ dir: string }>}
   */
  async clone(options) {
    const url = requireString(options?.url, 'url');
    const dir = path.resolve(requireString(options?.dir, 'dir'));
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return this.#operation(options.sandboxId, 'clone', `Cloning ${displayUrl(url)}`, async (progress) => {
      const onStderrLine = createProgressTracker(CLONE_WEIGHTS, progress);
      await git(['clone', '--progress', '--', url, dir], { timeoutMs, onStderrLine });
      return { message: `Cloned ${displayUrl(url)} into ${path.basename(dir)}`, result: { dir } };
    });
  }

  /**
   * `git checkout -b <name>`, after `git check-ref-format --branch <name>`.
   * @param {{ sandboxId: string, dir: string, name: string, timeoutMs?: number }} options
   * @returns {Promise<{ branch: string }>}
   */
  async branch(options) {
    const cwd = requireString(options?.dir, 'dir');
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const shown = JSON.stringify(String(options.name)).slice(0, 200);
    return this.#operation(options.sandboxId, 'branch', `Creating branch ${shown}`, async () => {
      const name = await checkBranchName(options.name, { cwd, timeoutMs });
      await git(['checkout', '-b', name], { cwd, timeoutMs });
      return { message: `Switched to new branch ${name}`, result: { branch: name } };
    });
  }

  /**
   * `git add -A [-- files]` then `git commit -m <message>`; fails with
   * "nothing to commit" when nothing is staged.
   * @param {{ sandboxId: string, dir: string, message: string, files?: string[], authorName?: string, authorEmail?: string, timeoutMs?: number }} options
   * @returns {Promise<{ sha: string, shortSha: string }>}
   */
  async commit(options) {
    const cwd = requireString(options?.dir, 'dir');
    const message = requireString(options.message, 'message');
    const files = options.files;
    if (files !== undefined && (!Array.isArray(files) || !files.every((f) => typeof f === 'string' && f))) {
      throw new TypeError('files must be an array of non-empty paths');
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const name = options.authorName ?? this.#authorName;
    const email = options.authorEmail ?? this.#authorEmail;
    const env = { GIT_AUTHOR_NAME: name, GIT_AUTHOR_EMAIL: email, GIT_COMMITTER_NAME: name, GIT_COMMITTER_EMAIL: email };
    return this.#operation(options.sandboxId, 'commit', 'Committing changes', async () => {
      await git(files ? ['add', '-A', '--', ...files] : ['add', '-A'], { cwd, timeoutMs });
      const staged = await runGit(['diff', '--cached', '--quiet'], { cwd, timeoutMs });
      if (staged.code === 0) throw new GitError('nothing to commit');
      if (staged.code !== 1) throw new GitError(failureMessage(staged, timeoutMs), { code: staged.code });
      await git(['commit', '--quiet', '-m', message], { cwd, timeoutMs, env });
      const head = await git(['log', '-1', '--format=%H%n%h'], { cwd, timeoutMs });
      const [sha = '', shortSha = ''] = head.stdout.trim().split('\n');
      const subject = message.split('\n')[0] ?? '';
      return { message: `Committed ${shortSha}: ${subject}`, result: { sha, shortSha } };
    });
  }

  /**
   * `git push --progress -u origin refs/heads/<branch>:refs/heads/<branch>`.
   * @param {{ sandboxId: string, dir: string, branch: string, timeoutMs?: number }} options
   * @returns {Promise<{ branch: string }>}
   */
  async push(options) {
    const cwd = requireString(options?.dir, 'dir');
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const shown = JSON.stringify(String(options.branch)).slice(0, 200);
    return this.#operation(options.sandboxId, 'push', `Pushing ${shown} to origin`, async (progress) => {
      const branch = await checkBranchName(options.branch, { cwd, timeoutMs });
      const onStderrLine = createProgressTracker(PUSH_WEIGHTS, progress);
      const ref = `refs/heads/${branch}`;
      const result = await git(['push', '--progress', '-u', 'origin', `${ref}:${ref}`], { cwd, timeoutMs, onStderrLine });
      const to = result.stderrLines.map((line) => /^To (\S+)/.exec(line.trim())?.[1]).find(Boolean);
      return { message: `Pushed ${branch} to ${to ? displayUrl(to) : 'origin'}`, result: { branch } };
    });
  }

  /**
   * Emits started, runs the step (which may report progress), then emits
   * completed or failed. Events go out strictly in order, each emit awaited.
   * @template T
   * @param {string} sandboxId
   * @param {GitOperation} operation
   * @param {string} startMessage
   * @param {(progress: (value: number, line: string) => void) => Promise<{ message: string, result: T }>} step
   * @returns {Promise<T>}
   */
  async #operation(sandboxId, operation, startMessage, step) {
    requireString(sandboxId, 'sandboxId');
    /** @type {Promise<void>} */
    let tail = Promise.resolve();
    /** @type {{ error: unknown } | undefined} */
    let emitFailure;
    /**
     * @param {GitOperationStatus} status
     * @param {string} message
     * @param {number} [progress]
     */
    const send = (status, message, progress) => {
      /** @type {GitOperationEvent} */
      const data = {
        sandbox_id: sandboxId,
        operation,
        status,
        message: safeMessage(message),
        ...(progress === undefined ? {} : { progress }),
        timestamp: new Date().toISOString(),
      };
      tail = tail.then(async () => {
        if (emitFailure) return;
        try {
          await this.#emit('git_operation', data);
        } catch (error) {
          emitFailure = { error };
        }
      });
      return tail;
    };
    const flush = async () => {
      await tail;
      if (emitFailure) throw emitFailure.error;
    };

    send('started', startMessage, 0);
    await flush(); // a refused "started" stops the operation before git runs

    let outcome;
    try {
      outcome = await step((value, line) => void send('in_progress', line.replace(/^\s*remote:\s*/, ''), value));
    } catch (error) {
      const message = safeMessage(error instanceof Error ? error.message : String(error)) || `git ${operation} failed`;
      send('failed', message);
      await flush();
      if (error instanceof GitError) {
        error.message = message;
        error.operation = operation;
        throw error;
      }
      throw new GitError(message, { operation });
    }
    send('completed', outcome.message, 100);
    await flush();
    return outcome.result;
  }
}
