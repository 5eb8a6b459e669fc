// Test doubles for the browser client: one in-memory zaqar reachable as a WebSocket class and as fetch.
//
// Socket events are delivered as microtasks, so tests that mock timers still
// see connections open and replies arrive; only the client's own timers
// (back-off, polling, timeouts) move with the mocked clock.

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

export class FakeZaqar {
  constructor() {
    this.queues = new Map(); // name -> [{id, body, ttl, claim_id}]
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
  post(queue, bodies) {
    const ids = bodies.map((body) => {
      this.seq += 1;
      const id = String(this.seq).padStart(24, '0');
      this.messages(queue).push({ id, body, ttl: 3600, claim_id: null });
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

  list(queue, marker, limit = 10) {
    return this.messages(queue)
      .filter((m) => marker === undefined || m.id > marker)
      .slice(0, limit)
      .map((m) => ({ id: m.id, claim_id: m.claim_id, ttl: m.ttl, age: 0, body: m.body }));
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
        return [200, { message: 'Authentified.' }];
      case 'queue_create':
        return [
          this.queues.has(p.queue_name) ? 204 : (this.messages(p.queue_name), 201),
          `Queue ${p.queue_name} created.`,
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
            ),
          },
        ];
      case 'message_list':
        return [200, { messages: this.list(p.queue_name, p.marker, p.limit) }];
      case 'message_get':
        return [200, { messages: this.list(p.queue_name).find((m) => m.id === p.message_id) }];
      case 'subscription_create':
        if (socket.subscriptions.has(p.queue_name)) return [409, `Subscription ${p.queue_name} not created.`];
        socket.subscriptions.add(p.queue_name);
        return [
          201,
          { subscription_id: `sub-${p.queue_name}`, message: `Subscription ${p.queue_name} created.` },
        ];
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
    const json = (status, body, headers = {}) =>
      new Response(body === undefined ? '' : JSON.stringify(body), {
        status,
        headers: { 'Content-Type': 'application/json', ...headers },
      });
    const m = /^\/v2\/queues\/([^/]+)(?:\/(\w+))?(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return json(404, { title: 'Not found' });
    const queue = decodeURIComponent(m[1]);
    const href = (id) => `/v2/queues/${queue}/messages/${id}`;
    const doc = init.body ? JSON.parse(init.body) : undefined;
    if (m[2] === 'messages' && method === 'POST') {
      const ids = this.post(
        queue,
        doc.messages.map((x) => x.body),
      );
      return json(201, { resources: ids.map(href) }, { Location: ids.map(href).join(',') });
    }
    if (m[2] === 'messages' && method === 'GET') {
      const limit = query.limit ? Number(query.limit) : 10;
      const page = this.list(queue, query.marker, limit).map((x) => ({ ...x, href: href(x.id) }));
      return json(200, { messages: page, links: [] });
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
      return new Response(existed ? null : '', { status: existed ? 204 : 201 });
    }
    return json(405, { title: 'Method not allowed' });
  }
}
