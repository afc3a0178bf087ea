// Builds dist/ only when a source is newer than the build, so `npm run example` starts in a
// couple of seconds on a current build, and a second one never rebuilds dist/ under a running
// server. `npm test` and the benches still build every time.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const INPUTS = ['src', 'tsup.config.ts', 'tsconfig.json', 'package.json'];

/** Newest (or oldest) modification time of the files under `entries`. */
function mtimes(entries) {
  const times = [];
  const visit = (file) => {
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    if (!stat) return;
    if (stat.isDirectory()) for (const name of fs.readdirSync(file)) visit(path.join(file, name));
    else times.push(stat.mtimeMs);
  };
  for (const entry of entries) visit(path.join(root, entry));
  return times;
}

const built = mtimes(['dist']);
const sources = mtimes(INPUTS);
// tsup cleans dist/ on every build, so its oldest file is the time of the last build.
const stale = built.length === 0 || Math.max(...sources) > Math.min(...built);
if (stale) {
  console.log('dist/ is missing or older than src/: building (npm run build)');
  const result = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  process.exit(result.status ?? 1);
}
