// Helpers shared by the scale bench's runner and its child processes.
import fs from 'node:fs';

/**
 * RLIMIT_NOFILE of a process, read from /proc (Node has no getrlimit), as
 * `{ soft, hard }`; null where /proc has no limits file.
 */
export function openFilesLimit(file = '/proc/self/limits') {
  try {
    const line = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const [soft, hard] = line
      .trim()
      .split(/\s{2,}/)
      .slice(1, 3);
    const value = (v) => (v === 'unlimited' ? Infinity : Number(v));
    return { soft: value(soft), hard: value(hard) };
  } catch {
    return null;
  }
}
