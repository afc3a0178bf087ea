/**
 * redactSecrets sees untrusted text (every line a sandboxed command prints, up
 * to 16 KiB), so its running time must grow linearly with the input: a
 * backtracking pattern would let one crafted line stall the publisher.
 *
 * Time is never compared with a wall-clock limit, which a loaded machine
 * would break. Each input is timed against a plain linear pass over the same
 * input, measured the same way, and at 4 KiB and 16 KiB to see how the time
 * grows. Sizes go up from 1 KiB and each check runs before the next, larger
 * size, so a super-linear rule fails at a size where it still returns quickly.
 *
 * The second half checks that the linear rules redact exactly what the
 * original rules did, with those rules kept here as the oracle.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REDACTED, redactSecrets } from '../../src/redact/index.js';
import { commandOutput } from '../../bench/fixtures/command-output.mjs';

const KIB = 1024;
/** How much slower than the linear pass redactSecrets may be: on the inputs below it takes 0.1 to 10 times as long. */
const MAX_SLOWDOWN = 50;
/** Time at 16 KiB over time at 4 KiB: 4 when linear, 16 when quadratic, 64 when cubic. */
const MAX_GROWTH_4X = 10;

let _sink = 0;

/** A plain linear pass: one regex replace over every letter, then a loop over the char codes. */
function linearPass(input: string): void {
  let sum = input.replace(/[a-z]/g, 'x').length;
  for (let i = 0; i < input.length; i++) sum = (sum + input.charCodeAt(i)) | 0;
  _sink ^= sum;
}

function redact(input: string): void {
  _sink ^= redactSecrets(input).length;
}

/**
 * Milliseconds per call of `fn(input)`: the best of several rounds, each
 * repeating the call until it lasts a millisecond or more. The minimum is
 * what the code costs; pauses (GC, other processes on the machine) only add.
 */
function msPerCall(fn: (input: string) => void, input: string, rounds = 5): number {
  let reps = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < reps; i++) fn(input);
    if (performance.now() - start >= 1 || reps >= 4096) break;
    reps *= 4;
  }
  let best = Infinity;
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    for (let i = 0; i < reps; i++) fn(input);
    best = Math.min(best, (performance.now() - start) / reps);
  }
  return best;
}

/**
 * What is wrong with redactSecrets' time on the inputs `make` builds, if
 * anything: more than MAX_SLOWDOWN times the linear pass at any size, or (when
 * `growth` is checked, for inputs that look the same at every length) more than
 * MAX_GROWTH_4X times longer at 16 KiB than at 4 KiB.
 */
function timingProblem(make: (length: number) => string, growth: boolean): string | undefined {
  let at4k = NaN;
  for (const size of [1 * KIB, 4 * KIB, 16 * KIB]) {
    const input = make(size);
    const time = msPerCall(redact, input);
    const slowdown = time / msPerCall(linearPass, input);
    if (slowdown > MAX_SLOWDOWN) return `${slowdown.toFixed(0)}x the linear pass at ${size / KIB} KiB`;
    if (size === 4 * KIB) at4k = time;
    if (size === 16 * KIB && growth && time / at4k > MAX_GROWTH_4X) return `4x the input took ${(time / at4k).toFixed(1)}x the time`;
  }
  return undefined;
}

/**
 * Fails when redactSecrets is super-linear on the inputs `make` builds. A
 * failed measurement is repeated before it counts: a linear function passes
 * again once the machine is quiet, a super-linear one fails every time.
 */
function expectLinear(make: (length: number) => string, { growth = true } = {}): void {
  let problem = timingProblem(make, growth);
  for (let attempt = 1; problem && attempt < 3; attempt++) problem = timingProblem(make, growth);
  expect(problem, `input starting ${JSON.stringify(make(60))}`).toBeUndefined();
}

/** `unit` repeated, after `prefix`, cut to `length`. */
const repeated =
  (unit: string, prefix = '') =>
  (length: number) =>
    (prefix + unit.repeat(Math.ceil(length / unit.length))).slice(0, length);

// Warm the JIT and every regex up to native code before anything is timed.
for (let i = 0; i < 20; i++) redact(repeated('token.password=a:Bearer eyJ-')(2 * KIB));

