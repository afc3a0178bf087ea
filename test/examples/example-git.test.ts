import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, waitUntil } from '../support/helpers.js';
import {
  CLONE_WEIGHTS,
  GitError,
  GitService,
  createBareRemote,
  createLineSplitter,
  createProgressTracker,
  displayUrl,
  parseGitProgress,
  redactCredentials,
  type GitOperationEvent,
} from '../../examples/agent-work/git.mjs';

/**
 * The agent-work example's git service, against the real git CLI in real
 * temporary directories.
 */

const cleanups = cleanupAfterEach();

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ssecast-git-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** git for the test's own checks, isolated from the machine's config like the service's. */
function gitOut(args: string[], cwd?: string): Promise<string> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^GIT_/i.test(key)) env[key] = value;
  Object.assign(env, { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: os.devNull, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' });
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd, env }, (error, stdout, stderr) =>
      error ? reject(new Error(`git ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    );
  });
}

function recorder(): { events: GitOperationEvent[]; service: GitService } {
  const events: GitOperationEvent[] = [];
  const service = new GitService({
    emit: (type, data) => {
      expect(type).toBe('git_operation');
      events.push(data);
    },
  });
  return { events, service };
}

const statuses = (events: GitOperationEvent[]) => events.map((e) => e.status);
const progresses = (events: GitOperationEvent[]) => events.map((e) => e.progress);

/** started(0), in_progress..., completed(100), with progress integers that never go down. */
function expectProgressRun(events: GitOperationEvent[], operation: GitOperationEvent['operation']): void {
  expect(events.every((e) => e.operation === operation && e.sandbox_id === 'sb-1')).toBe(true);
  expect(events[0]).toMatchObject({ status: 'started', progress: 0 });
  expect(events.at(-1)).toMatchObject({ status: 'completed', progress: 100 });
  expect(statuses(events.slice(1, -1)).every((s) => s === 'in_progress')).toBe(true);
  const values = progresses(events) as number[];
  for (const value of values) {
    expect(Number.isInteger(value)).toBe(true);
    expect(value).toBeGreaterThanOrEqual(0);
    expect(value).toBeLessThanOrEqual(100);
  }
  for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1] as number);
  for (const event of events) {
    expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
    expect(event.message.length).toBeGreaterThan(0);
  }
}

describe('parseGitProgress', () => {
  it('reads the phase and percentage of the progress lines git writes', () => {
    expect(parseGitProgress('Receiving objects:  45% (90/200)')).toEqual({ phase: 'receiving', percent: 45 });
    expect(parseGitProgress('Receiving objects: 100% (204/204), 399.09 KiB | 79.82 MiB/s, done.')).toEqual({
      phase: 'receiving',
      percent: 100,
    });
    expect(parseGitProgress('remote: Counting objects:  10% (21/204)        ')).toEqual({ phase: 'counting', percent: 10 });
    expect(parseGitProgress('remote: Compressing objects:  75% (3/4)        ')).toEqual({ phase: 'compressing', percent: 75 });
    expect(parseGitProgress('Resolving deltas: 100% (12/12), done.')).toEqual({ phase: 'resolving', percent: 100 });
    expect(parseGitProgress('Writing objects:   0% (1/204)')).toEqual({ phase: 'writing', percent: 0 });
    expect(parseGitProgress('Updating files:  50% (100/200)')).toEqual({ phase: 'updating', percent: 50 });
    expect(parseGitProgress('\x1b[KReceiving objects:  7% (14/200)\x1b[K')).toEqual({ phase: 'receiving', percent: 7 });
  });

  it('ignores lines that are not progress', () => {
    for (const line of [
      '',
      "Cloning into 'work'...",
      'remote: Enumerating objects: 204, done.',
      'Delta compression using up to 2 threads',
      'remote: Total 204 (delta 0), reused 204 (delta 0), pack-reused 0',
      "fatal: repository 'https://example.com/x.git/' not found",
      ' * [new branch]      feat -> feat',
      'Receiving objects: lots',
    ]) {
      expect(parseGitProgress(line), line).toBeNull();
    }
  });

  it('takes the last update of a \\r-separated chunk', () => {
    expect(parseGitProgress('Receiving objects:   1% (3/204)\rReceiving objects:   2% (5/204)\r')).toEqual({
      phase: 'receiving',
      percent: 2,
    });
    expect(parseGitProgress('Receiving objects:   1% (3/204)\rremote: Total 204 (delta 0), reused 204 (delta 0)        \n')).toEqual({
      phase: 'receiving',
      percent: 1,
    });
    expect(parseGitProgress('Counting objects:  99% (202/204)\rCounting objects: 100% (204/204)\rCompressing objects:  25% (1/4)')).toEqual(
      {
        phase: 'compressing',
        percent: 25,
      },
    );
  });

  it('gets whole lines out of chunks that split lines, \\r and \\r\\n anywhere', () => {
    const lines: string[] = [];
    const splitter = createLineSplitter((line) => lines.push(line));
    for (const chunk of [
      'Receiving obj',
      'ects:   1% (3/204)\rRecei',
      'ving objects:   2% (5/204)\r',
      '\rdone\r',
      '\nCloning',
      ' into x\n\n',
      'tail',
    ]) {
      splitter.write(chunk);
    }
    expect(lines).toEqual(['Receiving objects:   1% (3/204)', 'Receiving objects:   2% (5/204)', 'done', 'Cloning into x']);
    splitter.end();
    expect(lines.at(-1)).toBe('tail');
    expect(lines.map((line) => parseGitProgress(line)?.percent ?? null)).toEqual([1, 2, null, null, null]);
  });

  it('turns the phases of a clone into one throttled, never-decreasing percentage', () => {
    const updates: number[] = [];
    const track = createProgressTracker(CLONE_WEIGHTS, (value) => updates.push(value));
    for (let p = 0; p <= 100; p++) track(`remote: Counting objects: ${p}% (${p}/100)`);
    for (let p = 0; p <= 100; p += 25) track(`remote: Compressing objects: ${p}% (${p / 25}/4)`);
    for (let p = 0; p <= 100; p++) track(`Receiving objects: ${p}% (${p}/100)`);
    track('Counting objects: 0% (0/1)'); // a late, lower line does not take the value back
    for (let p = 0; p <= 100; p += 10) track(`Resolving deltas: ${p}% (${p}/100)`);
    track('Updating files: 50% (1/2)'); // not a weighted phase
    expect(updates[0]).toBe(0);
    for (let i = 1; i < updates.length; i++) expect(updates[i]).toBeGreaterThanOrEqual(updates[i - 1] as number);
    // 101 receiving lines give at most 70 / 5 + 1 updates, not 101.
    expect(updates.length).toBeLessThan(40);
    expect(updates).toContain(20); // receiving starts its slice at 20
    expect(Math.max(...updates)).toBe(99); // 100 belongs to the completed event
  });
});

describe('displayUrl', () => {
  it('removes user:token@ and user@ from URLs, and leaves other URLs alone', () => {
    expect(displayUrl('https://x-access-token:ghp_secret123@github.com/acme/repo.git')).toBe('https://github.com/acme/repo.git');
    expect(displayUrl('https://oauth2:glpat-abc@gitlab.example.com:8443/a/b.git')).toBe('https://gitlab.example.com:8443/a/b.git');
    expect(displayUrl('https://user@host/repo.git')).toBe('https://host/repo.git');
    expect(displayUrl('https://us%40er:p@ss@host/repo.git?x=1')).toBe('https://host/repo.git?x=1');
    expect(displayUrl('ssh://git@host:22/repo.git')).toBe('ssh://host:22/repo.git');
    expect(displayUrl('https://github.com/acme/repo.git')).toBe('https://github.com/acme/repo.git');
    expect(displayUrl('file:///tmp/remote.git')).toBe('file:///tmp/remote.git');
    expect(displayUrl('git@github.com:acme/repo.git')).toBe('git@github.com:acme/repo.git');
  });

  it('redacts every URL inside a line of git output', () => {
    expect(redactCredentials("fatal: unable to access 'https://x-access-token:ghp_secret123@host/r.git/': error; To https://a:b@h/x")).toBe(
      "fatal: unable to access 'https://host/r.git/': error; To https://h/x",
    );
  });
});

describe('createBareRemote', () => {
  it('creates a bare repository with a main branch that ls-remote lists, at a file:// URL', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    expect(remote.path).toBe(path.join(root, 'remote.git'));
    expect(remote.url).toMatch(/^file:\/\//);
    const refs = await gitOut(['ls-remote', remote.url]);
    expect(refs).toMatch(/^[0-9a-f]{40}\tHEAD$/m);
    expect(refs).toMatch(/^[0-9a-f]{40}\trefs\/heads\/main$/m);
    expect((await gitOut(['--git-dir', remote.path, 'rev-parse', '--is-bare-repository'])).trim()).toBe('true');
    const files = (await gitOut(['--git-dir', remote.path, 'ls-tree', '-r', '--name-only', 'main'])).trim().split('\n');
    expect(files).toContain('README.md');
    expect(files.length).toBeGreaterThanOrEqual(202);
    expect(await readdir(root)).toEqual(['remote.git']); // the seeding repository is gone
  }, 60_000);
});

describe('GitService', () => {
  it('clones with started(0), growing in_progress, completed(100), and leaves the files', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const { events, service } = recorder();
    const dir = path.join(root, 'work');
    await expect(service.clone({ sandboxId: 'sb-1', url: remote.url, dir })).resolves.toEqual({ dir });

    expectProgressRun(events, 'clone');
    const middle = (progresses(events.slice(1, -1)) as number[]).filter((p) => p > 0 && p < 100);
    expect(middle.length).toBeGreaterThan(0);
    // Throttled: far fewer events than git's one-per-percent lines.
    expect(events.length).toBeLessThan(40);
    expect(existsSync(path.join(dir, 'README.md'))).toBe(true);
    expect(existsSync(path.join(dir, 'src', 'module-200.js'))).toBe(true);
    expect(existsSync(path.join(dir, 'assets', 'blob-b.bin'))).toBe(true);
    expect((await gitOut(['status', '--porcelain'], dir)).trim()).toBe('');
  }, 60_000);

  it('branches, commits and pushes: the remote has the branch and the commit message', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const dir = path.join(root, 'work');
    await recorder().service.clone({ sandboxId: 'sb-1', url: remote.url, dir });

    const { events, service } = recorder();
    await expect(service.branch({ sandboxId: 'sb-1', dir, name: 'agent/feature-1' })).resolves.toEqual({ branch: 'agent/feature-1' });
    expect(statuses(events)).toEqual(['started', 'completed']);
    expect(events.map((e) => e.operation)).toEqual(['branch', 'branch']);
    expect(progresses(events)).toEqual([0, 100]);
    expect((await gitOut(['branch', '--show-current'], dir)).trim()).toBe('agent/feature-1');

    events.length = 0;
    await writeFile(path.join(dir, 'NOTES.md'), 'written by the agent\n');
    const commit = await service.commit({ sandboxId: 'sb-1', dir, message: 'Add agent notes' });
    expect(commit.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(commit.sha.startsWith(commit.shortSha)).toBe(true);
    expect(statuses(events)).toEqual(['started', 'completed']);
    expect(events.map((e) => e.operation)).toEqual(['commit', 'commit']);
    expect(events[1]?.message).toContain(commit.shortSha);
    expect((await gitOut(['log', '-1', '--format=%an <%ae>'], dir)).trim()).toBe('ssecast agent <agent@example.invalid>');

    events.length = 0;
    await service.push({ sandboxId: 'sb-1', dir, branch: 'agent/feature-1' });
    expectProgressRun(events, 'push');
    expect(events.at(-1)?.message).not.toMatch(/@/);

    expect((await gitOut(['--git-dir', remote.path, 'log', '-1', '--format=%s', 'agent/feature-1'])).trim()).toBe('Add agent notes');
    expect((await gitOut(['--git-dir', remote.path, 'rev-parse', 'agent/feature-1'])).trim()).toBe(commit.sha);
    expect((await gitOut(['rev-parse', '--abbrev-ref', 'agent/feature-1@{upstream}'], dir)).trim()).toBe('origin/agent/feature-1');
  }, 60_000);

  it('commits with the given author, and only the given files', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const dir = path.join(root, 'work');
    const { events, service } = recorder();
    await service.clone({ sandboxId: 'sb-1', url: remote.url, dir });
    await writeFile(path.join(dir, 'a.txt'), 'a\n');
    await writeFile(path.join(dir, 'b.txt'), 'b\n');
    await service.commit({
      sandboxId: 'sb-1',
      dir,
      message: 'Only a',
      files: ['a.txt'],
      authorName: 'Ada',
      authorEmail: 'ada@example.invalid',
    });
    expect((await gitOut(['show', '--name-only', '--format=%an <%ae>|%cn', 'HEAD'], dir)).trim().split('\n').filter(Boolean)).toEqual([
      'Ada <ada@example.invalid>|Ada',
      'a.txt',
    ]);
    expect((await gitOut(['status', '--porcelain'], dir)).trim()).toBe('?? b.txt');
    expect(statuses(events).slice(-2)).toEqual(['started', 'completed']);
  }, 60_000);

  it('refuses a bad branch name with a failed event and a rejection, and creates nothing', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const dir = path.join(root, 'work');
    await recorder().service.clone({ sandboxId: 'sb-1', url: remote.url, dir });
    const before = await gitOut(['for-each-ref', '--format=%(refname)'], dir);

    for (const name of ['../x', 'a b', '-x', '+x', 'x..y', 'x.lock', '']) {
      const { events, service } = recorder();
      const error = await service.branch({ sandboxId: 'sb-1', dir, name }).then(
        () => expect.unreachable(`branch ${JSON.stringify(name)} was accepted`),
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(GitError);
      expect((error as GitError).message).toMatch(/invalid branch name/);
      expect(statuses(events)).toEqual(['started', 'failed']);
      expect(events[1]?.message).toBe((error as GitError).message);
      expect(events[1]?.progress).toBeUndefined();
    }
    expect(await gitOut(['for-each-ref', '--format=%(refname)'], dir)).toBe(before);
    expect((await gitOut(['branch', '--show-current'], dir)).trim()).toBe('main');
  }, 60_000);

  it('fails a commit with nothing to commit', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const dir = path.join(root, 'work');
    const { events, service } = recorder();
    await service.clone({ sandboxId: 'sb-1', url: remote.url, dir });
    const head = (await gitOut(['rev-parse', 'HEAD'], dir)).trim();
    events.length = 0;
    await expect(service.commit({ sandboxId: 'sb-1', dir, message: 'Nothing' })).rejects.toThrow('nothing to commit');
    expect(events.map((e) => [e.operation, e.status, e.message])).toEqual([
      ['commit', 'started', 'Committing changes'],
      ['commit', 'failed', 'nothing to commit'],
    ]);
    expect((await gitOut(['rev-parse', 'HEAD'], dir)).trim()).toBe(head);
  }, 60_000);

  it('fails the clone of a missing repository with git’s message', async () => {
    const root = await tempDir();
    const { events, service } = recorder();
    const dir = path.join(root, 'work');
    const url = pathToFileURL(path.join(root, 'missing.git')).href;
    const error = await service.clone({ sandboxId: 'sb-1', url, dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect((error as GitError).operation).toBe('clone');
    expect((error as GitError).message).toMatch(/does not appear to be a git repository/);
    expect(statuses(events)).toEqual(['started', 'failed']);
    expect(events[1]?.message).toBe((error as GitError).message);
    expect(events[1]?.message.length).toBeLessThanOrEqual(500);
    expect(existsSync(dir)).toBe(false);
  }, 60_000);

  it('never shows the token of a URL with credentials, in any event or error', async () => {
    const root = await tempDir();
    const { events, service } = recorder();
    const url = 'https://x-access-token:ghp_secret123@127.0.0.1:1/none.git';
    const error = await service.clone({ sandboxId: 'sb-1', url, dir: path.join(root, 'work') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect(statuses(events)).toEqual(['started', 'failed']);
    expect(events[0]?.message).toBe('Cloning https://127.0.0.1:1/none.git');
    expect(events[1]?.message).toMatch(/127\.0\.0\.1/);
    expect(JSON.stringify(events)).not.toMatch(/ghp_secret123|x-access-token/);
    expect(String((error as Error).message)).not.toMatch(/ghp_secret123/);
    expect(String((error as Error).stack)).not.toMatch(/ghp_secret123/);
  }, 60_000);

  it('kills a git that overruns its timeout and reports it', async () => {
    const root = await tempDir();
    // A server that accepts connections and never answers.
    const sockets = new Set<net.Socket>();
    let closed = 0;
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => closed++);
      socket.resume(); // read, so that the peer's FIN is seen
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    cleanups.push(() => sockets.forEach((socket) => socket.destroy()));
    const { port } = server.address() as net.AddressInfo;

    const { events, service } = recorder();
    const dir = path.join(root, 'work');
    const error = await service
      // Long enough for git and its HTTP helper to start and connect on a loaded machine (500 ms was not, beside the browser tests).
      .clone({ sandboxId: 'sb-1', url: `http://127.0.0.1:${port}/repo.git`, dir, timeoutMs: 2000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect((error as GitError).timedOut).toBe(true);
    expect((error as GitError).message).toBe('git clone timed out after 2000 ms and was killed');
    expect(statuses(events)).toEqual(['started', 'failed']);
    expect(sockets.size).toBeGreaterThan(0); // git really connected before it was killed
    // The whole process group was killed: git's HTTP helper let go of its connection too.
    await waitUntil(() => closed === sockets.size, 10_000, 'the helper to close its connection');
  }, 60_000);

  it('awaits each emit in order, and does not run git when the started event is refused', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const seen: string[] = [];
    let open = 0;
    const service = new GitService({
      emit: async (_type, data) => {
        open++;
        expect(open).toBe(1); // never two emits at once
        await new Promise((resolve) => setTimeout(resolve, 2));
        seen.push(`${data.status}:${data.progress}`);
        open--;
      },
    });
    await service.clone({ sandboxId: 'sb-1', url: remote.url, dir: path.join(root, 'work') });
    expect(seen[0]).toBe('started:0');
    expect(seen.at(-1)).toBe('completed:100');
    expect(seen.length).toBeGreaterThan(2);

    const refusing = new GitService({
      emit: () => {
        throw new Error('stream closed');
      },
    });
    const dir = path.join(root, 'never');
    await expect(refusing.clone({ sandboxId: 'sb-1', url: remote.url, dir })).rejects.toThrow('stream closed');
    expect(existsSync(dir)).toBe(false);
  }, 60_000);

  it('is not moved by the caller’s git environment or global config', async () => {
    const root = await tempDir();
    const remote = await createBareRemote(root);
    const home = path.join(root, 'home');
    await mkdir(home);
    await writeFile(path.join(home, '.gitconfig'), '[user]\n\tname = From Home\n[commit]\n\tgpgsign = true\n');
    const saved = { ...process.env };
    const restore = () => {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    };
    cleanups.push(restore);
    Object.assign(process.env, {
      HOME: home,
      XDG_CONFIG_HOME: home,
      GIT_DIR: path.join(root, 'nowhere.git'),
      GIT_AUTHOR_NAME: 'From Env',
      GIT_CONFIG_PARAMETERS: "'commit.gpgsign'='true'",
    });
    const { events, service } = recorder();
    const dir = path.join(root, 'work');
    await service.clone({ sandboxId: 'sb-1', url: remote.url, dir });
    await writeFile(path.join(dir, 'x.txt'), 'x\n');
    await service.commit({ sandboxId: 'sb-1', dir, message: 'Isolated' });
    restore();
    expect((await gitOut(['log', '-1', '--format=%an|%G?|%s'], dir)).trim()).toBe('ssecast agent|N|Isolated');
    expect(statuses(events).at(-1)).toBe('completed');
  }, 60_000);

  it('rejects calls without a sandbox id or directory before any event', async () => {
    const { events, service } = recorder();
    await expect(service.clone({ sandboxId: '', url: 'file:///x', dir: '/tmp/x' })).rejects.toThrow(TypeError);
    await expect(service.branch({ sandboxId: 'sb-1', dir: '', name: 'x' })).rejects.toThrow(TypeError);
    expect(events).toEqual([]);
    expect(() => new GitService({} as never)).toThrow(TypeError);
  });
});
