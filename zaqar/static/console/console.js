// The console page: queues with live counts on the left, one queue's live messages on the right.
//
// Everything goes through the client library (./client/zaqar.js), so the page
// works the same over the websocket and over the HTTP fallback; the badge in
// the top bar says which one is in use and why.
//
// URL parameters override the server's config.json: ?ws=<websocket URL>
// (empty: none), ?transport=auto|websocket|http, ?project=<id>, ?poll=<seconds>.
//
// Load on the server, whatever the project holds: queue names are listed in
// full pages every LIST_MS; counts are read only for the queues on screen,
// every COUNTS_MS; the selected queue's counts (and the state of the messages
// on screen) at most once per MIN_GAP_MS however fast messages arrive, and
// every SELECTED_MS otherwise.

import { ZaqarClient, checkProjectId, isQueueName } from './client/zaqar.js';
import { coalesced, h, onScreen, short } from './dom.js';
import { MessageTable } from './table.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const TICK_MS = 1000; // local expiry of messages and claims; schedules the refreshes below
const LIST_MS = 15000; // queue names
const COUNTS_MS = 10000; // counts of the queues on screen
const SELECTED_MS = 3000; // the selected queue's counts and its messages on screen
const MIN_GAP_MS = 1000; // between two refreshes of the selected queue
const BACKLOG_LIMIT = 200; // a selected queue holding more shows only what arrives from then on

let config = {};
let client = null;
let watch = null;
let selected = null;
let table = null; // the selected queue's messages (MessageTable)
let counts = new Map(); // queue -> {stats, at}
let listedAt = -Infinity;
let selectedAt = -Infinity;
let forceCounts = false;

function log(text, error = false) {
  const line = h('span', { className: error ? 'error' : '' }, `${new Date().toLocaleTimeString()}  ${text}`);
  $('log').replaceChildren(line);
}

const report = (err) => log(err.message, true);

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

const pollSeconds = () => client.options.pollInterval / 1000;

const TRANSPORT_TEXT = {
  websocket: 'WebSocket',
  offline: 'Server unreachable',
  unauthorized: 'Not authorized',
  closed: 'Disconnected',
};

function showTransport() {
  const state = client.transport;
  const box = $('transport');
  box.dataset.state = state;
  const reason = client.transportReason;
  const reconnecting = /reconnecting|retrying/.test(reason);
  const text =
    state === 'http'
      ? `HTTP fallback · polling every ${pollSeconds()} s`
      : TRANSPORT_TEXT[state] || (reconnecting ? 'Reconnecting…' : 'Connecting…');
  $('transport-text').textContent = text;
  // The first clause of the reason fits the bar; the whole of it is in the tooltip.
  const why = state === 'websocket' ? client.options.websocketUrl : reason.split(' (')[0];
  $('transport-why').textContent = why || '';
  box.title = reason || '';
  const live = $('live');
  const polling = state === 'http' || state === 'offline';
  if (state === 'offline') live.textContent = '● waiting for the server';
  else live.textContent = polling ? `● polling every ${pollSeconds()} s` : '● live';
  live.classList.toggle('polling', state === 'http');
  live.classList.toggle('paused', state !== 'websocket' && state !== 'http');
}

let lost = false; // the last word in the footer was that the server is unreachable

function transportChanged(event) {
  const { transport, reason } = event.detail;
  showTransport();
  if (transport === 'offline') log(`Cannot reach the server: ${reason}.`, true);
  if (transport === 'unauthorized') log(`The server refused the token: ${reason}.`, true);
  if (lost && (transport === 'websocket' || transport === 'http')) log('The server answers again.');
  lost = transport === 'offline';
  if (transport === 'websocket' || transport === 'http') {
    forceCounts = true; // the view may be stale after a change of transport
    countsSoon();
    selectedSoon();
  }
}

// --- queues ------------------------------------------------------------------------------------

let listing = null; // the listing in flight
let relisting = null; // one more, asked for meanwhile (e.g. right after creating a queue)

