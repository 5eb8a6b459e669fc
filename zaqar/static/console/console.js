// The console page: queues with live counts on the left, one queue's live messages on the right.
//
// Everything goes through the client library (./client/zaqar.js), so the page
// works the same over the websocket and over the HTTP fallback; the badge in
// the top bar says which one is in use and why.
//
// URL parameters override the server's config.json: ?ws=<websocket URL>
// (empty: none), ?transport=auto|websocket|http, ?project=<id>, ?poll=<seconds>.

import { ZaqarClient } from './client/zaqar.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const REFRESH_MS = 3000; // queue list and counts
const MAX_ROWS = 500; // messages kept on screen
const BACKLOG_LIMIT = 200; // a selected queue holding more shows only what arrives from then on

let config = {};
let client = null;
let watch = null;
let selected = null;
let rows = new Map(); // message id -> {tr, message, claimId}
let claims = new Map(); // claim id -> {ids, expires, card}
let seq = 0;
let refreshing = false;

/** A DOM element; children are nodes or text (never parsed as HTML). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el[key] = value;
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

function log(text, error = false) {
  const line = h('span', { className: error ? 'error' : '' }, `${new Date().toLocaleTimeString()}  ${text}`);
  $('log').replaceChildren(line);
}

const FAILED = Symbol('failed');

/** Run an action from a button; report a failure in the footer and return FAILED instead of throwing. */
async function attempt(what, fn) {
  try {
    return await fn();
  } catch (err) {
    log(`${what} failed: ${err.message}`, true);
    return FAILED;
  }
}

// Ids are long and their ends differ most (a sequence then random digits): show the tail.
const short = (id) => (id && id.length > 12 ? `…${id.slice(-10)}` : id || '');
const pollSeconds = () => client.options.pollInterval / 1000;

function showTransport() {
  const state = client.transport;
  const box = $('transport');
  box.dataset.state = state;
  const texts = {
    websocket: 'WebSocket',
    http: `HTTP fallback · polling every ${pollSeconds()} s`,
    connecting: 'Connecting…',
    closed: 'Disconnected',
    idle: 'Connecting…',
  };
  $('transport-text').textContent = texts[state] || state;
  // The first clause of the reason fits the bar; the whole of it is in the tooltip.
  const why = state === 'websocket' ? client.options.websocketUrl : client.transportReason.split(' (')[0];
  $('transport-why').textContent = why || '';
  box.title = client.transportReason || '';
  const live = $('live');
  live.textContent = state === 'http' ? `● polling every ${pollSeconds()} s` : '● live';
  live.classList.toggle('polling', state === 'http');
  live.classList.toggle('paused', state !== 'websocket' && state !== 'http');
}

// --- queues ------------------------------------------------------------------------------------

async function refreshQueues() {
  if (refreshing || !client) return;
  refreshing = true;
  const current = client;
  try {
    const names = (await current.allQueues()).map((q) => q.name);
    const stats = await Promise.all(names.map((name) => current.queueStats(name).catch(() => null)));
    if (current !== client) return;
    renderQueues(names, stats);
    if (selected && names.includes(selected)) renderStats(stats[names.indexOf(selected)]);
  } catch (err) {
    log(`listing queues failed: ${err.message}`, true);
  } finally {
    refreshing = false;
  }
}

function renderQueues(names, stats) {
  const body = $('queues').tBodies[0];
  const existing = new Map([...body.rows].map((tr) => [tr.dataset.queue, tr]));
  const ordered = names.map((name, i) => {
    const tr =
      existing.get(name) ||
      h(
        'tr',
        { dataset: { queue: name }, onclick: () => select(name) },
        h('td', { className: 'name' }, name),
        h('td', { className: 'num free' }),
        h('td', { className: 'num claimed' }),
        h('td', { className: 'num total' }),
      );
    tr.classList.toggle('selected', name === selected);
    const s = stats[i] || { free: '?', claimed: '?', total: '?' };
    for (const key of ['free', 'claimed', 'total']) {
      const cell = tr.querySelector(`.${key}`);
      const text = String(s[key]);
      if (cell.textContent !== text) {
        if (cell.textContent !== '') flash(cell);
        cell.textContent = text;
      }
    }
    return tr;
  });
  body.replaceChildren(...ordered);
  $('no-queues').hidden = names.length > 0;
  $('queue-count').textContent = names.length ? `${names.length} queue${names.length === 1 ? '' : 's'}` : '';
}

function flash(cell) {
  cell.classList.remove('changed');
  void cell.offsetWidth; // restart the animation
  cell.classList.add('changed');
}

