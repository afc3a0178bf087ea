// The Agent Work page: one card per task of every agent it follows, on ONE
// ssecast client (`/api/v1/sse?agent_id=A&agent_id=B`), loaded as an ES module
// from /vendor/ssecast-client.js (the package's ssecast/client build). Unlike
// EventSource it sends headers, so the token goes in Authorization, not in the
// URL. Event data is only ever written with textContent, so output such as
// <img onerror=…> shows as text.
//
// Everything is merged idempotently, so a replay may repeat what the page
// already shows: a card is found by its task id, a keyed event (the task, its
// sandbox, each git operation, the pull request) is applied only if it is
// newer than the one of the same key already applied, and an output line is
// placed by its number, once. That is what lets the page open a fresh
// connection whenever the set of agents changes (a resume with the old
// Last-Event-ID would not bring a newly added agent's earlier state), and
// keep what it shows across a resync.
import { createClient } from '/vendor/ssecast-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// With auth on, the token comes in the page URL (?access_token=…) or a cookie
// (sent by the browser on its own). The stream and the task API get it as a
// Bearer header, read afresh on every connection attempt.
const token = params.get('access_token');
const authHeaders = () => (token ? { authorization: `Bearer ${token}` } : {});
const AGENT_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The server's limit of streams per connection. */
const MAX_AGENTS = 50;
/** Lines a card's terminal keeps; the server keeps fewer (docs/example.md). */
const MAX_TERMINAL_LINES = 2000;
/** Cards the page keeps; past it the oldest finished ones go (the server keeps ~140 tasks per agent). */
const MAX_CARDS = 300;
const GIT_OPERATIONS = ['clone', 'branch', 'commit', 'push'];
const EVENT_TYPES = ['task_status', 'sandbox_status', 'git_operation', 'command_output', 'pr_created'];
const CONNECTION_LABELS = { connecting: 'connecting', open: 'live', reconnecting: 'reconnecting', closed: 'closed' };

/** From GET /api/v1/config; these defaults are the server's own. */
const config = { heartbeatEvent: 'heartbeat', heartbeatMs: 15_000 };
/** @type {string[]} the agents followed, in the order they were added */
let agents = [];
/** The client of the current set of agents; events and statuses of an older one are ignored. */
let client;
/** The newest id this connection has shown: a repeat (or an older one) is ignored. */
let cursor = { epoch: '', seq: 0 };
/** When the page last heard from the server: an event, a heartbeat, or the stream opening. */
let lastHeard = 0;
/** @type {Map<string, Card>} */
const cards = new Map();

/**
 * @typedef {{
 *   id: string, agent: string, el: HTMLElement, archived: boolean,
 *   startedAt: string | undefined, finishedAt: string | undefined, firstSeen: string, status: string,
 *   applied: Map<string, { epoch: string, seq: number }>,
 *   lines: Map<number, HTMLElement>, first: number, last: number, follow: boolean, scrollQueued: boolean,
 *   terminal: HTMLElement, trimmed: HTMLElement, rows: Record<string, HTMLElement>,
 * }} Card
 */

// ---------------------------------------------------------------------------
// What the server sent: ids, keys, and the merge.

function parseId(id) {
  const dot = String(id).lastIndexOf('.');
  return { epoch: String(id).slice(0, dot), seq: Number(String(id).slice(dot + 1)) };
}

/** True once per id on this connection: a resume or a replay may repeat what was shown. */
function firstTime(id) {
  const { epoch, seq } = parseId(id);
  if (epoch === cursor.epoch && seq <= cursor.seq) return false;
  cursor = { epoch, seq };
  return true;
}

/** The key the server published the event with (events.mjs: keyOf); keys are not on the wire. */
function keyOf(type, data) {
  switch (type) {
    case 'task_status':
      return 'task';
    case 'sandbox_status':
      return 'sandbox';
    case 'git_operation':
      return `git:${data.operation}`;
    case 'pr_created':
      return 'pr';
    default:
      return undefined;
  }
}

/** True if this event is newer than the one of its key already on the card (a newer epoch always is). */
function newer(card, key, id) {
  const next = parseId(id);
  const applied = card.applied.get(key);
  if (applied && applied.epoch === next.epoch && applied.seq >= next.seq) return false;
  card.applied.set(key, next);
  return true;
}

