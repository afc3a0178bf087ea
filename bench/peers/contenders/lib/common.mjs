// Helpers shared by the contenders of the peer benchmark. Kept in lib/ so that
// a listing of contenders/*.mjs finds only contenders.
import fs from 'node:fs';

const repoRoot = new URL('../../../../', import.meta.url);

/** The request path every contender serves; PROTOCOL.md's `path` with `{stream}`. */
export const PATH = '/events?stream={stream}';

/** What raw node:http contenders report as their version. */
export const nodeVersion = `node ${process.version}`;

/**
 * An installed package's version, read from its package.json on disk: some
 * packages (better-sse) do not export `./package.json`, so require() cannot.
 */
export function packageVersion(name) {
  const file = new URL(`node_modules/${name}/package.json`, repoRoot);
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

/** ssecast's version, from the repository's own package.json (dist/ is built from it). */
export function ssecastVersion() {
  return JSON.parse(fs.readFileSync(new URL('package.json', repoRoot), 'utf8')).version;
}

/** The stream a request follows, or null when it is not a request for PATH. */
export function streamOf(url) {
  const parsed = new URL(url, 'http://x');
  return parsed.pathname === '/events' ? parsed.searchParams.get('stream') : null;
}

/** Listens as PROTOCOL.md requires (127.0.0.1, port 0, backlog 4096); resolves with the port. */
export function listen(server) {
  server.maxConnections = Infinity;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

/**
 * Stops a node:http server. SSE responses never end on their own, so
 * server.close() alone would wait for them forever: drop every socket first.
 */
export function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Answers anything that is not a stream request, so stray requests do not hang. */
export function notFound(res) {
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}