function renderStats(s) {
  if (!s) return;
  $('stat-free').textContent = s.free;
  $('stat-claimed').textContent = s.claimed;
  $('stat-total').textContent = s.total;
  $('stat-oldest').textContent = s.oldest ? `${s.oldest.age} s` : '–';
}

async function refreshSelectedStats() {
  if (!selected) return;
  const name = selected;
  const s = await client.queueStats(name).catch(() => null);
  if (s && name === selected) {
    renderStats(s);
    const tr = [...$('queues').tBodies[0].rows].find((r) => r.dataset.queue === name);
    if (tr) for (const key of ['free', 'claimed', 'total']) tr.querySelector(`.${key}`).textContent = s[key];
  }
}

async function createQueue(event) {
  event.preventDefault();
  const name = $('new-queue').value.trim();
  if (!name) return;
  const created = await attempt(`creating ${name}`, () => client.createQueue(name));
  if (created === FAILED) return;
  log(created ? `Queue ${name} created.` : `Queue ${name} already exists.`);
  $('new-queue').value = '';
  await refreshQueues();
  await select(name);
}

async function deleteQueue() {
  const name = selected;
  if (!name || !window.confirm(`Delete queue ${name} and all its messages?`)) return;
  if ((await attempt(`deleting ${name}`, () => client.deleteQueue(name))) === FAILED) return;
  log(`Queue ${name} deleted.`);
  await select(null);
  await refreshQueues();
}

// --- the selected queue ------------------------------------------------------------------------

async function select(name) {
  if (watch) watch.stop();
  watch = null;
  selected = name;
  rows = new Map();
  claims = new Map();
  seq = 0;
  $('messages').tBodies[0].replaceChildren();
  $('claims').replaceChildren();
  $('no-messages').hidden = false;
  for (const tr of $('queues').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.queue === name);
  $('detail').hidden = !name;
  $('pick').hidden = Boolean(name);
  history.replaceState(null, '', name ? `#${encodeURIComponent(name)}` : location.pathname + location.search);
  if (!name) return;
  $('queue-title').textContent = name;
  let stats = await attempt('reading stats', () => client.queueStats(name));
  if (name !== selected) return;
  if (stats === FAILED) stats = null;
  renderStats(stats);
  // A small queue is shown whole; a big one from now on, rather than paging through all of it.
  const since = stats && stats.total > BACKLOG_LIMIT ? 'now' : 'start';
  if (since === 'now') log(`${name} holds ${stats.total} messages; showing new ones only.`);
  const started = await attempt(`watching ${name}`, () =>
    client.watch(name, addRow, { since, onError: (err) => log(`watching ${name}: ${err.message}`, true) }),
  );
  if (started === FAILED) return;
  if (name !== selected) started.stop();
  else watch = started;
}

function addRow(message) {
  if (rows.has(message.id)) return;
  seq += 1;
  const posted = new Date(Date.now() - message.age * 1000);
  const body = JSON.stringify(message.body);
  const state = h('span', { className: 'badge' }, 'free');
  const remove = h(
    'button',
    { type: 'button', className: 'small danger', onclick: () => deleteRow(message.id) },
    'Delete',
  );
  const tr = h(
    'tr',
    { className: 'new', dataset: { id: message.id } },
    h('td', { className: 'num' }, String(seq)),
    h('td', { className: 'id', title: message.id }, short(message.id)),
    h('td', { className: 'time' }, posted.toLocaleTimeString()),
    h('td', { className: 'body', title: body }, body),
    h('td', { className: 'state' }, state),
    h('td', { className: 'actions' }, remove),
  );
  rows.set(message.id, { tr, message, claimId: null });
  if (message.claim_id) markClaimed(message.id, null);
  const scroller = $('messages-scroll');
  const atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
  const tbody = $('messages').tBodies[0];
  tbody.append(tr);
  while (tbody.rows.length > MAX_ROWS) {
    rows.delete(tbody.rows[0].dataset.id);
    tbody.rows[0].remove();
  }
  $('no-messages').hidden = true;
  if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  refreshSelectedStats();
}

function markClaimed(id, claimId) {
  const row = rows.get(id);
  if (!row) return;
  row.claimId = claimId;
  const badge = row.tr.querySelector('.badge');
  badge.className = claimId || row.message.claim_id ? 'badge claimed' : 'badge';
  badge.textContent = claimId ? `claimed · ${short(claimId)}` : row.message.claim_id ? 'claimed' : 'free';
}

async function deleteRow(id) {
  const row = rows.get(id);
  const queue = selected;
  if (!row) return;
  const done = await attempt('deleting the message', () =>
    client.deleteMessage(queue, id, { claimId: row.claimId || undefined }),
  );
  if (done === FAILED) return; // e.g. 403: someone else's claim holds it; the row stays
  row.tr.remove();
  rows.delete(id);
  for (const claim of claims.values()) claim.ids.delete(id);
  renderClaims();
  log(`Message ${short(id)} deleted.`);
  refreshSelectedStats();
}

