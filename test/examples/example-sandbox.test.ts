import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import {
  E2BSandbox,
  EXIT_ABORTED,
  EXIT_STOPPED,
  EXIT_TIMEOUT,
  LineSplitter,
  LocalSandbox,
  MAX_LINE_LENGTH,
  SandboxService,
  TRUNCATED_SUFFIX,
  createSandboxProvider,
  printable,
  type CommandOutputData,
  type Sandbox,
  type SandboxProvider,
  type SandboxStatusData,
  type StreamName,
} from '../../examples/agent-work/sandbox.mjs';

// Real shells and processes throughout; every sandbox is stopped after each test and every
// workdir is checked to be gone at the end.

type Event = { type: 'sandbox_status'; data: SandboxStatusData } | { type: 'command_output'; data: CommandOutputData };

const sandboxes: Sandbox[] = [];
const workdirs: string[] = [];
const pids: number[] = [];
afterEach(async () => {
  await Promise.all(sandboxes.splice(0).map((s) => s.stop()));
});
afterAll(async () => {
  for (const dir of workdirs) expect(existsSync(dir), `${dir} removed`).toBe(false);
  await waitUntil(() => pids.every((pid) => !alive(pid)), 10_000, 'every spawned process to be gone');
});

let counter = 0;
async function newSandbox(provider: SandboxProvider = new LocalSandbox()): Promise<Sandbox> {
  const sandbox = await provider.create({ sandboxId: `sb-${++counter}` });
  sandboxes.push(sandbox);
  workdirs.push(sandbox.workdir);
  return sandbox;
}

function recorder(delay?: () => number) {
  const events: Event[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const emit = async (type: Event['type'], data: SandboxStatusData | CommandOutputData) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (delay) await sleep(delay());
    events.push({ type, data } as Event);
    inFlight--;
  };
  const output = (stream: StreamName) =>
    events.flatMap((e) => (e.type === 'command_output' && e.data.stream === stream ? [e.data.output] : []));
  const statuses = () => events.flatMap((e) => (e.type === 'sandbox_status' ? [e.data] : []));
  return { events, emit, output, statuses, maxInFlight: () => maxInFlight };
}

/** Runs directly on a sandbox, collecting lines per stream. */
async function collect(sandbox: Sandbox, command: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}) {
  const lines: Record<StreamName, string[]> = { stdout: [], stderr: [] };
  const { exitCode } = await sandbox.run(command, { ...options, onLine: (stream, line) => lines[stream].push(line) });
  return { exitCode, ...lines };
}

/** Running, that is: exists and is not a zombie waiting for an init process to reap it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no procfs: trust kill(pid, 0)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A shell command that runs `script` with this node binary. */
const nodeCommand = (script: string) => `'${process.execPath}' -e '${script}'`;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('LineSplitter', () => {
  it('reassembles lines and UTF-8 characters cut anywhere, strips CR, flushes a last line without newline', () => {
    const text = 'héllo ✓ 日本 🎉\r\nplain\n\nlast\r';
    const bytes = Buffer.from(text);
    for (const size of [1, 2, 3, 5, 7]) {
      const lines: string[] = [];
      const splitter = new LineSplitter((line) => lines.push(line));
      for (let i = 0; i < bytes.length; i += size) splitter.write(bytes.subarray(i, i + size));
      splitter.end();
      expect(lines, `chunks of ${size}`).toEqual(['héllo ✓ 日本 🎉', 'plain', '', 'last']);
    }
  });

  it('cuts long lines, skips their rest, and keeps going', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line), { maxLineLength: 10 });
    splitter.write('0123456789\r\n'); // exactly at the limit, CRLF: kept whole
    splitter.write('abcdefghijkl');
    splitter.write('mnopqrstuvwxyz'.repeat(1000));
    splitter.write('\nshort\n');
    splitter.write('x'.repeat(11));
    splitter.end();
    expect(lines).toEqual(['0123456789', `abcdefghij${TRUNCATED_SUFFIX}`, 'short', `xxxxxxxxxx${TRUNCATED_SUFFIX}`]);
  });

  it('does not cut a surrogate pair in half', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line), { maxLineLength: 4 });
    splitter.write('abc🎉def\n');
    expect(lines).toEqual([`abc${TRUNCATED_SUFFIX}`]);
  });
});

