import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import * as v from 'valibot';
import { type } from 'arktype';
import { EventManager, EventValidationError, type InferEventMap, type StandardSchemaV1 } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, openStream, payloads, startServer, waitUntil } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

const zodSchemas = {
  git_operation: z.object({
    operation: z.enum(['clone', 'branch', 'commit', 'push']),
    progress: z.number().int().min(0).max(100),
    files: z.array(z.object({ name: z.string().min(1) })).default([]),
  }),
  note: z.string(),
};

/** Runs `publish`, expecting it to reject, and returns the error. */
async function rejection(promise: Promise<unknown>): Promise<EventValidationError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EventValidationError);
  return error as EventValidationError;
}

describe('event validation with Standard Schema', () => {
  it('infers the event map from the schemas', () => {
    const hub = new EventManager<InferEventMap<typeof zodSchemas>>({ schemas: zodSchemas });
    cleanups.push(() => hub.close());
    expectTypeOf(hub.publish<'git_operation'>)
      .parameter(2)
      .toEqualTypeOf<{ operation: 'clone' | 'branch' | 'commit' | 'push'; progress: number; files: { name: string }[] }>();
    // A schema whose output is not the declared payload type does not compile.
    // @ts-expect-error string is not number
    const mismatched = new EventManager<{ note: number }>({ schemas: { note: z.string() } });
    cleanups.push(() => mismatched.close());
  });

  it('rejects an invalid payload at publish, naming the type and the failing path, and sends and stores nothing', async () => {
    const hub = new EventManager<InferEventMap<typeof zodSchemas>>({ schemas: zodSchemas });
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=agent-1`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);

    const bad = { operation: 'clone', progress: 45, files: [{ name: 'a' }, { name: '' }] } as never;
    const error = await rejection(hub.publish('agent-1', 'git_operation', bad));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_EVENT_INVALID');
    expect(error.type).toBe('git_operation');
    expect(error.stream).toBe('agent-1');
    expect(error.message).toMatch(/^invalid git_operation event for stream "agent-1": data\.files\[1\]\.name: /);
    expect(error.issues[0]?.path).toEqual(['files', 1, 'name']);

    const wrongType = await rejection(hub.publish('agent-1', 'git_operation', { operation: 'rebase', progress: 101 } as never));
    expect(wrongType.message).toContain('data.operation: ');
    expect(wrongType.message).toContain('data.progress: ');
    expect(wrongType.issues.length).toBe(2);

    // Then a valid one: the client's first and only event is that one, with the schema's default applied.
    const good = await hub.publish('agent-1', 'git_operation', { operation: 'push', progress: 100 } as never);
    expect(good.data).toEqual({ operation: 'push', progress: 100, files: [] });
    await client.waitFor((c) => c.events.length === 1);
    expect(payloads(client.events)).toEqual([{ operation: 'push', progress: 100, files: [] }]);
    expect(hub.stats().published).toBe(1);

    // Nothing invalid is in the history a fresh subscriber replays.
    const late = await openStream(`${server.url}/?stream=agent-1`);
    cleanups.push(() => late.close());
    await late.waitFor((c) => c.events.length === 1);
    expect(late.events.map((event) => event.id)).toEqual([good.id]);
  });

  it('rejects a type that has no schema, unless allowUnvalidatedTypes', async () => {
    const strict = new EventManager<Record<string, unknown>>({ schemas: { note: z.string() } });
    cleanups.push(() => strict.close());
    const error = await rejection(strict.publish('s', 'typo', 'x'));
    expect(error.message).toBe('no schema for event type "typo" (stream "s"); add one to schemas, or set allowUnvalidatedTypes');
    expect(strict.stats().published).toBe(0);

    const lenient = new EventManager<Record<string, unknown>>({ schemas: { note: z.string() }, allowUnvalidatedTypes: true });
    cleanups.push(() => lenient.close());
    await expect(lenient.publish('s', 'typo', { any: 'thing' })).resolves.toMatchObject({ data: { any: 'thing' } });
    await rejection(lenient.publish('s', 'note', 42));
  });

  it('works with valibot and arktype, and with an async validator', async () => {
    const hub = new EventManager<Record<string, unknown>>({
      schemas: {
        sandbox_status: v.object({ status: v.picklist(['creating', 'running', 'stopped']) }),
        pr_created: type({ url: 'string.url', number: 'number.integer > 0' }),
        command_output: {
          '~standard': {
            version: 1,
            vendor: 'test',
            validate: async (value: unknown) =>
              typeof value === 'string'
                ? { value: value.toUpperCase() }
                : { issues: [{ message: 'must be text', path: [{ key: 'line' }] }] },
          },
        } satisfies StandardSchemaV1<unknown, string>,
      },
    });
    cleanups.push(() => hub.close());
    expect((await rejection(hub.publish('s', 'sandbox_status', { status: 'paused' }))).message).toMatch(
      /^invalid sandbox_status event for stream "s": data\.status: /,
    );
    expect((await rejection(hub.publish('s', 'pr_created', { url: 'not a url', number: 3 }))).message).toMatch(/data\.url: /);
    expect((await rejection(hub.publish('s', 'command_output', 7))).message).toBe(
      'invalid command_output event for stream "s": data.line: must be text',
    );
    await expect(hub.publish('s', 'command_output', 'ok')).resolves.toMatchObject({ data: 'OK' });
    await expect(hub.publish('s', 'pr_created', { url: 'https://github.com/o/r/pull/3', number: 3 })).resolves.toMatchObject({
      type: 'pr_created',
    });
    expect(hub.stats().published).toBe(2);
  });

  it('says what is wrong with a schemas option that is not one', () => {
    expect(() => new EventManager({ schemas: { note: (() => true) as never } })).toThrow(
      "schemas.note is not a Standard Schema v1 validator (zod 3.24+, valibot 1, arktype 2 …): it has no '~standard' with version 1 and validate()",
    );
    expect(() => new EventManager({ schemas: 'zod' as never })).toThrow(
      'schemas must be an object mapping event types to Standard Schema validators',
    );
  });

  it('lets a validator that throws reject the publish as it is, storing nothing', async () => {
    const boom = new Error('validator bug');
    const hub = new EventManager<Record<string, unknown>>({
      schemas: {
        note: {
          '~standard': {
            version: 1,
            vendor: 'test',
            validate: () => {
              throw boom;
            },
          },
        },
      },
    });
    cleanups.push(() => hub.close());
    await expect(hub.publish('s', 'note', 'x')).rejects.toBe(boom);
    expect(hub.stats().published).toBe(0);
  });
});
