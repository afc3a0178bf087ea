import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Resolves through package.json's `exports` (a package may import itself by
// name), so this checks what users get from the published build, not src/.
const require = createRequire(import.meta.url);
const built = existsSync(new URL('../dist/index.js', import.meta.url));

describe.runIf(built)('the published package (dist/, via the exports map)', () => {
  it('exposes the core and the node adapter to ESM', async () => {
    const core = await import('ssecast');
    const node = await import('ssecast/node');
    expect(typeof core.EventManager).toBe('function');
    expect(typeof core.formatEvent).toBe('function');
    expect(new core.SseFormatError('ERR_SSE_RETRY', 'x')).toBeInstanceOf(TypeError);
    expect(typeof node.createSseHandler).toBe('function');
  });

  it('exposes the same API to CommonJS', () => {
    const core = require('ssecast') as typeof import('ssecast');
    const node = require('ssecast/node') as typeof import('ssecast/node');
    expect(core.formatEvent({ event: 'e', data: 'x' })).toBe('event: e\ndata: x\n\n');
    expect(typeof node.createSseHandler).toBe('function');
  });
});

it('has a build to test (npm test builds first)', () => {
  if (!built) console.warn('\n!!! dist/ is missing: run `npm run build` (npm test does) to test the published package\n');
  expect(built).toBe(true);
});
