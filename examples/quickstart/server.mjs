// The README's quick start, runnable: `npm run example`.
import http from 'node:http';
import { EventManager } from 'ssecast';
import { createSseHandler } from 'ssecast/node';

const hub = new EventManager();
const sse = createSseHandler(hub); // follows every ?stream= value of the request

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');

  if (url.pathname === '/events') return sse(req, res); // GET /events?stream=NAME

  if (url.pathname === '/publish' && req.method === 'POST') { // POST /publish?stream=NAME
    let text = '';
    for await (const chunk of req) text += chunk;
    try {
      const body = JSON.parse(text);
      const event = await hub.publish(url.searchParams.get('stream'), 'message', body);
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id: event.id }));
    } catch (error) {
      // A bad stream name, a bad body or a bad type is a TypeError or SyntaxError (400).
      const status = error instanceof TypeError || error instanceof SyntaxError ? 400 : 500;
      res.writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: status === 400 ? 'bad_request' : 'internal_error', message: error.message }));
    }
    return;
  }

  res.writeHead(404).end();
});

const port = Number(process.env.PORT ?? 8000);
const host = process.env.HOST ?? '127.0.0.1';
server.listen(port, host, () => {
  const port = server.address().port; // the real one when PORT=0
  console.log(`ssecast quickstart on http://${host}:${port}`);
  console.log(`  stream:  curl -N 'http://${host}:${port}/events?stream=demo'`);
  console.log(`  publish: curl -X POST 'http://${host}:${port}/publish?stream=demo' -d '{"hello":"world"}'`);
  console.log('  (the Agent Work example app replaces this demo in a later release)');
});

process.on('SIGINT', async () => {
  await hub.close(); // ends every event stream cleanly
  server.close();
});