function handle(type, data, id) {
  const taskId = data?.task_id;
  const agent = data?.agent_id;
  if (typeof taskId !== 'string' || typeof agent !== 'string' || !agents.includes(agent)) return;
  const card = cardFor(taskId, agent, data.timestamp);
  const key = keyOf(type, data);
  if (key && id && !newer(card, key, id)) return;
  renderers[type](card, data);
  showEmpty();
}

// ---------------------------------------------------------------------------
// Cards

function cardFor(taskId, agent, timestamp) {
  let card = cards.get(taskId);
  if (card) {
    if (card.archived) unarchive(card);
    return card;
  }
  const el = /** @type {HTMLElement} */ ($('task-card').content.firstElementChild.cloneNode(true));
  el.dataset.taskId = taskId;
  el.dataset.agent = agent;
  el.dataset.status = 'running';
  el.querySelector('.task-id').textContent = taskId;
  el.querySelector('.agent').textContent = agent;
  /** @type {Record<string, HTMLElement>} */
  const rows = {};
  for (const operation of GIT_OPERATIONS) {
    const row = document.createElement('div');
    row.className = 'op';
    row.dataset.operation = operation;
    row.dataset.status = 'pending';
    const name = document.createElement('span');
    name.textContent = operation;
    const bar = document.createElement('progress');
    bar.max = 100;
    bar.value = 0;
    const percent = document.createElement('span');
    percent.className = 'percent';
    row.append(name, bar, percent);
    el.querySelector('.git').append(row);
    rows[operation] = row;
  }
  const terminal = el.querySelector('.terminal');
  card = {
    id: taskId,
    agent,
    el,
    archived: false,
    startedAt: undefined,
    finishedAt: undefined,
    firstSeen: typeof timestamp === 'string' ? timestamp : new Date().toISOString(),
    status: 'running',
    applied: new Map(),
    lines: new Map(),
    first: 0,
    last: 0,
    follow: true,
    scrollQueued: false,
    terminal,
    trimmed: terminal.querySelector('.trimmed'),
    rows,
  };
  const current = card;
  terminal.addEventListener('scroll', () => {
    current.follow = terminal.scrollHeight - terminal.scrollTop - terminal.clientHeight < 8;
  });
  cards.set(taskId, card);
  place(card);
  prune();
  return card;
}

/** A page kept open for days keeps its newest cards: the oldest that are not running go first. */
function prune() {
  const els = [...$('tasks').children].reverse();
  for (const el of els) {
    if (cards.size <= MAX_CARDS) return;
    const old = cards.get(el.dataset.taskId ?? '');
    if (!old || old.status === 'running') continue;
    el.remove();
    cards.delete(old.id);
  }
}

/** Newest first, by start time (or, until the task's record arrives, by its first event). */
function place(card) {
  const order = (c) => c.startedAt ?? c.firstSeen;
  const mine = order(card);
  const before = [...$('tasks').children].find((el) => {
    const other = cards.get(el.dataset.taskId ?? '');
    return other && other !== card && order(other) < mine;
  });
  if (before) $('tasks').insertBefore(card.el, before);
  else $('tasks').append(card.el);
}

function setPill(el, state, text = state) {
  el.dataset.state = state;
  el.textContent = text;
}

const renderers = {
  task_status(card, data) {
    const moved = card.startedAt !== data.started_at;
    card.startedAt = data.started_at;
    card.finishedAt = data.finished_at;
    card.status = data.status;
    card.el.dataset.status = data.status;
    setPill(card.el.querySelector('.status'), data.status);
    const command = card.el.querySelector('.command');
    command.textContent = data.command;
    command.title = data.command;
    const started = card.el.querySelector('.started');
    started.dateTime = data.started_at;
    started.textContent = new Date(data.started_at).toLocaleTimeString();
    started.title = data.started_at;
    const message = card.el.querySelector('.task-message');
    message.textContent = data.message ?? '';
    message.hidden = !data.message;
    updateDuration(card);
    if (moved) place(card);
  },
  sandbox_status(card, data) {
    const pill = card.el.querySelector('.sandbox');
    setPill(pill, data.status);
    pill.title = `${data.sandbox_id}${data.message ? `: ${data.message}` : ''}`;
  },
  git_operation(card, data) {
    const row = card.rows[data.operation];
    if (!row) return;
    row.dataset.status = data.status;
    row.title = data.message ?? '';
    const progress = data.status === 'completed' ? 100 : data.progress;
    if (typeof progress === 'number') {
      row.querySelector('progress').value = progress;
      row.querySelector('.percent').textContent = `${progress} %`;
    }
    if (data.status === 'failed') row.querySelector('.percent').textContent = 'failed';
  },
  command_output(card, data) {
    addLine(card, data);
  },
  pr_created(card, data) {
    const link = document.createElement('a');
    link.href = data.pr_url;
    link.textContent = `Pull request #${data.pr_number}`;
    link.target = '_blank';
    link.rel = 'noopener';
    const pr = card.el.querySelector('.pr');
    pr.className = 'pr';
    pr.replaceChildren(link);
  },
};

