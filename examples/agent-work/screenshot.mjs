// Retakes docs/agent-work.png: the Agent Work page following two agents, after
// a task on each, in headless Chromium (Debian's, driven by playwright-core,
// a dev dependency), at 1280×900.
//   npm run build && node examples/agent-work/screenshot.mjs [out.png]
// CHROMIUM moves the browser (default /usr/bin/chromium).
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createAgentWorkApp } from './server.mjs';

const out = process.argv[2] ?? fileURLToPath(new URL('../../docs/agent-work.png', import.meta.url));
const WAIT = { timeout: 30_000 };
// A second task with a little more to show: build-like output and a warning on stderr.
const BUILD = [
  'echo "> npm run build"',
  'for f in api client server worker; do echo "  compiled src/$f.ts"; sleep 0.05; done',
  'echo "warning: src/worker.ts: unused variable retries" 1>&2',
  'echo "> npm test"',
  'for i in $(seq 1 6); do echo "  ✓ suite $i (12 tests)"; sleep 0.05; done',
  'echo "72 tests passed"',
].join('; ');

const agentWork = await createAgentWorkApp({
  env: { ...process.env, SSE_RETRY_MS: '500' },
  log: { log() {}, warn: console.warn, error: console.error },
});
const server = http.createServer(agentWork.app);
await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
const origin = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`;
agentWork.setOrigin(origin);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${origin}/?agent_id=agent-1&agent_id=agent-2`);
  await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);
  /** @param {string} agent @param {string} command */
  const run = async (agent, command) => {
    await page.selectOption('#agent', agent);
    await page.fill('#command', command);
    await page.click('#run');
    await page.waitForFunction((n) => document.querySelectorAll('.task').length >= n, agent === 'agent-1' ? 1 : 2, WAIT);
  };
  await run('agent-1', ''); // the default command
  await run('agent-2', BUILD);
  await page.fill('#command', '');
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('.task')].every(
        (card) => /** @type {HTMLElement} */ (card).dataset.status === 'completed' && card.querySelector('.pr a'),
      ),
    null,
    WAIT,
  );
  await page.evaluate(() => /** @type {HTMLElement | null} */ (document.activeElement)?.blur());
  await page.waitForTimeout(300); // the terminals' scroll, on the next frame
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  server.closeAllConnections();
  server.close();
  await agentWork.close();
}
