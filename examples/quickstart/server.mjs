// The README's quick start grown into a small server: a publish endpoint, answers for bad input and a
// clean shutdown. `npm run example:quickstart` builds and runs it.
import http from 'node:http';
import { EventManager } from 'ssecast';
import { createSseHandler } from 'ssecast/node';

const hub = new EventManager();
const sse = createSseHandler(hub); // follows every ?stream= value of the request

// Nothing here throws out of the listener: the target is split, not parsed (a request line such
// as `GET http://[/` makes `new URL` throw), and every failure of publish() gets an answer.
const server = http.createServer((req, res) => {
  const [path, query = ''] = (req.url ?? '/').split('?', 2);
  if (path === '/events') return sse(req, res); // GET /events?stream=NAME
  if (path === '/publish' && req.method === 'POST') return publish(req, res, new URLSearchParams(query)); // POST /publish?stream=NAME
  res.writeHead(404).end();
});

async function publish(req, res, query) {
  let status = 202;
  let answer;
  try {
    let text = '';
    for await (const chunk of req) if ((text += chunk).length > 64 * 1024) throw new RangeError('body over 64 KiB');
    const event = await hub.publish(query.get('stream'), 'message', JSON.parse(text));
    answer = { id: event.id };
  } catch (error) {
    // A bad stream name, body or size is a TypeError, SyntaxError or RangeError (400); the rest is ours (500).
    const bad = error instanceof TypeError || error instanceof SyntaxError || error instanceof RangeError;
    status = bad ? 400 : 500;
    answer = { error: bad ? 'bad_request' : 'internal_error', message: bad ? error.message : 'could not publish' };
  }
  if (!res.headersSent && !res.destroyed) res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
}

const port = Number(process.env.PORT ?? 8000);
const host = process.env.HOST ?? '127.0.0.1';
// A port in use is a one-line answer, not a stack.
const onListenError = (error) => {
  console.error(
    error.code === 'EADDRINUSE' ? `Port ${port} on ${host} is already in use: stop the other server, or set PORT.` : String(error),
  );
  process.exit(1);
};
server.once('error', onListenError);
server.listen(port, host, () => {
  server.off('error', onListenError);
  const port = server.address().port; // the real one when PORT=0
  console.log(`ssecast quickstart on http://${host}:${port}`);
  console.log(`  stream:  curl -N 'http://${host}:${port}/events?stream=demo'`);
  console.log(`  publish: curl -X POST 'http://${host}:${port}/publish?stream=demo' -d '{"hello":"world"}'`);
});

process.on('SIGINT', async () => {
  await hub.close(); // ends every event stream cleanly
  server.close();
});
