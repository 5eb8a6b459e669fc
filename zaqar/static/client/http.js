// The same actions over the REST API, answered in the websocket's shapes.
//
// The client speaks websocket actions (`message_post`, `claim_create`, ...).
// When it falls back to HTTP, this module maps each action to its route and
// turns the HTTP answer into the body the websocket would have sent
// (websocket.md §6.2, §12), so nothing above this file knows which transport
// answered.

import { ZaqarError } from './util.js';

const enc = encodeURIComponent;
const queuePath = (p) => `/v2/queues/${enc(p.queue_name)}`;
const lastSegment = (href) => decodeURIComponent(href.split('?')[0].split('/').pop());

/** A message as the websocket shows it: the claim id instead of an href, no checksum. */
function wsMessage(m) {
  const claim = /[?&]claim_id=([^&]+)/.exec(m.href || '');
  return {
    id: m.id,
    claim_id: claim ? decodeURIComponent(claim[1]) : null,
    ttl: m.ttl,
    age: m.age,
    body: m.body,
  };
}

function wsStats(body) {
  const stats = { ...body.messages };
  for (const end of ['oldest', 'newest']) {
    if (stats[end])
      stats[end] = { id: lastSegment(stats[end].href), age: stats[end].age, created: stats[end].created };
  }
  return { messages: stats };
}

// The reserved keys HTTP fills in with their defaults (http-v2.md §3.1); the websocket gives
// stored metadata only (websocket.md §6.2). A key holding its default is dropped, so both agree.
const RESERVED_DEFAULTS = {
  _max_messages_post_size: 262144,
  _default_message_ttl: 3600,
  _default_message_delay: 0,
  _dead_letter_queue: null,
  _dead_letter_queue_messages_ttl: null,
  _max_claim_count: null,
  _enable_encrypt_messages: false,
};

const isDefault = (key, value) => Object.hasOwn(RESERVED_DEFAULTS, key) && RESERVED_DEFAULTS[key] === value;
const storedMetadata = (meta) =>
  Object.fromEntries(Object.entries(meta).filter(([key, value]) => !isDefault(key, value)));

const pick = (p, names) => Object.fromEntries(names.filter((n) => p[n] !== undefined).map((n) => [n, p[n]]));

/**
 * action -> how to ask HTTP for it.
 *
 * `path(params)`; `query`: parameter names sent as query strings (a tuple
 * renames: [httpName, paramName]); `body(params)`: the JSON document, if any;
 * `present(status, body, response)`: the websocket (status, body) of a
 * successful answer. Errors keep HTTP's `{title, description}` body (the
 * client turns either transport's error body into one ZaqarError).
 */
