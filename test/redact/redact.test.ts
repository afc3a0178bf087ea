import { describe, expect, it } from 'vitest';
import { REDACTED, redactDeep, redactSecrets } from '../../src/redact/index.js';
import { commandOutput } from '../../bench/fixtures/command-output.mjs';

// Fake credentials in the real shapes; none is valid anywhere.
const GHP = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
const PAT = 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImFnZW50cyI6WyJhMSJdfQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

describe('redactSecrets on realistic command output', () => {
  it.each([
    [
      'git push over https with a token',
      `To https://x-access-token:${GHP}@github.com/acme/app.git`,
      'To https://[REDACTED]@github.com/acme/app.git',
    ],
    [
      'a remote URL with user and password',
      'fatal: unable to access https://bot:s3cr3t-pass@git.example.com/r.git/',
      'fatal: unable to access https://[REDACTED]@git.example.com/r.git/',
    ],
    ['x-access-token without a scheme', `remote: x-access-token:${GHP}@github.com`, 'remote: x-access-token:[REDACTED]@github.com'],
    ['a classic GitHub token printed by env', `GH_TOKEN=${GHP}`, 'GH_TOKEN=[REDACTED]'],
    ['a fine-grained GitHub token in JSON', `{"auth": "${PAT}"}`, '{"auth": "[REDACTED]"}'],
    ['a curl -v Authorization header', `> Authorization: Bearer ${GHP}`, '> Authorization: [REDACTED]'],
    ['a Bearer credential in a log line', `calling api with Bearer ${JWT} now`, 'calling api with Bearer [REDACTED] now'],
    ['a JWT on its own', `token=${JWT}`, 'token=[REDACTED]'],
    ['an AWS access key id', 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE', 'aws_access_key_id = [REDACTED]'],
    ['a Slack bot token', 'SLACK=xoxb-1234567890-abcdefghijkl', 'SLACK=[REDACTED]'],
    ['an OpenAI-style key', 'using key sk-proj-abcdefghijklmnopqrstuvwxyz123456', 'using key [REDACTED]'],
    ['an npm token in .npmrc', '//registry/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789', '//registry/:_authToken=[REDACTED]'],
    ['a password assignment', 'DB_PASSWORD="hunter2!"', 'DB_PASSWORD="[REDACTED]"'],
  ])('hides %s', (_what, input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  // Shapes that the linear rules (see test/redact-redos.test.ts) find in a different way from
  // the original patterns: where a key, scheme, user name or JWT starts inside a longer run.
  it.each([
    ['a secret word inside a longer key', 'my.db-password_file=abcd1234', 'my.db-password_file=[REDACTED]'],
    ['a key that starts with a dot', '.token=abcd1234', '.token=[REDACTED]'],
    ['a key made of secret words', 'token.token.token.token=abcd1234', 'token.token.token.token=[REDACTED]'],
    ['a key in upper case with a quoted value', 'API_KEY: "abcd-efgh"', 'API_KEY: "[REDACTED]"'],
    ['a key after another assignment', 'foo=token=abcd1234', 'foo=token=[REDACTED]'],
    ['a value of digits and letters', 'token=1234abcd', 'token=[REDACTED]'],
    ['a scheme after other scheme characters', '1.https://u:pw@h', '1.https://[REDACTED]@h'],
    ['a scheme with + in it', 'git+ssh://git:pw@host/r.git', 'git+ssh://[REDACTED]@host/r.git'],
    ["a user name inside another one's value", 'oauth2:x-access-token:abc@host', 'oauth2:[REDACTED]@host'],
    ['a JWT after a dash', `id-${JWT}`, 'id-[REDACTED]'],
    ['a JWT whose run starts with a shorter eyJ', `eyJab-${JWT}`, REDACTED],
    ['a PEM key without its END line', '-----BEGIN PRIVATE KEY-----\nMIIEvQ\nmore', REDACTED],
  ])('hides %s', (_what, input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  it.each([
    ['a value of digits only', 'token=12345678'],
    ['a value shorter than 4 characters', 'token=abc'],
    ['a secret word with no value', 'password:'],
    ['a URL with a user and no password', 'https://user@host/p'],
    ['a URL with a port', 'https://host:8080/p'],
    ['a Bearer word of letters only', 'Bearer abcdefghij'],
    ['a short Bearer credential', 'Bearer abc1'],
  ])('leaves %s', (_what, input) => {
    expect(redactSecrets(input)).toBe(input);
  });

  it('hides a PEM private key across lines', () => {
    const pem = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----';
    expect(redactSecrets(`key:\n${pem}\ndone`)).toBe(`key:\n${REDACTED}\ndone`);
  });

  it('leaves ordinary output alone', () => {
    const lines = [
      'added 312 packages, and audited 313 packages in 4s',
      'Receiving objects:  45% (90/200), 1.20 MiB | 2.40 MiB/s',
      '[main 3f2a9c1] Add login form',
      'max_tokens=4096 temperature=0.2',
      'Bearer authentication is configured',
      'To /tmp/agent-work/remote.git',
      ' ✓ test/auth.test.ts (12 tests) 340ms',
      'https://github.com/acme/app/pull/7',
    ];
    for (const line of lines) expect(redactSecrets(line)).toBe(line);
  });

  it('redacts every string in an event payload and leaves other values', () => {
    const when = new Date(0);
    const data = { sandbox_id: 's1', output: `export GITHUB_TOKEN=${GHP}\n`, lines: [`x ${PAT}`], progress: 45, when };
    expect(redactDeep(data)).toEqual({
      sandbox_id: 's1',
      output: 'export GITHUB_TOKEN=[REDACTED]\n',
      lines: [`x ${REDACTED}`],
      progress: 45,
      when,
    });
    expect(redactDeep(data).when).toBe(when);
    expect(data.output).toContain(GHP);
  });

  it('hides every secret in a sandbox session transcript and changes no other line', () => {
    const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const NPM = 'npm_' + 'abcdefghijklmnopqrstuvwxyz0123456789';
    const secrets = [GHP, PAT, JWT, AWS_SECRET, NPM, 'hunter2-but-longer', 's3cr3t-pass'];
    // What an agent's shell printed, secret-bearing lines marked with `!`.
    const transcript = [
      '  $ git push -v origin agent/task-1',
      `! Pushing to https://x-access-token:${GHP}@github.com/acme/app.git`,
      '  Enumerating objects: 5, done.',
      '  Writing objects: 100% (3/3), 312 bytes | 312.00 KiB/s, done.',
      `! To https://x-access-token:${GHP}@github.com/acme/app.git`,
      '   * [new branch]      agent/task-1 -> agent/task-1',
      '  $ env | sort',
      '  HOME=/home/user',
      `! GITHUB_TOKEN=${PAT}`,
      `! AWS_SECRET_ACCESS_KEY=${AWS_SECRET}`,
      '  NODE_ENV=test',
      '  PATH=/usr/local/bin:/usr/bin:/bin',
      '  $ npm config list',
      `! //registry/:_authToken = ${NPM}`,
      '  ; node bin location = /usr/local/bin/node',
      '  $ curl -v https://api.example.com/v1/me',
      '  > GET /v1/me HTTP/1.1',
      `! > Authorization: Bearer ${JWT}`,
      '  < HTTP/1.1 200 OK',
      '  < content-type: application/json',
      '  $ psql "postgres://app:s3cr3t-pass@db:5432/app" -c "select 1"',
      '  $ cat .env',
      '! DB_PASSWORD=hunter2-but-longer',
      '  LOG_LEVEL=debug',
      '  MAX_TOKENS=4096',
    ];
    // The psql line carries a secret too, in its URL.
    const marked = (line: string) => line.startsWith('!') || line.includes('s3cr3t-pass');
    const input = transcript.map((line) => line.slice(2)).join('\n');
    const output = redactSecrets(input).split('\n');
    for (const secret of secrets) expect(output.join('\n')).not.toContain(secret);
    transcript.forEach((line, i) => {
      if (marked(line)) expect(output[i]).toContain(REDACTED);
      else expect(output[i]).toBe(line.slice(2));
    });
  });

  it('changes nothing in 2,000 lines of ordinary build and test output', () => {
    const lines = commandOutput(2000, 7).map((line) => line.text);
    const changed = lines.filter((line) => redactSecrets(line) !== line);
    expect(changed).toEqual([]);
  });
});
