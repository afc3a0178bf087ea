// Pull requests through the real GitHub REST client (@octokit/rest), pointed
// at GITHUB_API_URL. By default that is a small GitHub-compatible endpoint the
// example mounts in-process, so the Octokit path runs for real with no account.
import express from 'express';
import { Octokit } from '@octokit/rest';
import { redactSecrets } from 'ssecast/redact';

/**
 * @typedef {(type: string, data: Record<string, unknown>) => unknown} Emit
 */

export class GitHubService {
  /**
   * @param {{ emit: Emit, baseUrl: string, token: string, owner: string, repo: string, octokit?: Octokit }} options
   */
  constructor({ emit, baseUrl, token, owner, repo, octokit }) {
    this.emit = emit;
    this.owner = owner;
    this.repo = repo;
    /** @type {Octokit} */
    this.octokit = octokit ?? new Octokit({ auth: token, baseUrl, userAgent: 'ssecast-agent-work', request: { retries: 0 } });
  }

  /**
   * Opens a pull request and emits `pr_created`. Rejects with the API's
   * message (redacted) when GitHub refuses it.
   * @param {{ taskId: string, head: string, base: string, title: string, body?: string }} pr
   * @returns {Promise<{ number: number, url: string }>}
   */
  async createPullRequest({ taskId, head, base, title, body = '' }) {
    let response;
    try {
      response = await this.octokit.rest.pulls.create({ owner: this.owner, repo: this.repo, head, base, title, body });
    } catch (error) {
      const status = /** @type {{ status?: number }} */ (error).status;
      // Octokit's message can carry a whole error page; the stream gets its start.
      const message = redactSecrets(String(/** @type {Error} */ (error).message ?? error)).slice(0, 300);
      throw new Error(`pull request failed${status ? ` (${status})` : ''}: ${message}`);
    }
    const { number, html_url: url } = response.data;
    await this.emit('pr_created', { task_id: taskId, pr_url: url, pr_number: number, timestamp: new Date().toISOString() });
    return { number, url };
  }
}

/**
 * The part of the GitHub REST API the example uses: `POST
 * /repos/{owner}/{repo}/pulls`, answered the way GitHub answers it (201, 401,
 * 422), plus a page for each pull request's `html_url`. Pull requests are
 * kept in memory, at most `maxPulls` of them.
 * @param {{ webBase: string | (() => string), maxPulls?: number }} options  where `html_url`s point
 *   (a function when the server's address is known only once it listens)
 */
export function fakeGitHub({ webBase, maxPulls = 1000 }) {
  const webUrl = () => (typeof webBase === 'function' ? webBase() : webBase);
  const router = express.Router();
  /** @type {Map<string, { number: number, title: string, head: string, base: string, body: string }>} */
  const pulls = new Map();
  let next = 1;
  router.post('/repos/:owner/:repo/pulls', express.json({ limit: '64kb' }), (req, res) => {
    if (!/^(token|bearer) \S+/i.test(req.get('authorization') ?? '')) {
      return res.status(401).json({ message: 'Requires authentication', documentation_url: 'https://docs.github.com/rest' });
    }
    const { title, head, base, body = '' } = req.body ?? {};
    const missing = ['title', 'head', 'base'].filter((field) => typeof req.body?.[field] !== 'string' || req.body[field] === '');
    if (missing.length > 0) {
      return res.status(422).json({
        message: 'Validation Failed',
        errors: missing.map((field) => ({ resource: 'PullRequest', field, code: 'missing_field' })),
      });
    }
    const number = next++;
    const key = `${req.params.owner}/${req.params.repo}/${number}`;
    pulls.set(key, { number, title, head, base, body });
    if (pulls.size > maxPulls) pulls.delete(/** @type {string} */ (pulls.keys().next().value));
    res.status(201).json({
      number,
      state: 'open',
      title,
      body,
      html_url: `${webUrl()}/${req.params.owner}/${req.params.repo}/pull/${number}`,
      head: { ref: head },
      base: { ref: base },
    });
  });
  router.get('/:owner/:repo/pull/:number', (req, res) => {
    const pull = pulls.get(`${req.params.owner}/${req.params.repo}/${req.params.number}`);
    if (!pull) return res.status(404).type('text').send('no such pull request');
    res.type('text').send(`Pull request #${pull.number}: ${pull.title}\n${pull.head} -> ${pull.base}\n\n${pull.body}\n`);
  });
  return router;
}
