/**
 * Payload validation per event type with any Standard Schema validator
 * (zod 3.24+, valibot 1, arktype 2, …). The interface is the spec's own,
 * copied as the spec intends, so the core depends on no validator.
 *
 * @see https://standardschema.dev
 */

/** A validator that implements Standard Schema v1 (only what the hub uses). */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaProps<Input, Output>;
}

export interface StandardSchemaProps<Input = unknown, Output = Input> {
  readonly version: 1;
  readonly vendor: string;
  readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: readonly StandardIssue[] };

export interface StandardIssue {
  readonly message: string;
  readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined;
}

/** One schema per event type: what `EventManager`'s `schemas` option takes. */
export type EventSchemas<M> = { readonly [K in keyof M]?: StandardSchemaV1<unknown, M[K]> };

/** The event map a set of schemas describes: `new EventManager<InferEventMap<typeof schemas>>({ schemas })`. */
export type InferEventMap<S extends Record<string, StandardSchemaV1>> = {
  [K in keyof S]: NonNullable<S[K]['~standard']['types']>['output'];
};

/**
 * `publish` got a payload its type's schema rejects, or a type with no
 * schema on a hub that validates. A `TypeError`: the caller sent it. Nothing
 * was stored or sent.
 */
export class EventValidationError extends TypeError {
  readonly code = 'ERR_EVENT_INVALID';
  /** The event type that was published. */
  readonly type: string;
  readonly stream: string;
  /** What the validator said, as it said it. */
  readonly issues: readonly StandardIssue[];

  constructor(type: string, stream: string, issues: readonly StandardIssue[], message?: string) {
    super(message ?? describeIssues(type, stream, issues));
    this.name = 'EventValidationError';
    this.type = type;
    this.stream = stream;
    this.issues = issues;
  }
}

/** Checks the `schemas` option once, at construction: a typo must not surface at the first publish. */
export function checkSchemas(schemas: unknown): ReadonlyMap<string, StandardSchemaV1> | undefined {
  if (schemas === undefined) return undefined;
  if (typeof schemas !== 'object' || schemas === null)
    throw new TypeError('schemas must be an object mapping event types to Standard Schema validators');
  const map = new Map<string, StandardSchemaV1>();
  for (const [type, schema] of Object.entries(schemas)) {
    if (schema === undefined) continue;
    const props = (schema as Partial<StandardSchemaV1> | null)?.['~standard'];
    if (props?.version !== 1 || typeof props.validate !== 'function') {
      throw new TypeError(
        `schemas.${type} is not a Standard Schema v1 validator (zod 3.24+, valibot 1, arktype 2 …): it has no '~standard' with version 1 and validate()`,
      );
    }
    map.set(type, schema as StandardSchemaV1);
  }
  return map;
}

/** Runs a schema; resolves to its output or throws `EventValidationError`. Sync validators stay sync. */
export function validatePayload(schema: StandardSchemaV1, type: string, stream: string, data: unknown): unknown {
  const result = schema['~standard'].validate(data);
  if (result instanceof Promise) return result.then((settled) => outputOf(settled, type, stream));
  return outputOf(result, type, stream);
}

function outputOf(result: StandardResult<unknown>, type: string, stream: string): unknown {
  if (result.issues) throw new EventValidationError(type, stream, result.issues);
  return result.value;
}

const MAX_ISSUES_IN_MESSAGE = 3;

function describeIssues(type: string, stream: string, issues: readonly StandardIssue[]): string {
  const shown = issues.slice(0, MAX_ISSUES_IN_MESSAGE).map((issue) => `${pathOf(issue)}: ${issue.message}`);
  const more = issues.length > MAX_ISSUES_IN_MESSAGE ? ` (and ${issues.length - MAX_ISSUES_IN_MESSAGE} more)` : '';
  return `invalid ${type} event for stream ${JSON.stringify(stream)}: ${shown.join('; ') || 'rejected by its schema'}${more}`;
}

/** `data.files[2].name`, the way a reader would write it; `data` for the payload itself. */
export function pathOf(issue: StandardIssue): string {
  let out = 'data';
  for (const segment of issue.path ?? []) {
    const key = typeof segment === 'object' && segment !== null ? segment.key : segment;
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}