function refreshQueues() {
  if (!listing) {
    listing = listQueues().finally(() => {
      listing = null;
    });
    return listing;
  }
  relisting ??= listing.then(() => {
    relisting = null;
    return refreshQueues();
  });
  return relisting;
}

async function listQueues() {
  const current = client;
  listedAt = Date.now();
  try {
    const names = (await current.allQueues()).map((q) => q.name);
    if (current !== client) return;
    renderQueues(names);
    countsSoon();
  } catch (err) {
    if (current === client) log(`listing queues failed: ${err.message}`, true);
  }
}

const queueRows = () => [...$('queues').tBodies[0].rows];

function renderQueues(names) {
  const body = $('queues').tBodies[0];
  const existing = new Map(queueRows().map((tr) => [tr.dataset.queue, tr]));
  const ordered = names.map((name) => {
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
    showCounts(tr, counts.get(name)?.stats);
    return tr;
  });
  body.replaceChildren(...ordered);
  $('no-queues').hidden = names.length > 0;
  $('queue-count').textContent = names.length ? `${names.length} queue${names.length === 1 ? '' : 's'}` : '';
  for (const name of counts.keys()) if (!names.includes(name)) counts.delete(name);
}

function showCounts(tr, stats) {
  for (const key of ['free', 'claimed', 'total']) {
    const cell = tr.querySelector(`.${key}`);
    const text = stats ? String(stats[key]) : '–';
    if (cell.textContent === text) continue;
    if (cell.textContent !== '' && cell.textContent !== '–') flash(cell);
    cell.textContent = text;
  }
}

function flash(cell) {
  cell.classList.remove('changed');
  void cell.offsetWidth; // restart the animation
  cell.classList.add('changed');
}

function remember(name, stats) {
  counts.set(name, { stats, at: Date.now() });
  const tr = queueRows().find((r) => r.dataset.queue === name);
  if (tr) showCounts(tr, stats);
}

/** Counts of the queues on screen that are older than COUNTS_MS (all of them when forced). */
const countsSoon = coalesced(async () => {
  const current = client;
  const maxAge = forceCounts ? 0 : COUNTS_MS;
  forceCounts = false;
  const now = Date.now();
  const due = onScreen($('queues-scroll'), queueRows())
    .map((tr) => tr.dataset.queue)
    .filter((name) => name !== selected && !(now - (counts.get(name)?.at ?? -Infinity) < maxAge));
  const stats = await Promise.all(due.map((name) => current.queueStats(name).catch(() => null)));
  if (current !== client) return;
  due.forEach((name, i) => stats[i] && remember(name, stats[i]));
}, MIN_GAP_MS, report);

function renderStats(s) {
  if (!s) return;
  $('stat-free').textContent = s.free;
  $('stat-claimed').textContent = s.claimed;
  $('stat-total').textContent = s.total;
  $('stat-oldest').textContent = s.oldest ? `${s.oldest.age} s` : '–';
}

/** The selected queue's counts, and the state of its messages on screen. */
const selectedSoon = coalesced(async () => {
  const name = selected;
  const current = client;
  selectedAt = Date.now();
  if (!name || !current) return;
  const stats = await current.queueStats(name).catch(() => null);
  const stillSo = () => name === selected && current === client;
  if (!stillSo()) return;
  if (stats) {
    renderStats(stats);
    remember(name, stats);
  }
  await table.reconcile(current, name, stillSo);
}, MIN_GAP_MS, report);