const SHAPES: [string, (length: number) => string][] = [
  ['`token.` repeated (a key run with a secret word every 6 characters)', repeated('token.')],
  ['`password=` repeated', repeated('password=')],
  ['`api_key: ` repeated', repeated('api_key: ')],
  ['`token=` and digits (the digits-only lookahead)', repeated('token=1234567890')],
  ['`a:` repeated', repeated('a:')],
  ['`x-access-token:` repeated without `@`', repeated('x-access-token:')],
  ['`oauth2:` and a long run without `@`', repeated('a', 'oauth2:')],
  ['`https://` then `a:` repeated without `@`', repeated('a:', 'https://')],
  ['`a.` repeated (a word boundary at every other character)', repeated('a.')],
  ['`a-b_c.1` repeated (one long key-shaped run)', repeated('a-b_c.1')],
  ['a long run of one letter', repeated('a')],
  ['`Bearer ` then a long run of letters', repeated('a', 'Bearer ')],
  ['`Bearer ` then a long run of whitespace', repeated(' ', 'Bearer')],
  ['`Bearer ` repeated', repeated('Bearer ')],
  ['`Authorization` then whitespace and no colon', repeated(' \t', 'Authorization')],
  ['`Authorization:` then line breaks only', repeated('\n', 'Authorization:')],
  ['`-----BEGIN PRIVATE KEY-----` without an END, then text', repeated('MIIEvQIBADANBgkqhkiG9w0B\n', '-----BEGIN PRIVATE KEY-----\n')],
  ['a PEM body of broken END lines', repeated('-----END RSA A B C PRIVATE KEY----\n', '-----BEGIN PRIVATE KEY-----\n')],
  ['`-----BEGIN ` then `PRIVATE KEY ` repeated', repeated('PRIVATE KEY ', '-----BEGIN ')],
  ['`eyJ-` repeated (a JWT start after every dash)', repeated('eyJ-')],
  ['`eyJ` and base64 runs with dots, never three segments', repeated('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9-')],
  ['`eyJ` then a long base64 run', repeated('aB3_-', 'eyJ')],
  ['`glpat-` repeated', repeated('glpat-')],
  ['`sk-ant-` then dashes', repeated('-', 'sk-ant-')],
  ['`-xoxb-` and runs ending in `_`', repeated('-xoxb-aaaaaaaaaaaa_')],
  ['a long run of one digit', repeated('7')],
  ['`x-access-token:` then `a.` repeated', repeated('a.', 'x-access-token:')],
  ['`oauth2:` repeated, then a character', repeated('oauth2:oauth2:x')],
  ['`eyJ` then `-a` repeated', repeated('-a', 'eyJ')],
  ['`a.b://c:` repeated (a scheme and half a user every 8 characters)', repeated('a.b://c:')],
  // Many matches: every one is replaced, and that must stay linear too.
  ['`token=abcd ` repeated', repeated('token=abcd ')],
  ['`a://b:c@` repeated', repeated('a://b:c@')],
  ['`oauth2:a@` repeated', repeated('oauth2:a@')],
  ['`Bearer a1b2c3d4 ` repeated', repeated('Bearer a1b2c3d4 ')],
];

describe('redactSecrets runs in linear time', () => {
  it.each(SHAPES)('on %s', (_what, make) => {
    expectLinear(make);
  });

  // Short units repeated are what makes a backtracking pattern blow up.
  const ATOMS = [
    'token',
    'password',
    'secret',
    'api_key',
    'private-key',
    '.',
    '-',
    '_',
    '=',
    ':',
    ' ',
    '\t',
    '\n',
    '"',
    "'",
    '@',
    '/',
    ',',
    ';',
    'a',
    'Z',
    '7',
    '4096',
    'eyJ',
    'Bearer ',
    'Basic ',
    'https://',
    'x-access-token:',
    'oauth2:',
    'authorization',
    'Authorization: ',
    '-----BEGIN ',
    '-----END ',
    'PRIVATE KEY-----',
    'ghp_',
    'github_pat_',
    'glpat-',
    'xoxb-',
    'sk_live_',
    'sk-',
    'npm_',
    'AKIA',
    REDACTED,
  ];
  const atom = fc.constantFrom(...ATOMS);

  it('on random short units repeated to 16 KiB', () => {
    fc.assert(
      fc.property(fc.array(atom, { minLength: 1, maxLength: 6 }), fc.array(atom, { maxLength: 2 }), (unit, prefix) => {
        expectLinear(repeated(unit.join(''), prefix.join('')));
      }),
      // A failure is reported as found: shrinking would time hundreds of inputs.
      { numRuns: 30, endOnFailure: true },
    );
  });

  // Only against the linear pass: the first 4 KiB of a random text can cost less per
  // character than the first 16 KiB (a PEM key left open at 3 KiB and closed at 5 KiB).
  it('on random sequences of the same pieces', () => {
    fc.assert(
      fc.property(fc.array(atom, { minLength: 3000, maxLength: 3000 }), (atoms) => {
        const text = atoms.join('');
        expectLinear((length) => text.repeat(Math.ceil(length / text.length)).slice(0, length), { growth: false });
      }),
      { numRuns: 10, endOnFailure: true },
    );
  });
});

// ---------------------------------------------------------------------------
// Same redactions as before
// ---------------------------------------------------------------------------

/**
 * The rules as they were before they were made linear: correct, but cubic or
 * quadratic on crafted input, so they only ever see short strings here. If a
 * rule's behaviour is changed on purpose, change it here too.
 */
