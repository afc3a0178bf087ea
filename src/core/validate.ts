/** Option checks shared by the core and the adapters: misuse is a TypeError that names the option. */

export function positiveInt(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function nonNegativeInt(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/**
 * A heartbeat sent as an event of this type must reach the page as that type and nothing else:
 * `message` would reach every `onmessage` handler as if it were data, `error` and `open` the
 * handlers a page keeps for a lost and a restored connection, `resync` would tell clients to
 * refetch their state, `ssecast-position` is the hub's marker, and CR, LF or NUL would inject fields.
 */
export const RESERVED_HEARTBEAT_NAMES: readonly string[] = ['message', 'error', 'open', 'resync', 'ssecast-position'];

export function heartbeatEventName(type: unknown, name = 'heartbeatEvent'): string {
  if (typeof type !== 'string' || type === '' || RESERVED_HEARTBEAT_NAMES.includes(type) || /[\r\n\0]/.test(type) || type.length > 256) {
    throw new TypeError(
      `${name} must be an event type of 1 to 256 characters without CR, LF or NUL, other than ${RESERVED_HEARTBEAT_NAMES.map((n) => `"${n}"`).join(', ')}; got ${JSON.stringify(String(type).slice(0, 64))}`,
    );
  }
  return type;
}