async function createQueue(event) {
  event.preventDefault();
  const name = $('new-queue').value.trim();
  if (!name) return;
  const created = await attempt(`creating ${name}`, () => client.createQueue(name));
  if (created === FAILED) return;
  log(created ? `Queue ${name} created.` : `Queue ${name} already exists.`);
  $('new-queue').value = '';
  forceCounts = true;
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
  table.reset();
  for (const tr of queueRows()) tr.classList.toggle('selected', tr.dataset.queue === name);
  $('detail').hidden = !name;
  $('pick').hidden = Boolean(name);
  history.replaceState(null, '', name ? `#${encodeURIComponent(name)}` : location.pathname + location.search);
  if (!name) return;
  $('queue-title').textContent = name;
  selectedAt = Date.now();
  let stats = await attempt('reading stats', () => client.queueStats(name));
  if (name !== selected) return;
  if (stats === FAILED) stats = null;
  renderStats(stats);
  if (stats) remember(name, stats);
  // A small queue is shown whole; a big one from now on, rather than paging through all of it.
  const since = stats && stats.total > BACKLOG_LIMIT ? 'now' : 'start';
  if (since === 'now') log(`${name} holds ${stats.total} messages; showing new ones only.`);
  const current = client;
  let started;
  try {
    started = await current.watch(name, addRow, {
      since,
      onError: (err) => log(`watching ${name}: ${err.message}`, true),
    });
  } catch (err) {
    if (name === selected && current === client) log(`watching ${name} failed: ${err.message}`, true);
    return;
  }
  if (name !== selected || current !== client) started.stop();
  else watch = started;
}

function addRow(message) {
  table.add(message);
  selectedSoon();
}

async function deleteRow(id) {
  const row = table.get(id);
  const queue = selected;
  if (!row) return;
  const done = await attempt('deleting the message', () =>
    client.deleteMessage(queue, id, { claimId: row.claimId || undefined }),
  );
  if (done === FAILED) {
    selectedSoon(); // e.g. 403: claimed elsewhere meanwhile; show how it is now
    return;
  }
  table.remove(id);
  log(`Message ${short(id)} deleted.`);
  selectedSoon();
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
  const ids = result.messages.map((m) => m.id);
  table.claimed(result.claimId, ids, Date.now() + ttl * 1000);
  log(`Claimed ${ids.length} message${ids.length === 1 ? '' : 's'} (claim ${short(result.claimId)}).`);
  selectedSoon();
}

async function deleteClaimed(claimId) {
  for (const id of table.claimIds(claimId)) await deleteRow(id);
}

async function release(claimId) {
  if ((await attempt('releasing the claim', () => client.releaseClaim(selected, claimId))) === FAILED) return;
  table.released(claimId);
  log(`Claim ${short(claimId)} released.`);
  selectedSoon();
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

/** The queue named by the URL's #fragment, or null when it names none that could exist. */
function queueInHash() {
  try {
    const name = decodeURIComponent(location.hash.slice(1));
    return isQueueName(name) ? name : null;
  } catch {
    return null; // a malformed %-escape
  }
}

function start(project) {
  const field = $('project');
  const invalid = checkProjectId(project);
  field.setCustomValidity(invalid ? invalid.message : '');
  if (invalid) {
    log(invalid.message, true);
    if (!client) {
      $('transport').dataset.state = 'closed';
      $('transport-text').textContent = 'Disconnected';
      $('transport-why').textContent = 'invalid project id';
    }
    return;
  }
  if (client && client.projectId === project && client.transport !== 'closed') return; // Enter, then change
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
  counts = new Map();
  $('queues').tBodies[0].replaceChildren();
  client.addEventListener('transport', transportChanged);
  client.addEventListener('error', (event) => log(event.detail.message, true));
  showTransport();
  client.connect().catch(() => {}); // failures show in the badge and in the calls that fail
  select(queueInHash());
  refreshQueues();
}

function tick() {
  if (!client) return;
  const now = Date.now();
  table.expire();
  if (now - listedAt >= LIST_MS) refreshQueues();
  else countsSoon();
  if (selected && now - selectedAt >= SELECTED_MS) selectedSoon();
}

async function main() {
  table = new MessageTable(
    {
      tbody: $('messages').tBodies[0],
      scroller: $('messages-scroll'),
      claimsBox: $('claims'),
      empty: $('no-messages'),
    },
    { remove: deleteRow, removeClaimed: deleteClaimed, release },
  );
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
  $('queues-scroll').addEventListener('scroll', () => countsSoon(), { passive: true });
  window.addEventListener('hashchange', () => {
    const name = queueInHash();
    if (client && name && name !== selected) select(name);
  });
  setInterval(tick, TICK_MS);
  start(project);
}

main();
