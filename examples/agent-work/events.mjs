// The four event types of the Agent Work stream, as zod schemas. The hub
// validates every payload against them at publish (ssecast takes any
// Standard Schema validator), so a service that drifts from the contract
// fails its task loudly instead of sending the page something it cannot show.
import { z } from 'zod';

const id = z.string().min(1).max(128);
const timestamp = z.iso.datetime();
// tasks.mjs adds the task id to every payload.
const task = { task_id: id.optional() };

export const eventSchemas = {
  sandbox_status: z.strictObject({
    ...task,
    sandbox_id: id,
    agent_id: id,
    status: z.enum(['creating', 'running', 'stopped', 'error']),
    message: z
      .string()
      .max(16 * 1024)
      .optional(),
    timestamp,
  }),
  git_operation: z.strictObject({
    ...task,
    sandbox_id: id,
    operation: z.enum(['clone', 'branch', 'commit', 'push']),
    status: z.enum(['started', 'in_progress', 'completed', 'failed']),
    message: z.string().max(16 * 1024),
    progress: z.number().int().min(0).max(100).optional(),
    timestamp,
  }),
  command_output: z.strictObject({
    ...task,
    sandbox_id: id,
    output: z.string().max(64 * 1024),
    stream: z.enum(['stdout', 'stderr']),
    timestamp,
  }),
  pr_created: z.strictObject({
    ...task,
    pr_url: z.url({ protocol: /^https?$/ }),
    pr_number: z.number().int().positive(),
    timestamp,
  }),
};