const ORIGINAL_RULES: [RegExp, string | ((match: string, ...groups: string[]) => string)][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, REDACTED],
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+@/gi, (_m, scheme) => `${scheme}${REDACTED}@`],
  [/\b(x-access-token|x-oauth-basic|oauth2):[^\s@]+@/gi, (_m, user) => `${user}:${REDACTED}@`],
  [/\b(authorization\s*:\s*)[^\r\n]+/gi, (_m, header) => `${header}${REDACTED}`],
  [/\b(Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}/g, (_m, scheme) => `${scheme} ${REDACTED}`],
  [/\bgh[pousr]_[A-Za-z0-9]{20,255}\b/g, REDACTED],
  [/\bgithub_pat_[A-Za-z0-9_]{20,255}\b/g, REDACTED],
  [/\bglpat-[A-Za-z0-9_-]{20,}\b/g, REDACTED],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, REDACTED],
  [/\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b/g, REDACTED],
  [/\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b/g, REDACTED],
  [/\bnpm_[A-Za-z0-9]{36}\b/g, REDACTED],
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, REDACTED],
  [/\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, REDACTED],
  [
    /\b([A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*)(["']?\s*[:=]\s*["']?)(?!\d+\b|\[REDACTED\])([^\s"',;]{4,})/gi,
    (_m, key, sep) => `${key}${sep}${REDACTED}`,
  ],
];

function originalRedact(text: string): string {
  let out = text;
  for (const [pattern, replace] of ORIGINAL_RULES) out = out.replace(pattern, replace as (substring: string, ...args: string[]) => string);
  return out;
}

describe('redactSecrets redacts what the original rules did', () => {
  const GHP = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
  const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

  it('on 2,000 lines of ordinary command output and a session with secrets in it', () => {
    const lines = [
      ...commandOutput(2000, 7).map((line) => line.text),
      `Pushing to https://x-access-token:${GHP}@github.com/acme/app.git`,
      `GITHUB_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789`,
      'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      '//registry/:_authToken = npm_abcdefghijklmnopqrstuvwxyz0123456789',
      `> Authorization: Bearer ${JWT}`,
      'psql "postgres://app:s3cr3t-pass@db:5432/app" -c "select 1"',
      'DB_PASSWORD=hunter2-but-longer',
      `curl -H 'Authorization: Basic dXNlcjpwYXNz' x; echo Bearer ${JWT}; remote: oauth2:${GHP}@gitlab.com`,
      '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nafter',
      'MAX_TOKENS=4096 max_tokens: 8192 api_key: "sk-ant-abcdefghijklmnopqrstu" x-api-key=abcd1234',
    ];
    for (const line of lines) expect(redactSecrets(line)).toBe(originalRedact(line));
    const all = lines.join('\n');
    expect(redactSecrets(all)).toBe(originalRedact(all));
  });

  // Pieces of every shape the rules know, and the characters around them.
  const PIECES = [
    'token',
    'password',
    'passwd',
    'secret',
    'API_KEY',
    'access-key',
    'private.key',
    'api',
    'key',
    '.',
    '-',
    '_',
    '=',
    ':',
    ' ',
    '  ',
    '\t',
    '\n',
    '\r\n',
    '"',
    "'",
    '@',
    '/',
    '//',
    ',',
    ';',
    '+',
    '~',
    'a',
    'Z',
    '7',
    '4096',
    'abcd',
    'x1y2z3w4',
    'é',
    '\u2028',
    'eyJ',
    'eyJabcdefgh',
    'eyJabcdefgh.',
    'Bearer ',
    'Basic ',
    'bearer',
    'https://',
    'git+ssh://',
    '://',
    'x-access-token:',
    'X-OAUTH-BASIC:',
    'oauth2:',
    'authorization',
    'Authorization: ',
    '-----BEGIN ',
    '-----END ',
    'RSA ',
    'PRIVATE KEY-----',
    'ghp_',
    'github_pat_',
    'glpat-',
    'xoxb-',
    'sk_live_',
    'sk-',
    'ant-',
    'npm_',
    'AKIA',
    REDACTED,
    'ABCDEFGHIJKLMNOP',
    'abcdefghijklmnopqrstuvwxyz0123456789',
  ];

  it('on random text made of the pieces of secrets', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...PIECES), { maxLength: 30 }), (pieces) => {
        const text = pieces.join('');
        expect(redactSecrets(text)).toBe(originalRedact(text));
      }),
      { numRuns: 5000 },
    );
  });

  it('on random text made of the characters of secrets', () => {
    const char = fc.constantFrom(...'tokenpasswrdeyJhbBearsicx-_.=:\'" \t\n@/+1A7'.split(''));
    const piece = fc.oneof({ weight: 4, arbitrary: char }, { weight: 1, arbitrary: fc.constantFrom(...PIECES) });
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), (pieces) => {
        const text = pieces.join('');
        expect(redactSecrets(text)).toBe(originalRedact(text));
      }),
      { numRuns: 5000 },
    );
  });
});
