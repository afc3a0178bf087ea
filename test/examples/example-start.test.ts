import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../support/helpers.js';

const server = fileURLToPath(new URL('../../examples/agent-work/server.mjs', import.meta.url));
const cleanups = cleanupAfterEach();

const remotes = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('agent-work-remote-')).length;

describe('npm run example on a port already taken', () => {
  it('says so and exits 1, with no stack and no temporary remote left behind', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const port = (taken.address() as AddressInfo).port;
    const before = remotes();
    const child = spawn(process.execPath, [server], {
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => child.kill());
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
    expect(code).toBe(1);
    expect(stderr).toContain(`Port ${port} on 127.0.0.1 is already in use`);
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(remotes()).toBe(before);
  });
});
