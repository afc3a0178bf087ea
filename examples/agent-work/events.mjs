// The event types of the Agent Work stream, as zod schemas, and the key each
// one is published with. The hub validates every payload against them at
// publish (ssecast takes any Standard Schema validator), so a service that
// drifts from the contract fails its task loudly instead of sending the page
// something it cannot show.
//
// Everything that is state is keyed: a keyed event supersedes the earlier
// events of its stream with the same key, and the hub keeps the latest event of
// every key beside the recent tail, so a page opened late (or long after a
// 2,000-line task) still gets each task whole. Output lines are not state: they
// are the tail, numbered per task so that the page can say how many earlier
// lines the server no longer holds.
import { z } from 'zod';

const id = z.string().min(1).max(128);
const timestamp = z.iso.datetime();
const message = z.string().max(16 * 1024);
// tasks.mjs adds the task and agent ids to every payload: one connection may follow several agents,
// and the stream an event came from is not on the wire.
const task = { task_id: id.optional(), agent_id: id.optional() };

export const eventSchemas = {
  /** The task itself: published when it starts and again when it ends (key `task:<id>`). */
  task_status: z.strictObject({
    ...task,
    task_id: id,
    agent_id: id,
    sandbox_id: id,
    command: z.string().max(8192),
    status: z.enum(['running', 'completed', 'failed']),
    started_at: timestamp,
    finished_at: timestamp.optional(),
    message: message.optional(),
    timestamp,
  }),
  /** Key `task:<id>:sandbox`. */
  sandbox_status: z.strictObject({
    ...task,
    sandbox_id: id,
    agent_id: id,
    status: z.enum(['creating', 'running', 'stopped', 'error']),
    message: message.optional(),
    timestamp,
  }),
  /** Key `task:<id>:git:<operation>`: one per operation, so each bar has its own latest value. */
  git_operation: z.strictObject({
    ...task,
    sandbox_id: id,
    operation: z.enum(['clone', 'branch', 'commit', 'push']),
    status: z.enum(['started', 'in_progress', 'completed', 'failed']),
    message,
    progress: z.number().int().min(0).max(100).optional(),
    timestamp,
  }),
  /** Not keyed: the tail. `line` counts the task's output lines from 1. */
  command_output: z.strictObject({
    ...task,
    sandbox_id: id,
    line: z.number().int().positive(),
    output: z.string().max(64 * 1024),
    stream: z.enum(['stdout', 'stderr']),
    timestamp,
  }),
  /** Key `task:<id>:pr`. */
  pr_created: z.strictObject({
    ...task,
    pr_url: z.url({ protocol: /^https?$/ }),
    pr_number: z.number().int().positive(),
    timestamp,
  }),
};

/** The git operations of a task, in the order they run (and the page's bars). */
export const GIT_OPERATIONS = /** @type {const} */ (['clone', 'branch', 'commit', 'push']);

/**
 * The key an event is published with, or undefined for the ones that are not
 * state (output lines). The page derives the same key from the data, since
 * keys are not sent on the wire.
 * @param {string} type
 * @param {{ task_id?: string, operation?: string }} data
 * @returns {string | undefined}
 */
export function keyOf(type, data) {
  if (!data.task_id) return undefined;
  switch (type) {
    case 'task_status':
      return `task:${data.task_id}`;
    case 'sandbox_status':
      return `task:${data.task_id}:sandbox`;
    case 'git_operation':
      return `task:${data.task_id}:git:${data.operation}`;
    case 'pr_created':
      return `task:${data.task_id}:pr`;
    default:
      return undefined;
  }
}
