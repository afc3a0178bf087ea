import http from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { fakeGitHub, GitHubService } from '../../examples/agent-work/github.mjs';
import { listen, type TestServer } from '../support/helpers.js';

const servers: TestServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()?.close();
});

async function startFake(): Promise<TestServer> {
  const app = express();
  let base = '';
  app.use('/github-api', (req, res, next) => fakeGitHub({ webBase: `${base}/github` })(req, res, next));
  const server = await listen(http.createServer(app));
  base = server.url;
  servers.push(server);
  return server;
}

describe('GitHubService through Octokit against the in-process GitHub endpoint', () => {
  it('opens a pull request and emits pr_created with its url and number', async () => {
    const app = express();
    const server = await listen(http.createServer(app));
    servers.push(server);
    const api = fakeGitHub({ webBase: `${server.url}/github` });
    app.use('/github-api', api);
    app.use('/github', api);
    const emitted: { type: string; data: Record<string, unknown> }[] = [];
    const github = new GitHubService({
      emit: (type, data) => void emitted.push({ type, data }),
      baseUrl: `${server.url}/github-api`,
      token: 'ghp_example',
      owner: 'acme',
      repo: 'app',
    });
    const first = await github.createPullRequest({ taskId: 't1', head: 'agent/t1', base: 'main', title: 'Add login form' });
    const second = await github.createPullRequest({ taskId: 't2', head: 'agent/t2', base: 'main', title: 'Fix typo' });
    expect([first.number, second.number]).toEqual([1, 2]);
    expect(first.url).toBe(`${server.url}/github/acme/app/pull/1`);
    expect(emitted[0]).toEqual({
      type: 'pr_created',
      data: { task_id: 't1', pr_url: first.url, pr_number: 1, timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/) },
    });
    const page = await fetch(first.url);
    expect(await page.text()).toContain('Pull request #1: Add login form');
  });

  it('rejects with the API status and message, emitting nothing, when GitHub refuses', async () => {
    const server = await startFake();
    const emitted: unknown[] = [];
    const make = (token: string) =>
      new GitHubService({
        emit: (type, data) => void emitted.push({ type, data }),
        baseUrl: `${server.url}/github-api`,
        token,
        owner: 'acme',
        repo: 'app',
      });
    await expect(make('').createPullRequest({ taskId: 't', head: 'h', base: 'main', title: 'x' })).rejects.toThrow(
      /pull request failed \(401\)/,
    );
    await expect(make('ghp_x').createPullRequest({ taskId: 't', head: 'h', base: 'main', title: '' })).rejects.toThrow(
      /\(422\).*Validation Failed/,
    );
    expect(emitted).toEqual([]);
  });

  it('never repeats a token from an error message', async () => {
    const secret = `ghp_${'Z'.repeat(36)}`;
    const github = new GitHubService({
      emit: () => {},
      baseUrl: `http://x-access-token:${secret}@127.0.0.1:1`,
      token: secret,
      owner: 'o',
      repo: 'r',
    });
    const error = await github.createPullRequest({ taskId: 't', head: 'h', base: 'b', title: 't' }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).not.toContain(secret);
  });
});
