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

// Every pattern sees untrusted text (any line a sandboxed command prints), so
// each must take time linear in the text, whatever the text: a pattern that
// backtracks lets one crafted line stall the publisher (8,000 characters of
// `token.` once took 12 s). Two ways a pattern goes wrong, and how these don't:
//
// - Within one attempt, neighbouring quantified parts that can match the same
//   characters make the engine try every split between them
//   (`[\w.-]*token[\w.-]*` is cubic on `token.token.…`). Here a quantified
//   part ends at a character the next part cannot take, or the overlap is one
//   run given back at most once per attempt.
// - A failed attempt is retried one character on. A pattern that scans a whole
//   run before failing, and can start anywhere in that run, costs O(n) per
//   start and O(n²) per run. Such rules start only where the run starts (a
//   one-character lookbehind), or skip a start that an earlier start in the
//   same run covers: both reach the same end, and the earlier one has matched
//   or failed already. That lookbehind scans back, so it comes after the
//   rule's literal, to run only where the literal is rather than everywhere.
//
// Open-ended repeats are written `X{n}X*` rather than `X{n,}`: the same
// matches, but V8 runs `X{n,}` with a backtrack entry per character, and on a
// long match replaced through a function it became some 40 times slower.
//
// test/redact/redact-redos.test.ts times redactSecrets on adversarial inputs against a
// linear pass, and checks that it redacts exactly what the original patterns did.
const RULES: readonly Rule[] = [
  // PEM private keys, possibly spanning lines. `[A-Z ]*` gives back only its own run, which
  // has no `-` and so holds no other BEGIN or END; without an END the key runs to the end.
  { pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, replace: REDACTED },
  // Credentials in a URL: scheme://user:secret@host (and x-access-token:TOKEN@ without a scheme).
  // The match starts at `://` and looks behind it for the scheme, which stays in the text:
  // matching the scheme first scanned a run such as `a.a.a.…` from each of its letters.
  { pattern: /:\/\/(?<=\b[a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+@/gi, replace: `://${REDACTED}@` },
  // A user name after an earlier one in the same run of non-space, non-`@` characters is
  // skipped: both values end at the same place, so it fails if the earlier one failed
  // (`x-access-token:` repeated without an `@` was scanned to its end from every name).
  {
    pattern: /\b(x-access-token|x-oauth-basic|oauth2):(?<!\b(?:x-access-token|x-oauth-basic|oauth2):[^\s@]*?\1:)[^\s@]+@/gi,
    replace: (_m, user: string) => `${user}:${REDACTED}@`,
  },
  // HTTP authorization: a header line whatever its scheme, and Bearer/Basic credentials
  // anywhere (with a digit or symbol, so that prose such as "Bearer authentication" stays).
  { pattern: /\b(authorization\s*:\s*)[^\r\n]+/gi, replace: (_m, header: string) => `${header}${REDACTED}` },
  {
    // The lookahead stops at the first character that is not a letter, which must be a digit
    // or symbol of the credential, instead of reading the whole credential and backing off.
    pattern: /\b(Bearer|Basic)\s+(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8}[A-Za-z0-9._~+/=-]*/g,
    replace: (_m, scheme: string) => `${scheme} ${REDACTED}`,
  },
  // GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained.
  { pattern: /\bgh[pousr]_[A-Za-z0-9]{20,255}\b/g, replace: REDACTED },
  { pattern: /\bgithub_pat_[A-Za-z0-9_]{20,255}\b/g, replace: REDACTED },
  // GitLab, Slack, Stripe, OpenAI/Anthropic-style, npm, AWS access key ids. An open-ended run
  // backs off to its last word boundary. Several starts in one run (after `-`) put word
  // boundaries in it, so the first start matches and takes the run, and the run is not
  // scanned to its end again from start after start.
  { pattern: /\bglpat-[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*\b/g, replace: REDACTED },
  { pattern: /\bxox[abposr]-[A-Za-z0-9-]{10}[A-Za-z0-9-]*\b/g, replace: REDACTED },
  { pattern: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16}[A-Za-z0-9]*\b/g, replace: REDACTED },
  { pattern: /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*\b/g, replace: REDACTED },
  { pattern: /\bnpm_[A-Za-z0-9]{36}\b/g, replace: REDACTED },
  { pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, replace: REDACTED },
  // JSON Web Tokens. An `eyJ` after an earlier one in the same base64url run is skipped: its
  // first part ends where the earlier one's does, so it fails if the earlier one failed
  // (`eyJ-eyJ-…` was scanned to the end of the run from every dash).
  {
    pattern:
      /\beyJ(?<!\beyJ[A-Za-z0-9_-]*?-eyJ)[A-Za-z0-9_-]{8}[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]{8}[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{8}[A-Za-z0-9_-]*/g,
    replace: REDACTED,
  },
  // key=value / key: value where the key names a secret (env dumps, config echoes).
  {
    // The key is the whole run of key characters before the separator, so the match starts
    // where such a run starts, the lookahead looks for the secret word in it, and the run is
    // then taken once. (The word between two `[A-Za-z0-9_.-]*` was cubic on `token.token.…`.)
    // A value of digits only is a count (max_tokens=4096), not a secret.
    pattern:
      /(?<![A-Za-z0-9_.-])(?=[A-Za-z0-9_.-]*?(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key))([A-Za-z0-9_.-]+)(["']?\s*[:=]\s*["']?)(?!\d+\b|\[REDACTED\])([^\s"',;]{4}[^\s"',;]*)/gi,
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
