import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Resolves through package.json's `exports` (a package may import itself by
// name), so this checks what users get from the published build, not src/.
const require = createRequire(import.meta.url);
const built = existsSync(new URL('../../dist/index.js', import.meta.url));

describe.runIf(built)('the published package (dist/, via the exports map)', () => {
  it('exposes the core and the node adapter to ESM', async () => {
    const core = await import('ssecast');
    const node = await import('ssecast/node');
    expect(typeof core.EventManager).toBe('function');
    expect(typeof core.formatEvent).toBe('function');
    expect(new core.SseFormatError('ERR_SSE_RETRY', 'x')).toBeInstanceOf(TypeError);
    expect(typeof node.createSseHandler).toBe('function');
  });

  it('exposes redaction as ssecast/redact (ESM and CommonJS), and the root lists only the public API', async () => {
    const redact = await import('ssecast/redact');
    expect(redact.redactSecrets('token=abcdef123')).toBe('token=[REDACTED]');
    expect(typeof (require('ssecast/redact') as typeof import('ssecast/redact')).redactDeep).toBe('function');
    const core = (await import('ssecast')) as Record<string, unknown>;
    for (const internal of ['redactSecrets', 'ReplayBuffer', 'bySeq', 'toIsoTime', 'isValidStreamName'])
      expect(core[internal], internal).toBeUndefined();
    expect(typeof core.Hub).toBe('function');
    expect(new (core.EventManager as typeof import('ssecast').EventManager)()).toBeInstanceOf(core.Hub as typeof import('ssecast').Hub);
  });

  it('exposes the Express, Fastify and fetch adapters to ESM and CommonJS', async () => {
    const esm = {
      express: await import('ssecast/express'),
      fastify: await import('ssecast/fastify'),
      fetch: await import('ssecast/fetch'),
    };
    expect(typeof esm.express.sse).toBe('function');
    expect(typeof esm.fastify.default).toBe('function');
    expect(esm.fastify.default).toBe(esm.fastify.ssecastFastify);
    expect(typeof esm.fetch.createFetchHandler).toBe('function');
    const cjsFastify = require('ssecast/fastify') as typeof import('ssecast/fastify');
    expect(typeof (require('ssecast/express') as typeof import('ssecast/express')).sse).toBe('function');
    expect(typeof cjsFastify.default).toBe('function');
    // fastify-plugin's marker: the plugin is not encapsulated, in either build.
    expect((cjsFastify.default as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')]).toBe(true);
    expect(typeof (require('ssecast/fetch') as typeof import('ssecast/fetch')).createFetchHandler).toBe('function');
  });

  it('keeps the core free of adapter code: nothing ssecast loads imports a framework or zlib', () => {
    const seen = new Set<string>();
    const bare: string[] = [];
    const visit = (file: URL) => {
      if (seen.has(file.href)) return;
      seen.add(file.href);
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*['"]([^'"]+)['"]/g)) {
        if (spec?.startsWith('.')) visit(new URL(spec, file));
        else if (spec) bare.push(spec);
      }
    };
    visit(new URL('../../dist/index.js', import.meta.url));
    expect(seen.size).toBeGreaterThan(1);
    expect(bare).toEqual([]);
  });

  it("exposes the Redis backend to ESM and CommonJS, importing nothing at runtime (ioredis is the caller's)", async () => {
    const esm = await import('ssecast/redis');
    const cjs = require('ssecast/redis') as typeof import('ssecast/redis');
    expect(typeof esm.RedisBackend).toBe('function');
    expect(typeof cjs.RedisBackend).toBe('function');
    expect(() => new esm.RedisBackend({} as never)).toThrow(TypeError);
    const bare = [
      ...readFileSync(new URL('../../dist/backends/redis.js', import.meta.url), 'utf8').matchAll(/(?:from|import)\s*['"]([^'"]+)['"]/g),
    ]
      .map((m) => m[1])
      .filter((spec) => !spec?.startsWith('.'));
    expect(bare).toEqual([]);
  });

  it('exposes the client to ESM and CommonJS as one self-contained module: no import at all, so a browser can load it as it is', async () => {
    const esm = await import('ssecast/client');
    const cjs = require('ssecast/client') as typeof import('ssecast/client');
    expect(typeof esm.createClient).toBe('function');
    expect(typeof cjs.createClient).toBe('function');
    expect(new esm.SseClientError('ERR_STALE', 'x').willRetry).toBe(true);
    const source = readFileSync(new URL('../../dist/client/index.js', import.meta.url), 'utf8');
    expect([...source.matchAll(/(?:from|import)\s*['"]([^'"]+)['"]/g)].map((m) => m[1])).toEqual([]);
    expect(source).not.toMatch(/\brequire\(/);
  });

  it("exposes OpenTelemetry metrics as ssecast/otel (ESM and CommonJS), importing nothing at runtime (the meter is the caller's)", async () => {
    const esm = await import('ssecast/otel');
    const cjs = require('ssecast/otel') as typeof import('ssecast/otel');
    expect(typeof esm.registerHubMetrics).toBe('function');
    expect(typeof cjs.registerHubMetrics).toBe('function');
    expect(esm.HUB_INSTRUMENTS.map((spec) => spec.name)).toContain('ssecast.connections');
    for (const file of ['otel/index.js', 'otel/index.cjs']) {
      const source = readFileSync(new URL(`../../dist/${file}`, import.meta.url), 'utf8');
      expect(
        [...source.matchAll(/(?:from|import)\s*['"]([^'"]+)['"]/g)].map((m) => m[1]),
        file,
      ).toEqual([]);
      expect(source, file).not.toMatch(/\brequire\(/);
    }
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