// ---------------------------------------------------------------------------
// A card's terminal: lines by number, a marker for every run of lines not shown.

function gapMarker(missing, earlier) {
  const marker = document.createElement('span');
  marker.className = earlier ? 'trimmed' : 'gap';
  marker.dataset.missing = String(missing);
  marker.textContent = `… ${missing} ${earlier ? 'earlier ' : ''}line${missing === 1 ? '' : 's'} not shown\n`;
  return marker;
}

function addLine(card, data) {
  const n = data.line;
  if (!Number.isInteger(n) || n < 1 || card.lines.has(n)) return;
  const span = document.createElement('span');
  span.className = data.stream === 'stderr' ? 'stderr' : 'stdout';
  span.dataset.line = String(n);
  span.textContent = data.output;
  if (data.stream === 'stderr') span.title = 'stderr';
  card.lines.set(n, span);
  if (card.lines.size === 1) {
    card.terminal.append(span);
    card.first = card.last = n;
  } else if (n > card.last) {
    if (n > card.last + 1) card.terminal.append(gapMarker(n - card.last - 1, false));
    card.terminal.append(span);
    card.last = n;
  } else {
    rebuildTerminal(card); // an earlier line after later ones: rare (a fresh replay after a gap)
  }
  while (card.lines.size > MAX_TERMINAL_LINES) {
    card.lines.get(card.first)?.remove();
    card.lines.delete(card.first);
    let next = card.trimmed.nextElementSibling;
    while (next && !next.dataset.line) {
      const gap = next;
      next = next.nextElementSibling;
      gap.remove();
    }
    card.first = Number(next?.dataset.line ?? 0);
  }
  const missing = card.first - 1;
  card.trimmed.hidden = missing < 1;
  card.trimmed.dataset.missing = String(Math.max(0, missing));
  if (missing >= 1) card.trimmed.textContent = gapMarker(missing, true).textContent;
  if (card.follow && !card.scrollQueued) {
    card.scrollQueued = true;
    requestAnimationFrame(() => {
      card.scrollQueued = false;
      card.terminal.scrollTop = card.terminal.scrollHeight;
    });
  }
}

function rebuildTerminal(card) {
  const numbers = [...card.lines.keys()].sort((a, b) => a - b);
  const children = [card.trimmed];
  numbers.forEach((n, i) => {
    if (i > 0 && n > numbers[i - 1] + 1) children.push(gapMarker(n - numbers[i - 1] - 1, false));
    children.push(card.lines.get(n));
  });
  card.terminal.replaceChildren(...children);
  card.first = numbers[0] ?? 0;
  card.last = numbers.at(-1) ?? 0;
}

// ---------------------------------------------------------------------------
// Time: start, duration, and whether the stream is live.

