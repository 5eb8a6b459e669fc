// Test doubles for the browser client: one in-memory zaqar reachable as a WebSocket class and as fetch.
//
// Socket events are delivered as microtasks, so tests that mock timers still
// see connections open and replies arrive; only the client's own timers
// (back-off, polling, timeouts) move with the mocked clock.

import { ZaqarClient } from '../../zaqar/static/client/zaqar.js';

export const WS_URL = 'ws://zaqar.test:9000/';
export const HTTP_URL = 'http://zaqar.test:8888';

/** A client of `server` over both of its transports; back-off without jitter: 100, 200, 400 ... ms. */
export function newClient(server, options = {}) {
  return new ZaqarClient({
    websocketUrl: WS_URL,
    httpUrl: HTTP_URL,
    projectId: 'p1',
    WebSocket: server.WebSocket,
    fetch: server.fetch,
    backoff: { base: 100, max: 1000, random: () => 1 },
    ...options,
  });
}

const envelope = (doc, status, body) => ({
  request: { action: doc.action, body: doc.body ?? {}, headers: doc.headers ?? {}, api: 'v2' },
  headers: { status },
  body,
});

export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Let every pending promise chain and microtask run. */
export async function settle(rounds = 30) {
  for (let i = 0; i < rounds; i += 1) await flush();
}

/** Move the mocked clock forward in small steps, letting promises settle in between. */
export async function advance(mockTimers, ms, step = 10) {
  await settle();
  for (let done = 0; done < ms; done += step) {
    mockTimers.tick(Math.min(step, ms - done));
    await settle(5);
  }
  await settle();
}

