/**
 * Secret redaction for text that is about to be published: command output,
 * git messages, URLs. Streams end up in browsers, logs and replay history, so
 * a token printed by a tool must not travel with them.
 *
 * The patterns favour recall on well-known credential shapes over
 * cleverness: a known prefix (`ghp_`, `github_pat_`, `AKIA`, `xoxb-`,
 * `sk-`), credentials in a URL's userinfo, `Authorization` schemes, JWTs,
 * PEM private keys and `key=value` assignments whose key names a secret.
 */

/** What replaces a secret. */
export const REDACTED = '[REDACTED]';

interface Rule {
  pattern: RegExp;
  replace: string | ((match: string, ...groups: string[]) => string);
}

const RULES: readonly Rule[] = [
  // PEM private keys, possibly spanning lines.
  { pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, replace: REDACTED },
  // Credentials in a URL: scheme://user:secret@host (and x-access-token:TOKEN@ without a scheme).
  { pattern: /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+@/gi, replace: (_m, scheme: string) => `${scheme}${REDACTED}@` },
  { pattern: /\b(x-access-token|x-oauth-basic|oauth2):[^\s@]+@/gi, replace: (_m, user: string) => `${user}:${REDACTED}@` },
  // HTTP authorization: a header line whatever its scheme, and Bearer/Basic credentials
  // anywhere (with a digit or symbol, so that prose such as "Bearer authentication" stays).
  { pattern: /\b(authorization\s*:\s*)[^\r\n]+/gi, replace: (_m, header: string) => `${header}${REDACTED}` },
  { pattern: /\b(Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}/g, replace: (_m, scheme: string) => `${scheme} ${REDACTED}` },
  // GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained.
  { pattern: /\bgh[pousr]_[A-Za-z0-9]{20,255}\b/g, replace: REDACTED },
  { pattern: /\bgithub_pat_[A-Za-z0-9_]{20,255}\b/g, replace: REDACTED },
  // GitLab, Slack, Stripe, OpenAI/Anthropic-style, npm, AWS access key ids.
  { pattern: /\bglpat-[A-Za-z0-9_-]{20,}\b/g, replace: REDACTED },
  { pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, replace: REDACTED },
  { pattern: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b/g, replace: REDACTED },
  { pattern: /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b/g, replace: REDACTED },
  { pattern: /\bnpm_[A-Za-z0-9]{36}\b/g, replace: REDACTED },
  { pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, replace: REDACTED },
  // JSON Web Tokens.
  { pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, replace: REDACTED },
  // key=value / key: value where the key names a secret (env dumps, config echoes).
  {
    // A value of digits only is a count (max_tokens=4096), not a secret.
    pattern: /\b([A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*)(["']?\s*[:=]\s*["']?)(?!\d+\b|\[REDACTED\])([^\s"',;]{4,})/gi,
    replace: (_m, key: string, sep: string) => `${key}${sep}${REDACTED}`,
  },
];

/**
 * Returns `text` with every recognised secret replaced by `[REDACTED]`.
 *
 * @example
 * redactSecrets('git push https://x-access-token:ghp_abc…@github.com/o/r.git')
 * // 'git push https://[REDACTED]@github.com/o/r.git'
 */
export function redactSecrets(text: string): string {
  let out = text;
  // replace() with a global pattern starts at 0 and resets lastIndex itself.
  for (const rule of RULES) {
    out = out.replace(rule.pattern, rule.replace as (substring: string, ...args: string[]) => string);
  }
  return out;
}

/**
 * Redacts every string inside a JSON-like value (plain objects, arrays),
 * returning a copy; other values (class instances, Dates) pass through. Depth is bounded, since event payloads
 * are small and a cycle must not hang the publisher.
 */
export function redactDeep<T>(value: T, depth = 32): T {
  if (typeof value === 'string') return redactSecrets(value) as T;
  if (depth <= 0 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactDeep(item, depth - 1)) as T;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = redactDeep(item, depth - 1);
  return out as T;
}