function formatDuration(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function updateDuration(card) {
  if (!card.startedAt) return;
  const end = card.finishedAt ? Date.parse(card.finishedAt) : card.archived ? undefined : Date.now();
  const duration = card.el.querySelector('.duration');
  duration.textContent =
    end === undefined ? '' : `· ${card.finishedAt ? 'took' : 'running for'} ${formatDuration(end - Date.parse(card.startedAt))}`;
}

function setConnection(state, heard = '') {
  const pill = $('connection');
  if (pill.dataset.state !== state) setPill(pill, state);
  if ($('heard').textContent !== heard) $('heard').textContent = heard;
}

function tick() {
  if (client && client.status === 'open') {
    const quiet = Date.now() - lastHeard;
    // The server sends a heartbeat to a connection idle for one interval: two without a word is a stale path.
    if (quiet > 2 * config.heartbeatMs) setConnection('stale', `nothing heard for ${Math.round(quiet / 1000)} s`);
    else setConnection('live');
  }
  for (const card of cards.values()) if (card.status === 'running' && !card.archived) updateDuration(card);
}

// ---------------------------------------------------------------------------
// Notices and errors: said once, in words, and gone when things are fine again.

function setStreamError(text) {
  $('stream-error').textContent = text;
  $('stream-error').hidden = !text;
}

function setTaskError(text) {
  $('task-error').textContent = text;
  $('task-error').hidden = !text;
}

const explain = (error) => error.serverMessage ?? error.message;

function showNotice(text) {
  $('notice-text').textContent = text;
  $('notice').hidden = false;
  $('notice-archive').hidden = ![...cards.values()].some((card) => card.archived);
}

function archive(card) {
  card.archived = true;
  card.el.dataset.archived = 'true';
  card.el.querySelector('.archived-badge').hidden = false;
  if (card.status === 'running') setPill(card.el.querySelector('.status'), 'unknown');
  updateDuration(card);
}

function unarchive(card) {
  card.archived = false;
  delete card.el.dataset.archived;
  card.el.querySelector('.archived-badge').hidden = true;
}

function onResync(data) {
  cursor = { epoch: '', seq: 0 };
  const reason = data?.reason;
  if (reason === 'expired') {
    showNotice(
      'This page was away longer than the server keeps events: showing the current state of every task it still holds. ' +
        'Output lines it no longer has are marked in the terminals.',
    );
    return;
  }
  // foreign (another epoch: the server restarted, or another history) or unknown: what this page shows is not the server's any more.
  const earlier = [...cards.values()].filter((card) => !card.archived);
  for (const card of earlier) archive(card);
  const what =
    reason === 'foreign'
      ? 'The server restarted and no longer has the events this page had.'
      : 'The server did not recognise where this page was in the stream.';
  const kept = earlier.length
    ? ` ${earlier.length} earlier task${earlier.length === 1 ? ' is' : 's are'} kept below, marked "from before the server restarted".`
    : '';
  showNotice(`${what} Showing what it holds now.${kept}`);
}

function showEmpty() {
  $('empty').hidden = cards.size > 0;
  $('empty').textContent =
    agents.length === 0 ? 'Not following any agent: follow one above to see its tasks.' : 'No tasks yet. Pick an agent and press Run task.';
}

// ---------------------------------------------------------------------------
// The connection: one client for every agent followed, opened fresh when that set changes.

function connect() {
  client?.close();
  client = undefined;
  cursor = { epoch: '', seq: 0 };
  setStreamError('');
  if (agents.length === 0) {
    setConnection('idle', '');
    return;
  }
  setConnection('connecting');
  const url = new URL('/api/v1/sse', location.href);
  for (const agent of agents) url.searchParams.append('agent_id', agent);
  const current = (client = createClient(url, {
    headers: authHeaders,
    // A named heartbeat has empty data; everything else is JSON. The client's own `heartbeatEvent`
    // option is not set on purpose: it would keep heartbeats from every listener, and the page's
    // live/stale indicator listens for them.
    parse: (data, type) => (type === config.heartbeatEvent ? null : JSON.parse(data)),
    // The client replaces a connection silent for three intervals; the page says "stale" after two.
    heartbeatTimeoutMs: 3 * config.heartbeatMs,
  }));
  current.onStatus((status, error) => {
    if (current !== client) return;
    if (status === 'open') {
      lastHeard = Date.now();
      setStreamError('');
    }
    setConnection(CONNECTION_LABELS[status] ?? status);
    // Closed for good (401, 403, …): asking again will not help, so say why.
    if (status === 'closed' && error) setStreamError(`The stream closed${error.status ? ` (${error.status})` : ''}: ${explain(error)}`);
  });
  current.onError((error) => {
    if (current !== client) return;
    if (error.code === 'ERR_LISTENER' || error.code === 'ERR_PARSE') console.error('[agent-work]', error, error.cause);
    // A failure the client retries by itself (a drop, a 502 or 503 while the app restarts, a 429 with its Retry-After).
    else if (error.willRetry) setStreamError(`Reconnecting: ${explain(error)}`);
  });
  for (const type of EVENT_TYPES) {
    current.on(type, ({ data, id }) => {
      if (current !== client) return;
      lastHeard = Date.now();
      if (id && !firstTime(id)) return;
      handle(type, data, id);
    });
  }
  current.on(config.heartbeatEvent, () => {
    if (current !== client) return;
    lastHeard = Date.now();
    tick();
  });
  current.on('resync', ({ data }) => {
    if (current !== client) return;
    lastHeard = Date.now();
    onResync(data);
  });
}

// ---------------------------------------------------------------------------
// The agent picker and the task form.

function renderAgents() {
  const chips = agents.map((agent) => {
    const chip = document.createElement('li');
    chip.dataset.agent = agent;
    const name = document.createElement('span');
    name.textContent = agent;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = '×';
    remove.title = `Stop following ${agent}`;
    remove.setAttribute('aria-label', `Stop following ${agent}`);
    remove.addEventListener('click', () => unfollow(agent));
    chip.append(name, remove);
    return chip;
  });
  $('agents').replaceChildren(...chips);
  const select = $('agent');
  const chosen = select.value;
  select.replaceChildren(...agents.map((agent) => new Option(agent, agent)));
  if (agents.includes(chosen)) select.value = chosen;
  $('run').disabled = agents.length === 0;
  // The address says what is followed, so a reload or a shared link shows the same.
  const next = new URLSearchParams(location.search);
  next.delete('agent_id');
  for (const agent of agents) next.append('agent_id', agent);
  history.replaceState(null, '', `${location.pathname}?${next}`);
  showEmpty();
}

function follow(agent) {
  if (agents.includes(agent)) return;
  agents = [...agents, agent];
  renderAgents();
  $('agent').value = agent;
  connect();
}

function unfollow(agent) {
  agents = agents.filter((a) => a !== agent);
  for (const card of [...cards.values()]) {
    if (card.agent !== agent) continue;
    card.el.remove();
    cards.delete(card.id);
  }
  renderAgents();
  connect();
}

$('follow').addEventListener('submit', (event) => {
  event.preventDefault();
  const agent = $('follow-agent').value.trim();
  if (!AGENT_ID.test(agent)) {
    setTaskError('An agent id is 1 to 64 of A-Z, a-z, 0-9, _ and -.');
    return;
  }
  if (agents.length >= MAX_AGENTS && !agents.includes(agent)) {
    setTaskError(`One page follows at most ${MAX_AGENTS} agents.`);
    return;
  }
  setTaskError('');
  $('follow-agent').value = '';
  follow(agent);
});

$('notice-dismiss').addEventListener('click', () => {
  $('notice').hidden = true;
});
$('notice-archive').addEventListener('click', () => {
  for (const card of [...cards.values()]) {
    if (!card.archived) continue;
    card.el.remove();
    cards.delete(card.id);
  }
  $('notice-archive').hidden = true;
  showEmpty();
});

/** Why a task did not start, in words: the server's JSON message, else its status; never an error page's HTML. */
async function refusal(response) {
  if (/^application\/json\b/i.test(response.headers.get('content-type') ?? '')) {
    const body = await response.json().catch(() => undefined);
    if (typeof body?.message === 'string' && body.message.trim()) return `${body.message.trim().slice(0, 300)} (${response.status})`;
  } else {
    await response.body?.cancel().catch(() => {});
  }
  return `the server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
}

$('run-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const agent = $('agent').value;
  if (!agent) return;
  $('run').disabled = true;
  try {
    const command = $('command').value.trim();
    /** @type {Response} */
    let response;
    try {
      response = await fetch(`/api/v1/agents/${encodeURIComponent(agent)}/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...authHeaders() },
        body: JSON.stringify(command ? { command } : {}),
      });
    } catch {
      throw new Error('the server could not be reached');
    }
    if (!response.ok) throw new Error(await refusal(response));
    setTaskError('');
  } catch (error) {
    setTaskError(`Could not start the task: ${error.message}`);
  } finally {
    $('run').disabled = agents.length === 0;
  }
});

async function loadConfig() {
  try {
    const response = await fetch('/api/v1/config');
    if (!response.ok) return;
    const body = await response.json();
    if (Number.isInteger(body.heartbeat_ms) && body.heartbeat_ms > 0) config.heartbeatMs = body.heartbeat_ms;
    if (typeof body.heartbeat_event === 'string' && body.heartbeat_event) config.heartbeatEvent = body.heartbeat_event;
  } catch {
    // the defaults above are the server's
  }
}

const initial = params.getAll('agent_id').filter((agent) => AGENT_ID.test(agent));
agents = [...new Set(initial.length > 0 ? initial : ['agent-1'])].slice(0, MAX_AGENTS);
renderAgents();
await loadConfig();
setInterval(tick, Math.min(1000, Math.max(50, Math.floor(config.heartbeatMs / 4))));
connect();