/** Await `promise` while moving the mocked clock, failing after `ms` of mocked time. */
export async function within(mockTimers, promise, ms = 60000, step = 10) {
  let outcome = null;
  promise.then(
    (value) => {
      outcome = { value };
    },
    (error) => {
      outcome = { error };
    },
  );
  await settle();
  for (let done = 0; outcome === null && done < ms; done += step) {
    mockTimers.tick(step);
    await settle(5);
  }
  if (outcome === null) throw new Error(`still pending after ${ms} ms (mocked)`);
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

// What HTTP fills in for the reserved metadata keys (http-v2.md §3.1).
const HTTP_DEFAULTS = {
  _max_messages_post_size: 262144,
  _default_message_ttl: 3600,
  _default_message_delay: 0,
  _dead_letter_queue: null,
  _dead_letter_queue_messages_ttl: null,
  _max_claim_count: null,
  _enable_encrypt_messages: false,
};
const AUTH_FAILED = {
  error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' },
};

export class FakeZaqar {
  constructor() {
    this.queues = new Map(); // name -> [{id, body, ttl, claim_id, availableAt}]
    this.meta = new Map(); // name -> stored metadata
    this.subscriptions = []; // {id, queue, subscriber} created with a subscriber
    this.tokens = null; // a Set of valid tokens: Keystone auth is on
    this.maxFrame = Infinity; // larger frames close the socket with 1009, as the server does
    this.httpDown = false; // true: fetch fails as with the server down
    this.seq = 0;
    this.connect = 'open'; // 'open' | 'refuse' | 'hang' for new websocket connections
    this.pushes = true; // false: notifications are lost in transit
    this.sockets = [];
    this.frames = []; // every request frame received, over any socket
    this.requests = []; // every HTTP request: {method, path, query}
    this.hold = null; // (doc) => true to keep a reply back; held replies go to this.held
    this.held = [];
    const server = this;

    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.subscriptions = new Set();
        server.sockets.push(this);
        const mode = server.connect;
        queueMicrotask(() => {
          if (mode === 'open') {
            this.readyState = 1;
            this.onopen?.({});
          } else if (mode === 'refuse') {
            this.readyState = 3;
            this.onerror?.({});
            this.onclose?.({ code: 1006, reason: '' });
          }
        });
      }

      send(data) {
        if (this.readyState !== 1) return;
        if (data.length > server.maxFrame) {
          queueMicrotask(() => this.drop(1009));
          return;
        }
        const doc = JSON.parse(data);
        server.frames.push(doc);
        const [status, body] = server.answer(doc, this);
        const reply = envelope(doc, status, body);
        if (server.hold && server.hold(doc)) server.held.push({ socket: this, reply });
        else queueMicrotask(() => this.deliver(reply));
      }

      deliver(doc) {
        if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(doc) });
      }

      close(code = 1000, reason = '') {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code, reason }));
      }

      /** The server (or a proxy) cuts the connection. */
      drop(code = 1006) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        this.onclose?.({ code, reason: '' });
      }
    };

    this.fetch = async (url, init = {}) => server.http(new URL(url), init);
  }

  get openSockets() {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  messages(queue) {
    if (!this.queues.has(queue)) this.queues.set(queue, []);
    return this.queues.get(queue);
  }

  /** Post as "another client" would: stored, then every subscribed connection is notified. */
  post(queue, bodies, delays = []) {
    const queueDelay = (this.meta.get(queue) || {})._default_message_delay || 0;
    const ids = bodies.map((body, i) => {
      this.seq += 1;
      const id = String(this.seq).padStart(24, '0');
      const delay = queueDelay ? (delays[i] ?? queueDelay) : 0; // delays count on delayed queues only
      const availableAt = Date.now() + delay * 1000;
      this.messages(queue).push({ id, body, ttl: 3600, claim_id: null, availableAt });
      return id;
    });
    if (this.pushes) {
      for (const socket of this.openSockets) {
        if (!socket.subscriptions.has(queue)) continue;
        for (const body of bodies) {
          queueMicrotask(() =>
            socket.deliver({ body, ttl: 3600, queue_name: queue, Message_Type: 'Notification' }),
          );
        }
      }
    }
    return ids;
  }

  list(queue, marker, limit = 10, includeDelayed = false) {
    return this.messages(queue)
      .filter((m) => marker === undefined || m.id > marker)
      .filter((m) => includeDelayed || m.availableAt <= Date.now())
      .slice(0, limit)
      .map((m) => this.view(m));
  }

  missing(queue, id) {
    return `Message ${id} does not exist in queue ${queue} for project p1`;
  }

  view(m) {
    return { id: m.id, claim_id: m.claim_id, ttl: m.ttl, age: 0, body: m.body };
  }

  queueNames(marker, limit = 10) {
    return [...this.queues.keys()]
      .sort()
      .filter((name) => marker === undefined || name > marker)
      .slice(0, limit);
  }

  /** A webhook subscription; an existing one for the same subscriber is returned with `existed`. */
  subscribe(queue, subscriber) {
    const old = this.subscriptions.find((x) => x.queue === queue && x.subscriber === subscriber);
    if (old) return { ...old, existed: true };
    const sub = { id: `s${this.subscriptions.length + 1}`, queue, subscriber };
    this.subscriptions.push(sub);
    return sub;
  }

  subscriptionList(queue) {
    return this.subscriptions
      .filter((x) => x.queue === queue)
      .map((x) => ({ id: x.id, source: queue, subscriber: x.subscriber, ttl: 3600, age: 0, options: {} }));
  }

  stats(queue) {
    const all = this.messages(queue);
    const s = { free: all.length, claimed: 0, total: all.length };
    if (all.length) {
      s.oldest = { id: all[0].id, age: 0, created: '2026-01-01T00:00:00Z' };
      s.newest = { id: all[all.length - 1].id, age: 0, created: '2026-01-01T00:00:00Z' };
    }
    return s;
  }

  /** The websocket (status, body) of one request frame. */
  answer(doc, socket) {
    const p = doc.body ?? {};
    switch (doc.action) {
      case 'authenticate':
        if (this.tokens && !this.tokens.has(doc.headers['X-Auth-Token'])) {
          socket.authenticated = false;
          return [401, { error: 'Authentication failed.' }];
        }
        socket.authenticated = true;
        return [200, { message: 'Authentified.' }];
      case 'queue_create':
        if (this.queues.has(p.queue_name)) return [204, `Queue ${p.queue_name} created.`];
        this.messages(p.queue_name);
        this.meta.set(p.queue_name, p.metadata || {});
        return [201, `Queue ${p.queue_name} created.`];
      case 'queue_get':
        return [200, this.meta.get(p.queue_name) || {}];
      case 'queue_list':
        return [
          200,
          {
            queues: this.queueNames(p.marker, p.limit).map((name) =>
              p.detailed ? { name, metadata: this.meta.get(name) } : { name },
            ),
          },
        ];
      case 'queue_get_stats':
        return [this.queues.has(p.queue_name) ? 200 : 404, { messages: this.stats(p.queue_name) }];
      case 'message_post':
        return [
          201,
          {
            message_ids: this.post(
              p.queue_name,
              p.messages.map((m) => m.body),
              p.messages.map((m) => m.delay),
            ),
          },
        ];
      case 'message_list':
        return [200, { messages: this.list(p.queue_name, p.marker, p.limit, p.include_delayed) }];
      case 'message_get_many':
        return [
          200,
          {
            messages: this.messages(p.queue_name)
              .filter((m) => p.message_ids.includes(m.id))
              .map((m) => this.view(m)),
          },
        ];
      case 'message_get': {
        const found = this.messages(p.queue_name).find((m) => m.id === p.message_id);
        if (found) return [200, { messages: this.view(found) }];
        const text = this.missing(p.queue_name, p.message_id);
        return [404, { exception: text, error: text }];
      }
      case 'subscription_create':
        if (p.subscriber) {
          const sub = this.subscribe(p.queue_name, p.subscriber);
          if (sub.existed) return [409, `Subscription ${p.queue_name} not created.`];
          return [201, { subscription_id: sub.id, message: `Subscription ${p.queue_name} created.` }];
        }
        if (socket.subscriptions.has(p.queue_name)) return [409, `Subscription ${p.queue_name} not created.`];
        socket.subscriptions.add(p.queue_name);
        return [
          201,
          { subscription_id: `sub-${p.queue_name}`, message: `Subscription ${p.queue_name} created.` },
        ];
      case 'subscription_list':
        return [200, { subscriptions: this.subscriptionList(p.queue_name) }];
      case 'subscription_delete':
        socket.subscriptions.delete(p.queue_name);
        return [204, `Subscription ${p.subscription_id} removed.`];
      default:
        return [400, { error: `${doc.action} is not a valid action` }];
    }
  }

  /** The REST API's answer, in HTTP's own shapes (hrefs, resources, Location). */
  async http(url, init) {
    const method = init.method || 'GET';
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({ method, path: url.pathname, query, headers: init.headers });
    if (this.httpDown) throw new TypeError('Failed to fetch');
    const json = (status, body, headers = {}) =>
      new Response(body === undefined ? '' : JSON.stringify(body), {
        status,
        headers: { 'Content-Type': 'application/json', ...headers },
      });
    if (this.tokens && !this.tokens.has(init.headers['X-Auth-Token'])) return json(401, AUTH_FAILED);
    if (url.pathname === '/v2/queues') {
      const limit = query.limit ? Number(query.limit) : 10;
      const names = this.queueNames(query.marker, limit);
      const detailed = query.detailed === 'true';
      const queues = names.map((name) => ({
        name,
        href: `/v2/queues/${name}`,
        ...(detailed ? { metadata: { ...HTTP_DEFAULTS, ...this.meta.get(name) } } : {}),
      }));
      return json(200, { queues, links: [] });
    }
    const m = /^\/v2\/queues\/([^/]+)(?:\/(\w+))?(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return json(404, { title: 'Not found' });
    const queue = decodeURIComponent(m[1]);
    const href = (id) => `/v2/queues/${queue}/messages/${id}`;
    const doc = init.body ? JSON.parse(init.body) : undefined;
    if (m[2] === 'messages' && method === 'POST') {
      const ids = this.post(
        queue,
        doc.messages.map((x) => x.body),
        doc.messages.map((x) => x.delay),
      );
      return json(201, { resources: ids.map(href) }, { Location: ids.map(href).join(',') });
    }
    if (m[2] === 'messages' && m[3] && method === 'GET') {
      const found = this.messages(queue).find((x) => x.id === m[3]);
      if (found) return json(200, { ...this.view(found), href: href(found.id) });
      return json(404, { title: 'Not found', description: this.missing(queue, m[3]) });
    }
    if (m[2] === 'messages' && method === 'GET' && query.ids) {
      const ids = query.ids.split(',');
      const found = this.messages(queue).filter((x) => ids.includes(x.id));
      if (!found.length) return json(404, { title: 'Not found' });
      return json(200, { messages: found.map((x) => ({ ...this.view(x), href: href(x.id) })) });
    }
    if (m[2] === 'messages' && method === 'GET') {
      const limit = query.limit ? Number(query.limit) : 10;
      const delayed = (this.meta.get(queue) || {})._default_message_delay;
      const include = query.include_delayed === 'true' || !delayed; // forced for other queues (§4.3)
      const page = this.list(queue, query.marker, limit, include).map((x) => ({ ...x, href: href(x.id) }));
      return json(200, { messages: page, links: [] });
    }
    if (!m[2] && method === 'GET') return json(200, { ...HTTP_DEFAULTS, ...(this.meta.get(queue) || {}) });
    if (m[2] === 'subscriptions' && method === 'POST') {
      const sub = this.subscribe(queue, doc.subscriber); // NOTE: HTTP gives back an unconfirmed duplicate
      return json(201, { subscription_id: sub.id });
    }
    if (m[2] === 'subscriptions' && method === 'GET') {
      return json(200, { subscriptions: this.subscriptionList(queue), links: [] });
    }
    if (m[2] === 'stats') {
      const s = this.stats(queue);
      for (const end of ['oldest', 'newest'])
        if (s[end]) s[end] = { href: href(s[end].id), age: 0, created: s[end].created };
      return json(200, { messages: s });
    }
    if (m[2] === 'claims' && method === 'POST') {
      const free = this.messages(queue)
        .filter((x) => !x.claim_id)
        .slice(0, Number(query.limit || 10));
      if (!free.length) return new Response(null, { status: 204 });
      for (const x of free) x.claim_id = 'c1';
      return json(
        201,
        {
          messages: free.map((x) => ({
            id: x.id,
            ttl: 360,
            age: 0,
            body: x.body,
            href: `${href(x.id)}?claim_id=c1`,
          })),
        },
        { Location: `/v2/queues/${queue}/claims/c1` },
      );
    }
    if (!m[2] && method === 'PUT') {
      const existed = this.queues.has(queue);
      this.messages(queue);
      if (!existed) this.meta.set(queue, doc || {});
      return new Response(existed ? null : '', { status: existed ? 204 : 201 });
    }
    return json(405, { title: 'Method not allowed' });
  }
}
