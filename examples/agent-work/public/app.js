// The Agent Work page: one EventSource per selected agent. Event data is
// only ever written with textContent, so output such as <img onerror=…>
// shows as text. EventSource resumes with Last-Event-ID after a drop; the
// page also ignores any id it has already shown, so no line appears twice.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// With auth on, the token comes in the page URL (?access_token=…) or a cookie.
const token = params.get('access_token');
const MAX_TERMINAL_LINES = 2000;

let source;
let lastSeq = 0;
let lastEpoch = '';

function setConnection(state) {
  $('connection').dataset.state = state;
  $('connection').textContent = state;
}

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
  source?.close();
  lastSeq = 0;
  lastEpoch = '';
  resetView();
  setConnection('connecting');
  const url = new URL('/api/v1/sse', location.href);
  url.searchParams.set('agent_id', agent);
  if (token) url.searchParams.set('access_token', token);
  source = new EventSource(url);
  source.onopen = () => setConnection('connected');
  source.onerror = () => setConnection(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (message) => {
      if (message.lastEventId && seen(message.lastEventId)) return;
      handle(JSON.parse(message.data));
    });
  }
  // History this page had may be gone (server restart): start over from what the server has.
  source.addEventListener('resync', () => {
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
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
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
