// The Agent Work page: one ssecast client per selected agent, loaded as an ES
// module from /vendor/ssecast-client.js (the package's ssecast/client build).
// Unlike EventSource it sends headers, so the token goes in Authorization, not
// in the URL. Event data is only ever written with textContent, so output
// such as <img onerror=…> shows as text. The client resumes with
// Last-Event-ID after a drop; the page also ignores any id it has already
// shown, so no line appears twice.
import { createClient } from '/vendor/ssecast-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// With auth on, the token comes in the page URL (?access_token=…) or a cookie
// (sent by the browser on its own). The stream and the task API get it as a
// Bearer header, read afresh on every connection attempt.
const token = params.get('access_token');
const authHeaders = () => (token ? { authorization: `Bearer ${token}` } : {});
const MAX_TERMINAL_LINES = 2000;

/** The client of the agent on screen; events and statuses of any other one are ignored. */
let client;
let lastSeq = 0;
let lastEpoch = '';

// The client's statuses, as the page names them.
const CONNECTION_LABELS = { connecting: 'connecting', open: 'connected', reconnecting: 'reconnecting', closed: 'closed' };

function setConnection(state) {
  $('connection').dataset.state = state;
  $('connection').textContent = state;
}

/** What the stream's last failure says (the server's own message for a refusal); empty hides it. */
function setStreamError(text) {
  $('stream-error').textContent = text;
  $('stream-error').hidden = !text;
}

const explain = (error) => error.serverMessage ?? error.message;

function seen(id) {
  const [epoch, seqText] = String(id).split('.');
  const seq = Number(seqText);
  if (epoch === lastEpoch && seq <= lastSeq) return true;
  lastEpoch = epoch;
  lastSeq = seq;
  return false;
}

function resetView() {
  $('sandbox').dataset.state = 'idle';
  $('sandbox').textContent = 'idle';
  $('sandbox-message').textContent = '';
  $('task').textContent = '';
  $('git').replaceChildren();
  $('terminal').replaceChildren();
  $('pr').replaceChildren('none yet');
  $('pr').className = 'muted';
}

const handlers = {
  sandbox_status(data) {
    if (data.status === 'creating') resetView();
    $('sandbox').dataset.state = data.status;
    $('sandbox').textContent = data.status;
    $('sandbox-message').textContent = data.message ?? '';
    $('task').textContent = `${data.task_id ?? ''} · ${data.sandbox_id}`;
  },
  git_operation(data) {
    let row = document.querySelector(`.op[data-operation="${CSS.escape(data.operation)}"]`);
    if (!row) {
      row = document.createElement('div');
      row.className = 'op';
      row.dataset.operation = data.operation;
      const name = document.createElement('span');
      name.textContent = data.operation;
      const bar = document.createElement('progress');
      bar.max = 100;
      bar.value = 0;
      const percent = document.createElement('span');
      percent.className = 'percent';
      row.append(name, bar, percent);
      $('git').append(row);
    }
    row.dataset.status = data.status;
    row.title = data.message ?? '';
    const progress = data.status === 'completed' ? 100 : data.progress;
    if (typeof progress === 'number') {
      row.querySelector('progress').value = progress;
      row.querySelector('.percent').textContent = `${progress} %`;
    }
    if (data.status === 'failed') row.querySelector('.percent').textContent = 'failed';
  },
  command_output(data) {
    const line = document.createElement('span');
    line.className = data.stream;
    line.textContent = data.output;
    const terminal = $('terminal');
    terminal.append(line);
    while (terminal.childElementCount > MAX_TERMINAL_LINES) terminal.firstElementChild.remove();
    terminal.scrollTop = terminal.scrollHeight;
  },
  pr_created(data) {
    const link = document.createElement('a');
    link.href = data.pr_url;
    link.textContent = `Pull request #${data.pr_number}`;
    link.target = '_blank';
    link.rel = 'noopener';
    $('pr').className = '';
    $('pr').replaceChildren(link);
  },
};

function connect(agent) {
  client?.close();
  lastSeq = 0;
  lastEpoch = '';
  resetView();
  setConnection('connecting');
  setStreamError('');
  const url = new URL('/api/v1/sse', location.href);
  url.searchParams.set('agent_id', agent);
  const current = (client = createClient(url, { headers: authHeaders, parse: 'json' }));
  current.onStatus((status, error) => {
    if (current !== client) return;
    setConnection(CONNECTION_LABELS[status] ?? status);
    if (status === 'open') setStreamError('');
    // Closed for good (401, 403, …): asking again will not help, so say why.
    if (status === 'closed' && error) setStreamError(`The stream closed${error.status ? ` (${error.status})` : ''}: ${explain(error)}`);
  });
  current.onError((error) => {
    if (current !== client) return;
    if (error.code === 'ERR_LISTENER' || error.code === 'ERR_PARSE') console.error('[agent-work]', error, error.cause);
    // A failure the client retries by itself (a drop, a 503, a 429 with its Retry-After).
    else if (error.willRetry) setStreamError(`Reconnecting: ${explain(error)}`);
  });
  for (const [type, handle] of Object.entries(handlers)) {
    current.on(type, ({ data, id }) => {
      if (current !== client || (id && seen(id))) return;
      handle(data);
    });
  }
  // History this page had may be gone (server restart): clear the view; the replay that follows redraws it.
  current.on('resync', () => {
    if (current !== client) return;
    lastSeq = 0;
    lastEpoch = '';
    resetView();
  });
}

$('agent').addEventListener('change', () => connect($('agent').value));
$('run').addEventListener('click', async () => {
  $('run').disabled = true;
  $('task-error').hidden = true;
  try {
    const command = $('command').value.trim();
    const response = await fetch(`/api/v1/agents/${encodeURIComponent($('agent').value)}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders() },
      body: JSON.stringify(command ? { command } : {}),
    });
    if (!response.ok) throw new Error((await response.json()).message ?? response.statusText);
  } catch (error) {
    $('task-error').textContent = `Could not start the task: ${error.message}`;
    $('task-error').hidden = false;
  } finally {
    $('run').disabled = false;
  }
});

const initial = params.get('agent_id');
if (initial) {
  if (![...$('agent').options].some((option) => option.value === initial)) $('agent').append(new Option(initial, initial));
  $('agent').value = initial;
}
connect($('agent').value);