export const ROUTES = {
  queue_list: {
    method: 'GET',
    path: () => '/v2/queues',
    query: ['marker', 'limit', 'detailed'],
    present: (s, b) => [
      s,
      {
        queues: b.queues.map(({ name, metadata }) =>
          metadata === undefined ? { name } : { name, metadata: storedMetadata(metadata) },
        ),
      },
    ],
  },
  queue_create: {
    method: 'PUT',
    path: queuePath,
    body: (p) => p.metadata,
    present: (s, b, p) => [s, `Queue ${p.queue_name} created.`],
  },
  queue_get: { method: 'GET', path: queuePath, present: (s, b) => [s, storedMetadata(b)] },
  queue_delete: {
    method: 'DELETE',
    path: queuePath,
    present: (s, b, p) => [s, `Queue ${p.queue_name} removed.`],
  },
  queue_get_stats: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/stats`,
    present: (s, b) => [s, wsStats(b)],
  },
  queue_purge: {
    method: 'POST',
    path: (p) => `${queuePath(p)}/purge`,
    body: (p) => (p.resource_types ? { resource_types: p.resource_types } : undefined),
  },
  message_list: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/messages`,
    query: ['marker', 'limit', 'echo', 'include_claimed', 'include_delayed'],
    present: (s, b) => [200, { messages: b.messages.map(wsMessage) }],
  },
  message_get: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/messages/${enc(p.message_id)}`,
    present: (s, b) => [s, { messages: wsMessage(b) }],
  },
  message_get_many: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/messages`,
    query: [['ids', 'message_ids']],
    present: (s, b) => [s, { messages: b.messages.map(wsMessage) }],
    notFound: { messages: [] },
  },
  message_post: {
    method: 'POST',
    path: (p) => `${queuePath(p)}/messages`,
    body: (p) => ({ messages: p.messages }),
    present: (s, b) => [s, { message_ids: b.resources.map(lastSegment) }],
  },
  message_delete: {
    method: 'DELETE',
    path: (p) => `${queuePath(p)}/messages/${enc(p.message_id)}`,
    query: ['claim_id'],
  },
  message_delete_many: {
    method: 'DELETE',
    path: (p) => `${queuePath(p)}/messages`,
    query: [['ids', 'message_ids'], 'pop', 'claim_ids'],
  },
  claim_create: {
    method: 'POST',
    path: (p) => `${queuePath(p)}/claims`,
    query: ['limit'],
    body: (p) => pick(p, ['ttl', 'grace']),
    present: (s, b, p, res) =>
      s === 204
        ? [204, { claim_id: null }]
        : [
            s,
            { claim_id: lastSegment(res.headers.get('Location') || ''), messages: b.messages.map(wsMessage) },
          ],
  },
  claim_get: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/claims/${enc(p.claim_id)}`,
    present: (s, b) => [s, { age: b.age, ttl: b.ttl, messages: b.messages.map(wsMessage) }],
  },
  claim_update: {
    method: 'PATCH',
    path: (p) => `${queuePath(p)}/claims/${enc(p.claim_id)}`,
    body: (p) => pick(p, ['ttl', 'grace']),
    present: (s, b, p) => [s, `Claim ${p.claim_id} updated.`],
  },
  claim_delete: {
    method: 'DELETE',
    path: (p) => `${queuePath(p)}/claims/${enc(p.claim_id)}`,
    present: (s, b, p) => [s, `Claim ${p.claim_id} deleted.`],
  },
  subscription_list: {
    method: 'GET',
    path: (p) => `${queuePath(p)}/subscriptions`,
    query: ['marker', 'limit'],
    present: (s, b) => [s, { subscriptions: b.subscriptions }],
  },
  subscription_create: {
    method: 'POST',
    path: (p) => `${queuePath(p)}/subscriptions`,
    body: (p) => pick(p, ['subscriber', 'ttl', 'options']),
    present: (s, b, p) => [
      s,
      { subscription_id: b.subscription_id, message: `Subscription ${p.queue_name} created.` },
    ],
  },
  subscription_get: { method: 'GET', path: (p) => `${queuePath(p)}/subscriptions/${enc(p.subscription_id)}` },
  subscription_delete: {
    method: 'DELETE',
    path: (p) => `${queuePath(p)}/subscriptions/${enc(p.subscription_id)}`,
    present: (s, b, p) => [s, `Subscription ${p.subscription_id} removed.`],
  },
  get_home_doc: { method: 'GET', path: () => '/v2/' },
  ping_node: { method: 'GET', path: () => '/v2/ping' },
};

function url(base, route, params) {
  const search = new URLSearchParams();
  for (const entry of route.query || []) {
    const [name, param] = Array.isArray(entry) ? entry : [entry, entry];
    const value = params[param];
    if (value === undefined || value === null) continue;
    search.set(name, Array.isArray(value) ? value.join(',') : String(value));
  }
  const qs = search.toString();
  return `${base}${route.path(params)}${qs ? `?${qs}` : ''}`;
}

/**
 * Sends actions as REST requests with `fetch`.
 *
 * `send(action, params, headers)` resolves with `{status, body}` in the
 * websocket's shape for any HTTP status, and rejects (status 0) only when
 * no answer came: network error or `timeout` ms.
 */
export class HttpTransport {
  constructor(baseUrl, { fetch = globalThis.fetch.bind(globalThis), timeout = 10000 } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this._fetch = fetch;
    this._timeout = timeout;
  }

  async send(action, params, headers) {
    const route = ROUTES[action];
    if (!route) {
      throw new ZaqarError(`${action} is not available over HTTP`, { status: 400, action, sent: false });
    }
    const doc = route.body ? route.body(params) : undefined;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this._timeout);
    let response;
    let text;
    try {
      response = await this._fetch(url(this.baseUrl, route, params), {
        method: route.method,
        headers: {
          Accept: 'application/json',
          ...(doc !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...headers,
        },
        body: doc !== undefined ? JSON.stringify(doc) : undefined,
        signal: abort.signal,
        cache: 'no-store',
      });
      text = await response.text();
    } catch (err) {
      const why = abort.signal.aborted ? `no answer within ${this._timeout} ms` : err.message;
      throw new ZaqarError(`${route.method} ${action} failed: ${why}`, { action, transport: 'http' });
    } finally {
      clearTimeout(timer);
    }
    let body = {};
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { error: text };
      }
    }
    const status = response.status;
    if (status === 404 && route.notFound) return { status: 200, body: route.notFound };
    if (status >= 400 || !route.present) return { status, body };
    const [wsStatus, wsBody] = route.present(status, body, params, response);
    return { status: wsStatus, body: wsBody };
  }
}
