// One agent task, end to end: a sandbox, a clone of the repository, a
// branch, the command's live output, a commit and a push, a pull request,
// and the sandbox stopped again whatever happened. Every step publishes to
// the agent's stream; every payload is redacted before it leaves, and every
// event that is state (the task, its sandbox, each git operation, the pull
// request) is published with its key (events.mjs), so it stays with the hub
// for a late joiner however much output follows.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { redactDeep } from 'ssecast/redact';
import { keyOf } from './events.mjs';
import { GitService } from './git.mjs';
import { GitHubService } from './github.mjs';
import { SandboxService } from './sandbox.mjs';

/** What runs when a task names no command: it prints, warns and changes the repository. */
export const DEFAULT_COMMAND = [
  'echo "Analysing repository $(basename "$PWD")"',
  'ls',
  'echo "warning: 2 TODOs found" 1>&2',
  'printf "export const greeting = %s;\\n" "\'hello from the agent\'" > src-greeting.js',
  'node --version',
  'echo "Done."',
].join(' && ');

/** Agent ids: what the stream names and URLs carry. */
export const AGENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

export class TaskError extends Error {}

/**
 * @typedef {{ stats(): Record<string, number>, publish(stream: string, type: string, data: unknown, options?: { key?: string }): Promise<unknown> }} Hub
 * @typedef {{ published(type: string): void }} Metrics
 */

export class TaskRunner {
  /**
   * @param {{
   *   hub: Hub,
   *   metrics?: Metrics,
   *   sandboxProvider: import('./sandbox.mjs').SandboxProvider,
   *   remoteUrl: string,
   *   github: { baseUrl: string, token: string, owner: string, repo: string },
   *   maxConcurrent?: number,
   *   log?: Pick<Console, 'error'>,
   * }} options
   */
  constructor({ hub, metrics, sandboxProvider, remoteUrl, github, maxConcurrent = 4, log = console }) {
    this.hub = hub;
    this.metrics = metrics;
    this.provider = sandboxProvider;
    this.remoteUrl = remoteUrl;
    this.github = github;
    this.maxConcurrent = maxConcurrent;
    this.log = log;
    /** @type {Set<Promise<void>>} */
    this.running = new Set();
  }

  /**
   * Starts a task and returns its ids at once; the work goes on in the
   * background and is reported on the agent's stream.
   * @param {string} agentId
   * @param {string} command
   * @returns {{ task_id: string, sandbox_id: string }}
   */
  start(agentId, command) {
    if (this.running.size >= this.maxConcurrent) throw new TaskError(`at most ${this.maxConcurrent} tasks run at once; try again shortly`);
    const ids = { task_id: `task-${randomUUID().slice(0, 8)}`, sandbox_id: `sbx-${randomUUID().slice(0, 8)}` };
    const run = this.run(agentId, command, ids)
      .catch((error) => this.log.error(`[agent-work] task ${ids.task_id} failed:`, error?.message ?? error))
      .finally(() => this.running.delete(run));
    this.running.add(run);
    return ids;
  }

  /** Resolves when every running task has finished. */
  async idle() {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /**
   * @param {string} agentId
   * @param {string} command
   * @param {{ task_id: string, sandbox_id: string }} ids
   */
  async run(agentId, command, { task_id, sandbox_id }) {
    // Publishing is in order: each service awaits its emits.
    /** @param {string} type @param {Record<string, unknown>} data */
    const emit = async (type, data) => {
      const payload = { ...data, task_id, agent_id: agentId };
      const key = keyOf(type, payload);
      await this.hub.publish(agentId, type, redactDeep(payload), key ? { key } : undefined);
      this.metrics?.published(type);
    };
    // The task's own record: what a card shows as its status, command, start time and duration.
    const started_at = new Date().toISOString();
    const record = { agent_id: agentId, sandbox_id, command, started_at };
    await emit('task_status', { ...record, status: 'running', timestamp: started_at });
    const sandboxes = new SandboxService({ provider: this.provider, emit });
    const git = new GitService({ emit });
    const github = new GitHubService({ emit, ...this.github });
    const branch = `agent/${task_id}`;

    /** @type {Error | undefined} */
    let failure;
    try {
      await this.#work({ agentId, command, task_id, sandbox_id, sandboxes, git, github, branch });
    } catch (error) {
      failure = /** @type {Error} */ (error);
    }
    // The outcome, whatever happened: a card never stays "running" for a task that ended.
    const finished_at = new Date().toISOString();
    await emit('task_status', {
      ...record,
      status: failure ? 'failed' : 'completed',
      finished_at,
      ...(failure ? { message: String(failure.message ?? failure).slice(0, 16 * 1024) } : {}),
      timestamp: finished_at,
    });
    if (failure) throw failure;
  }

  /**
   * The sandbox and the steps in it; the sandbox is stopped again whatever happened.
   * @param {{
   *   agentId: string, command: string, task_id: string, sandbox_id: string, branch: string,
   *   sandboxes: SandboxService, git: GitService, github: GitHubService,
   * }} context
   */
  async #work({ agentId, command, task_id, sandbox_id, sandboxes, git, github, branch }) {
    const sandbox = await sandboxes.start({ sandboxId: sandbox_id, agentId });
    /** @type {Error | undefined} */
    let failure;
    try {
      const repo = path.join(sandbox.workdir, 'repo');
      await git.clone({ sandboxId: sandbox_id, url: this.remoteUrl, dir: repo });
      await git.branch({ sandboxId: sandbox_id, dir: repo, name: branch });
      const { exitCode } = await sandboxes.run(sandbox, `cd repo && ${command}`, { agentId });
      // A record of the task, so that there is always something to commit.
      await fs.mkdir(path.join(repo, 'agent-tasks'), { recursive: true });
      await fs.writeFile(path.join(repo, 'agent-tasks', `${task_id}.md`), `# ${task_id}\n\n    ${command}\n\nexit code: ${exitCode}\n`);
      if (exitCode !== 0) throw new TaskError(`the command exited with code ${exitCode}`);
      await git.commit({ sandboxId: sandbox_id, dir: repo, message: `Agent task ${task_id}` });
      await git.push({ sandboxId: sandbox_id, dir: repo, branch });
      await github.createPullRequest({
        taskId: task_id,
        head: branch,
        base: 'main',
        title: `Agent task ${task_id}`,
        body: `Ran \`${command.slice(0, 500)}\` in sandbox ${sandbox_id}.`,
      });
    } catch (error) {
      failure = /** @type {Error} */ (error);
    } finally {
      await sandboxes.stop(sandbox, { agentId, ...(failure ? { error: failure } : {}) });
    }
    if (failure) throw failure;
  }
}