describe('LocalSandbox', () => {
  it('creates a fresh working directory under the OS temp dir', async () => {
    const a = await newSandbox();
    const b = await newSandbox();
    expect(a.workdir).not.toBe(b.workdir);
    expect(dirname(a.workdir)).toBe(tmpdir());
    expect(a.workdir).toMatch(/agent-work-/);
    expect(existsSync(a.workdir)).toBe(true);
    const { stdout } = await collect(a, 'pwd; touch made-here; ls');
    expect(stdout).toEqual([a.workdir, 'made-here']);
  });

  it('reports the exit code, and 128+n for a command killed by signal n', async () => {
    const sandbox = await newSandbox();
    expect((await collect(sandbox, 'exit 3')).exitCode).toBe(3);
    expect((await collect(sandbox, 'true')).exitCode).toBe(0);
    expect((await collect(sandbox, 'kill -TERM $$')).exitCode).toBe(128 + 15);
  });

  it('delivers UTF-8 split across writes intact and drops the CR of CRLF', async () => {
    const sandbox = await newSandbox();
    // The first write ends in the middle of "é" and of "✓"; the pauses make them separate chunks.
    const script =
      'const b = Buffer.from("héllo ✓ 日本\\n"); process.stdout.write(b.subarray(0, 2));' +
      'setTimeout(() => process.stdout.write(b.subarray(2, 9)), 50);' +
      'setTimeout(() => process.stdout.write(b.subarray(9)), 100);';
    const { stdout, exitCode } = await collect(sandbox, `printf 'héllo ✓ 日本\\n'; ${nodeCommand(script)}; printf 'one\\r\\ntwo\\r\\n'`);
    expect(exitCode).toBe(0);
    expect(stdout).toEqual(['héllo ✓ 日本', 'héllo ✓ 日本', 'one', 'two']);
  });

  it('cuts very long lines and bounds binary garbage', async () => {
    const sandbox = await newSandbox();
    const long = await collect(sandbox, "head -c 100000 /dev/zero | tr '\\0' x; echo; echo after");
    expect(long.stdout).toEqual(['x'.repeat(MAX_LINE_LENGTH) + TRUNCATED_SUFFIX, 'after']);

    const small = await newSandbox(new LocalSandbox({ maxLineLength: 100 }));
    const binary = await collect(small, 'head -c 300000 /dev/urandom; echo; echo done');
    expect(binary.exitCode).toBe(0);
    expect(binary.stdout.at(-1)).toBe('done');
    for (const line of binary.stdout) expect(line.length).toBeLessThanOrEqual(100 + TRUNCATED_SUFFIX.length);
  });

  it('kills the whole process tree on timeout and says so', async () => {
    const sandbox = await newSandbox();
    const started = Date.now();
    // A grandchild (background sleep) that the shell waits for: both must die.
    const result = await collect(sandbox, 'sleep 30 & echo $!; echo partial; wait', { timeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(result.exitCode).toBe(EXIT_TIMEOUT);
    expect(result.stdout[1]).toBe('partial');
    expect(result.stderr.at(-1)).toMatch(/timed out after 300 ms/);
    const grandchild = Number(result.stdout[0]);
    pids.push(grandchild);
    await waitUntil(() => !alive(grandchild), 10_000, 'the background sleep to be killed');
  });

  it('kills the command when the signal aborts, or does not start it if already aborted', async () => {
    const sandbox = await newSandbox();
    const controller = new AbortController();
    const lines: string[] = [];
    const run = sandbox.run('echo started; sleep 30', {
      signal: controller.signal,
      onLine: (_stream, line) => lines.push(line),
    });
    await waitUntil(() => lines.includes('started'), 10_000, 'the command to start');
    controller.abort();
    expect(await run).toEqual({ exitCode: EXIT_ABORTED });
    expect(lines.at(-1)).toMatch(/aborted/);

    const never = await collect(sandbox, 'echo should-not-run', { signal: AbortSignal.abort() });
    expect(never.exitCode).toBe(EXIT_ABORTED);
    expect(never.stdout).toEqual([]);
  });

  it('stop() kills running and background processes, removes the workdir, and can be called twice', async () => {
    const sandbox = await newSandbox();
    // A finished command that left a server-like background process behind (holding stdout).
    const bg = await collect(sandbox, 'sleep 30 & echo $!');
    expect(bg.exitCode).toBe(0);
    const background = Number(bg.stdout[0]);
    pids.push(background);
    expect(alive(background)).toBe(true);

    const lines: string[] = [];
    const running = sandbox.run('echo $$; exec sleep 30', { onLine: (_s, line) => lines.push(line) });
    await waitUntil(() => lines.length > 0, 10_000, 'the command to start');
    const foreground = Number(lines[0]);
    pids.push(foreground);

    await Promise.all([sandbox.stop(), sandbox.stop()]);
    expect(await running).toEqual({ exitCode: EXIT_STOPPED });
    expect(existsSync(sandbox.workdir)).toBe(false);
    await waitUntil(() => !alive(foreground) && !alive(background), 10_000, 'both processes to be killed');
    await sandbox.stop();
    await expect(sandbox.run('true', { onLine: () => {} })).rejects.toThrow(/stopped/);
  });
});

describe('providers', () => {
  it('E2BSandbox refuses to exist without an API key', () => {
    expect(() => new E2BSandbox({})).toThrow(/E2B_API_KEY/);
    expect(() => new E2BSandbox({ apiKey: '' })).toThrow(/E2B_API_KEY/);
    expect(() => new E2BSandbox()).toThrow(/E2B_API_KEY/);
  });

  it('has the official e2b SDK that E2BSandbox loads, with the API it calls', async () => {
    const e2b = await import('e2b');
    expect(typeof e2b.Sandbox.create).toBe('function');
    expect(typeof e2b.Sandbox.prototype.kill).toBe('function');
  });

  it('createSandboxProvider picks E2B only when E2B_API_KEY is set', () => {
    expect(createSandboxProvider({})).toBeInstanceOf(LocalSandbox);
    expect(createSandboxProvider({ E2B_API_KEY: '' })).toBeInstanceOf(LocalSandbox);
    expect(createSandboxProvider({ E2B_API_KEY: 'e2b_test' })).toBeInstanceOf(E2BSandbox);
  });
});

describe('SandboxService', () => {
  it('publishes creating → running → stopped, and each output line in order with its stream', async () => {
    const rec = recorder();
    const service = new SandboxService({ provider: new LocalSandbox(), emit: rec.emit });
    const sandbox = await service.start({ sandboxId: 'sb-life', agentId: 'agent-1' });
    sandboxes.push(sandbox);
    workdirs.push(sandbox.workdir);
    expect(sandbox.id).toBe('sb-life');

    const ok = await service.run(sandbox, "printf 'a\\nb\\n'; printf 'err1\\n' 1>&2; printf 'no-newline'", { agentId: 'agent-1' });
    expect(ok).toEqual({ exitCode: 0 });
    expect(rec.output('stdout')).toEqual(['a\n', 'b\n', 'no-newline\n']);
    expect(rec.output('stderr')).toEqual(['err1\n']);
    expect(await service.run(sandbox, 'exit 3', { agentId: 'agent-1' })).toEqual({ exitCode: 3 });

    await service.stop(sandbox, { agentId: 'agent-1' });
    expect(existsSync(sandbox.workdir)).toBe(false);
    expect(rec.statuses().map((s) => s.status)).toEqual(['creating', 'running', 'stopped']);
    for (const { data } of rec.events) {
      expect(data.sandbox_id).toBe('sb-life');
      expect(data.timestamp).toMatch(ISO);
    }
    for (const status of rec.statuses()) expect(status.agent_id).toBe('agent-1');
    const line = rec.events.find((e) => e.type === 'command_output');
    expect(Object.keys(line?.data ?? {}).sort()).toEqual(['line', 'output', 'sandbox_id', 'stream', 'timestamp']);
    // One count across the service's runs (one task), from 1, in publish order, whichever pipe a line came from.
    expect(rec.events.flatMap((e) => (e.type === 'command_output' ? [e.data.line] : []))).toEqual([1, 2, 3, 4]);
  });

  it('publishes a line of control characters that JSON would blow past maxEventBytes, and the lines after it (review finding)', async () => {
    const hub = new EventManager();
    const published: { output: string }[] = [];
    const service = new SandboxService({
      provider: new LocalSandbox(),
      emit: async (type, data) => {
        await hub.publish('agent-1', type, data);
        if (type === 'command_output') published.push(data as { output: string });
      },
    });
    const sandbox = await service.start({ sandboxId: 'sb-bin', agentId: 'agent-1' });
    sandboxes.push(sandbox);
    workdirs.push(sandbox.workdir);
    // 16 KiB of NULs: 98 KB as JSON \u0000 escapes, over the hub's 64 KiB; U+FFFD keeps it at 48 KiB.
    expect(await service.run(sandbox, 'head -c 20000 /dev/zero; echo; echo after', { agentId: 'agent-1' })).toEqual({ exitCode: 0 });
    await service.stop(sandbox, { agentId: 'agent-1' });
    await hub.close();
    expect(published.at(-1)?.output).toBe('after\n');
    expect(published[0]?.output.startsWith('\uFFFD\uFFFD')).toBe(true);
    expect(printable('a\tb\u0000\u001b[31mc\u007f')).toBe('a\tb\uFFFD\uFFFD[31mc\uFFFD');
  });

  it('publishes error with the message when creation fails, and rethrows', async () => {
    const rec = recorder();
    const failure = new Error('no capacity');
    const provider: SandboxProvider = { create: () => Promise.reject(failure) };
    const service = new SandboxService({ provider, emit: rec.emit });
    await expect(service.start({ sandboxId: 'sb-x', agentId: 'agent-2' })).rejects.toBe(failure);
    expect(rec.statuses()).toEqual([
      { sandbox_id: 'sb-x', agent_id: 'agent-2', status: 'creating', timestamp: expect.stringMatching(ISO) },
      { sandbox_id: 'sb-x', agent_id: 'agent-2', status: 'error', message: 'no capacity', timestamp: expect.stringMatching(ISO) },
    ]);
  });

  it('stop() with an error publishes it, and stops the sandbox even when publishing fails', async () => {
    const rec = recorder();
    const service = new SandboxService({ provider: new LocalSandbox(), emit: rec.emit });
    const a = await service.start({ sandboxId: 'sb-a', agentId: 'agent-3' });
    sandboxes.push(a);
    workdirs.push(a.workdir);
    await service.stop(a, { agentId: 'agent-3', error: new Error('model refused') });
    expect(rec.statuses().at(-1)).toMatchObject({ status: 'error', message: 'model refused' });
    expect(existsSync(a.workdir)).toBe(false);

    let failEmits = false;
    const flaky = new SandboxService({
      provider: new LocalSandbox(),
      emit: () => {
        if (failEmits) throw new Error('bus down');
      },
    });
    const b = await flaky.start({ sandboxId: 'sb-b', agentId: 'agent-3' });
    sandboxes.push(b);
    workdirs.push(b.workdir);
    const lines: string[] = [];
    const running = b.run('echo up; sleep 30', { onLine: (_s, line) => lines.push(line) });
    await waitUntil(() => lines.length > 0, 10_000, 'the command to start');
    failEmits = true;
    await expect(flaky.stop(b, { agentId: 'agent-3' })).rejects.toThrow('bus down');
    expect(existsSync(b.workdir)).toBe(false);
    expect(await running).toEqual({ exitCode: EXIT_STOPPED });
  });

  it('does not leak the sandbox when publishing "running" fails', async () => {
    const created: Sandbox[] = [];
    const local = new LocalSandbox();
    const provider: SandboxProvider = {
      create: async (options) => {
        const sandbox = await local.create(options);
        created.push(sandbox);
        workdirs.push(sandbox.workdir);
        return sandbox;
      },
    };
    const service = new SandboxService({
      provider,
      emit: (_type, data) => {
        if ('status' in data && data.status === 'running') throw new Error('bus down');
      },
    });
    await expect(service.start({ sandboxId: 'sb-r', agentId: 'agent-4' })).rejects.toThrow('bus down');
    expect(created).toHaveLength(1);
    expect(existsSync(created[0]!.workdir)).toBe(false);
  });

  it('keeps 500 lines in order when emit settles after random delays, one emit at a time', async () => {
    const rec = recorder(() => Math.random() * 3);
    const service = new SandboxService({ provider: new LocalSandbox(), emit: rec.emit });
    const sandbox = await service.start({ sandboxId: 'sb-order', agentId: 'agent-5' });
    sandboxes.push(sandbox);
    workdirs.push(sandbox.workdir);
    const result = await service.run(sandbox, 'seq 1 500; echo oops >&2', { agentId: 'agent-5' });
    expect(result).toEqual({ exitCode: 0 });
    // run() resolves only once every line has been published.
    expect(rec.output('stdout')).toEqual(Array.from({ length: 500 }, (_, i) => `${i + 1}\n`));
    expect(rec.output('stderr')).toEqual(['oops\n']);
    expect(rec.maxInFlight()).toBe(1);
  });

  it('drops lines beyond the pending cap with one notice that counts them', async () => {
    const rec = recorder(() => 2);
    const service = new SandboxService({ provider: new LocalSandbox(), emit: rec.emit, maxPendingLines: 20 });
    const sandbox = await newSandbox();
    const result = await service.run(sandbox, 'seq 1 3000', { agentId: 'agent-6' });
    expect(result).toEqual({ exitCode: 0 });
    const stdout = rec.output('stdout');
    const notices = rec.output('stderr');
    expect(notices.length).toBeGreaterThanOrEqual(1);
    for (const notice of notices) expect(notice).toMatch(/^\[sandbox\] \d+ output line\(s\) dropped/);
    const dropped = notices.reduce((sum, n) => sum + Number(/(\d+) output/.exec(n)?.[1]), 0);
    expect(dropped).toBeGreaterThan(0);
    expect(stdout.length + dropped).toBe(3000);
    // What got through is still in order.
    const numbers = stdout.map(Number);
    expect(numbers).toEqual([...numbers].sort((x, y) => x - y));
    expect(numbers[0]).toBe(1);
  });

  it('rejects run() with the emit error after the command finishes, publishing nothing more', async () => {
    let calls = 0;
    const service = new SandboxService({
      provider: new LocalSandbox(),
      emit: async () => {
        if (++calls === 3) throw new Error('bus down');
      },
    });
    const sandbox = await newSandbox();
    await expect(service.run(sandbox, 'seq 1 10', { agentId: 'agent-7' })).rejects.toThrow('bus down');
    expect(calls).toBe(3);
  });
});