async function claim() {
  const queue = selected;
  const limit = Number($('claim-limit').value) || 5;
  const ttl = Number($('claim-ttl').value) || 300;
  const result = await attempt('claiming', () => client.claimMessages(queue, { limit, ttl }));
  if (result === FAILED || queue !== selected) return;
  if (!result.claimId) {
    log('Nothing to claim: every message is claimed already, or the queue is empty.');
    return;
  }
  const ids = new Set(result.messages.map((m) => m.id));
  claims.set(result.claimId, { ids, expires: Date.now() + ttl * 1000 });
  for (const id of ids) markClaimed(id, result.claimId);
  renderClaims();
  log(`Claimed ${ids.size} message${ids.size === 1 ? '' : 's'} (claim ${short(result.claimId)}).`);
  refreshSelectedStats();
}

function renderClaims() {
  const cards = [];
  for (const [claimId, c] of claims) {
    if (c.ids.size === 0 || c.expires < Date.now()) {
      claims.delete(claimId);
      continue;
    }
    cards.push(
      h(
        'div',
        { className: 'claim', dataset: { claim: claimId } },
        h('span', {}, 'Claim ', h('code', { title: claimId }, short(claimId))),
        h(
          'span',
          { className: 'muted' },
          `${c.ids.size} message${c.ids.size === 1 ? '' : 's'}, until ` +
            new Date(c.expires).toLocaleTimeString(),
        ),
        h('span', { className: 'spacer' }),
        h(
          'button',
          { type: 'button', className: 'small primary', onclick: () => deleteClaimed(claimId) },
          'Delete claimed',
        ),
        h('button', { type: 'button', className: 'small', onclick: () => release(claimId) }, 'Release'),
      ),
    );
  }
  $('claims').replaceChildren(...cards);
}

async function deleteClaimed(claimId) {
  const c = claims.get(claimId);
  if (!c) return;
  for (const id of [...c.ids]) await deleteRow(id);
}

async function release(claimId) {
  const c = claims.get(claimId);
  if (!c || (await attempt('releasing the claim', () => client.releaseClaim(selected, claimId))) === FAILED)
    return;
  for (const id of c.ids) {
    const row = rows.get(id);
    if (row) row.message = { ...row.message, claim_id: null };
    markClaimed(id, null);
  }
  claims.delete(claimId);
  renderClaims();
  log(`Claim ${short(claimId)} released.`);
  refreshSelectedStats();
}

async function postMessage(event) {
  event.preventDefault();
  const text = $('message-body').value;
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text; // plain text is a JSON string body
  }
  const ttl = Number($('message-ttl').value) || undefined;
  const id = await attempt('posting', () => client.postMessage(selected, body, { ttl }));
  if (id !== FAILED) log(`Posted message ${short(id)} to ${selected}.`);
}

// --- start -------------------------------------------------------------------------------------

function start(project) {
  if (client) client.close();
  localStorage.setItem('zaqar-console-project', project);
  const ws = params.has('ws') ? params.get('ws') : config.websocket_url;
  const poll = Number(params.get('poll')) || config.poll_interval || 2;
  client = new ZaqarClient({
    websocketUrl: ws || undefined,
    httpUrl: location.origin,
    projectId: project,
    transport: params.get('transport') || 'auto',
    pollInterval: poll * 1000,
  });
  client.addEventListener('transport', showTransport);
  client.addEventListener('error', (event) => log(event.detail.message, true));
  showTransport();
  client.connect().then(showTransport);
  const hash = decodeURIComponent(location.hash.slice(1));
  select(hash || null);
  refreshQueues();
}

async function main() {
  config = await fetch('config.json', { cache: 'no-store' })
    .then((r) => r.json())
    .catch(() => ({}));
  const project = params.get('project') || localStorage.getItem('zaqar-console-project') || 'demo';
  $('project').value = project;
  $('project-form').addEventListener('submit', (event) => {
    event.preventDefault();
    start($('project').value.trim() || 'demo');
  });
  $('project').addEventListener('change', () => start($('project').value.trim() || 'demo'));
  $('create-queue').addEventListener('submit', createQueue);
  $('delete-queue').addEventListener('click', deleteQueue);
  $('post-message').addEventListener('submit', postMessage);
  $('claim').addEventListener('click', claim);
  setInterval(() => {
    refreshQueues();
    renderClaims();
  }, REFRESH_MS);
  start(project);
}

main();
