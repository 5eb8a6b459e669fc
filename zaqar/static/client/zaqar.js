// zaqar browser client: the Messaging API v2 over a websocket, with a transparent REST fallback.
//
//   import { ZaqarClient } from './zaqar.js';
//   const zaqar = new ZaqarClient({ websocketUrl: 'ws://127.0.0.1:9000/', httpUrl: 'http://127.0.0.1:8888',
//                                   projectId: 'demo' });
//   await zaqar.postMessage('jobs', { task: 'resize' });
//   const watch = await zaqar.watch('jobs', (message) => console.log(message.id, message.body));
//
// Every operation returns a promise in the same shape whichever transport
// carried it; failures reject with a ZaqarError (see util.js).

import { HttpTransport } from './http.js';
import { Watch } from './watch.js';
import { WsConnection } from './ws.js';
import { Backoff, ZaqarError, errorText, sleep, uuid4 } from './util.js';

export { ZaqarError, Watch };

export const DEFAULTS = Object.freeze({
  transport: 'auto', // 'auto': websocket, HTTP when it fails; 'websocket' or 'http' to insist on one
  requestTimeout: 10000, // ms for one call, including waiting for a connection
  connectTimeout: 4000, // ms for a websocket to open
  maxFailures: 2, // auto: consecutive websocket connects that fail before falling back to HTTP
  maxDrops: 3, // auto: open websockets lost within dropWindow before falling back
  dropWindow: 60000,
  stableAfter: 5000, // ms a websocket must stay open for the reconnect back-off to start over
  probeInterval: 30000, // ms between attempts to return from HTTP to the websocket
  pollInterval: 2000, // ms between pulls of a watched queue over HTTP
  safetyInterval: 30000, // ms between pulls of a watched queue over the websocket (pushes are best-effort)
  subscriptionTtl: 86400, // s; the connection's subscriptions are renewed before this runs out
  pageSize: 10, // messages per pull
  backoff: { base: 250, max: 10000 },
});

// Retried on another connection when the reply was lost: running them twice changes nothing.
// Posting, claiming and subscribing would run twice, so those calls reject instead.
const UNSAFE = new Set(['message_post', 'claim_create', 'subscription_create', 'message_delete_many']);

/**
 * One client, one project, one Client-ID.
 *
 * Transport rules (option `transport: 'auto'`, the default):
 * - it connects to `websocketUrl` first; calls made meanwhile wait for it;
 * - after `maxFailures` consecutive connects that fail (refused, blocked,
 *   no answer within `connectTimeout`) or `maxDrops` open connections lost
 *   within `dropWindow`, it switches to HTTP at `httpUrl` and, every
 *   `probeInterval`, tries the websocket again, switching back when it opens;
 * - a lost connection below those limits is reopened with exponential back-off;
 * - without `websocketUrl` (or a WebSocket implementation) it uses HTTP.
 *
 * Event `transport` (detail: {transport, reason}) fires on each change;
 * `transport` is then 'websocket' or 'http' ('connecting' or 'closed' otherwise).
 */
export class ZaqarClient extends EventTarget {
  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS, ...options };
    o.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    o.httpUrl = options.httpUrl ?? globalThis.location?.origin;
    if (!o.projectId) throw new TypeError('projectId is required');
    if (o.transport === 'websocket' && !o.websocketUrl)
      throw new TypeError("transport 'websocket' needs websocketUrl");
    if (o.transport === 'http' && !o.httpUrl) throw new TypeError("transport 'http' needs httpUrl");
    this.options = o;
    this.projectId = o.projectId;
    this.clientId = o.clientId || uuid4();
    this._http = o.httpUrl
      ? new HttpTransport(o.httpUrl, { fetch: o.fetch, timeout: o.requestTimeout })
      : null;
    this._mode = 'idle';
    this._reason = '';
    this._conn = null;
    this._timer = null;
    this._waiters = new Set();
    this._failures = 0;
    this._drops = [];
    this._backoff = new Backoff(o.backoff);
    this._watches = new Set();
    this._bindings = new Map(); // queue -> {conn, at, promise of the subscription id}
  }

  /** 'websocket', 'http', 'connecting', 'closed' (or 'idle' before the first call). */
  get transport() {
    return this._mode;
  }

  /** Why the client uses the transport it uses (e.g. why it fell back to HTTP). */
  get transportReason() {
    return this._reason;
  }

  /** Start connecting; resolves with the transport in use once one works. */
  async connect() {
    this._start();
    await this._usable(Infinity);
    return this._mode;
  }

  /** Close the websocket, stop every watch and timer; later calls reject. */
  close() {
    for (const watch of [...this._watches]) watch.stop();
    clearTimeout(this._timer);
    this._setMode('closed', 'closed by the page');
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close(1000, 'client closed');
  }

  // --- transports ------------------------------------------------------------------------------

  _start() {
    if (this._mode !== 'idle') return;
    const o = this.options;
    if (o.transport === 'http' || !o.websocketUrl || !o.WebSocket) {
      const reason = o.transport === 'http' ? 'HTTP requested' : 'no websocket available';
      this._setMode('http', reason);
      return;
    }
    this._setMode('connecting', 'opening the websocket');
    this._attempt();
  }

  _newConnection() {
    const o = this.options;
    return new WsConnection(o.websocketUrl, {
      WebSocket: o.WebSocket,
      timeout: o.requestTimeout,
      connectTimeout: o.connectTimeout,
    });
  }

  async _open() {
    const conn = this._newConnection();
    try {
      await conn.open();
      if (this.options.token) {
        const reply = await conn.send('authenticate', {}, this._headers());
        if (reply.status !== 200) {
          throw new ZaqarError(errorText(reply.body, reply.status), {
            status: reply.status,
            action: 'authenticate',
          });
        }
      }
      return conn;
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  async _attempt() {
    let conn;
    try {
      conn = await this._open();
    } catch (err) {
      if (this._mode === 'closed') return;
      this._failures += 1;
      if (this.options.transport === 'auto' && this._failures >= this.options.maxFailures) {
        this._fallback(`websocket unreachable (${err.message})`);
      } else {
        this._schedule(() => this._attempt(), this._backoff.next());
      }
      return;
    }
    this._adopt(conn);
  }

  async _probe() {
    try {
      this._adopt(await this._open());
    } catch {
      if (this._mode === 'http') this._schedule(() => this._probe(), this.options.probeInterval);
    }
  }

  _adopt(conn) {
    if (this._mode === 'closed') {
      conn.close();
      return;
    }
    clearTimeout(this._timer);
    if (this._mode === 'http') this._drops = []; // a fresh start after a successful probe
    this._failures = 0;
    this._conn = conn;
    this._bindings.clear(); // the server deleted the old connection's subscriptions with it
    conn.addEventListener('push', (event) => this._onPush(event.detail));
    conn.addEventListener('close', (event) => this._onClose(conn, event.detail));
    this._setMode('websocket', `connected to ${conn.url}`);
  }

  _onClose(conn, detail) {
    if (conn !== this._conn || this._mode === 'closed') return;
    this._conn = null;
    const now = Date.now();
    if (now - conn.openedAt >= this.options.stableAfter) this._backoff.reset();
    this._drops = this._drops.filter((t) => now - t < this.options.dropWindow);
    this._drops.push(now);
    if (this.options.transport === 'auto' && this._drops.length >= this.options.maxDrops) {
      this._fallback(
        `websocket keeps dropping (${this._drops.length} times in ${this.options.dropWindow / 1000} s)`,
      );
      return;
    }
    this._setMode('connecting', `websocket closed (code ${detail.code}), reconnecting`);
    this._schedule(() => this._attempt(), this._backoff.next());
  }

  _fallback(reason) {
    if (!this._http) {
      this._setMode('connecting', `${reason}; no HTTP URL to fall back to`);
      this._schedule(() => this._attempt(), this._backoff.next());
      return;
    }
    this._setMode('http', reason);
    this._schedule(() => this._probe(), this.options.probeInterval);
  }

  _schedule(fn, ms) {
    clearTimeout(this._timer);
    this._timer = setTimeout(fn, ms);
  }

  _setMode(mode, reason) {
    const changed = mode !== this._mode || reason !== this._reason;
    this._mode = mode;
    this._reason = reason;
    if (mode === 'websocket' || mode === 'http' || mode === 'closed') {
      for (const wake of this._waiters) wake();
      this._waiters.clear();
    }
    if (changed) {
      this.dispatchEvent(new CustomEvent('transport', { detail: { transport: mode, reason } }));
      for (const watch of this._watches) watch.transportChanged(mode);
    }
  }

  /**
   * Wait until a transport can carry a request, or the deadline (ms since epoch) passes.
   *
   * Resolves with the open WsConnection, or with the HttpTransport. The
   * connection itself, not the mode: it may close before the caller resumes,
   * and then its send() fails as unsent and is tried again.
   */
  async _usable(deadline, action = null) {
    for (;;) {
      if (this._mode === 'closed') throw new ZaqarError('the client is closed', { action, sent: false });
      if (this._mode === 'http') return this._http;
      if (this._mode === 'websocket' && this._conn && this._conn.isOpen) return this._conn;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new ZaqarError(`no connection to the server (${this._reason})`, { action, sent: false });
      await new Promise((resolve) => {
        const timer = left === Infinity ? null : setTimeout(done, left);
        const waiters = this._waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  _headers() {
    const headers = { 'Client-ID': this.clientId, 'X-Project-ID': this.projectId };
    if (this.options.token) headers['X-Auth-Token'] = this.options.token;
    return headers;
  }

  // --- requests --------------------------------------------------------------------------------

  /**
   * Send one action; resolves with `{status, body}` (websocket shapes) whatever the status.
   *
   * A request whose connection was lost before the reply is sent again on the
   * next one, unless it is in UNSAFE and may have run: it then rejects with
   * status 0 and `sent: true`, and the caller decides.
   */
  async request(action, params = {}) {
    this._start();
    const deadline = Date.now() + this.options.requestTimeout;
    for (;;) {
      const transport = await this._usable(deadline, action);
      try {
        return await transport.send(action, params, this._headers());
      } catch (err) {
        if (!(err instanceof ZaqarError) || err.status !== 0) throw err;
        const unsafe = UNSAFE.has(action) && err.sent;
        if (unsafe || Date.now() >= deadline) throw err;
        if (transport === this._http) await sleep(Math.min(500, deadline - Date.now()));
      }
    }
  }

  /** Like request(), but rejects with a ZaqarError for error statuses. */
  async call(action, params = {}) {
    const reply = await this.request(action, params);
    // NOTE: stats of an unknown queue are zeros with 404 over the websocket, 200 over HTTP.
    if (reply.status >= 400 && !(action === 'queue_get_stats' && reply.status === 404)) {
      throw new ZaqarError(errorText(reply.body, reply.status), {
        status: reply.status,
        action,
        body: reply.body,
        transport: this._mode,
      });
    }
    return reply;
  }

  // --- queues ----------------------------------------------------------------------------------

  /** One page of queue names (and metadata with `detailed`), after `marker`, sorted by name. */
  async listQueues({ marker, limit, detailed } = {}) {
    const { body } = await this.call('queue_list', { marker, limit, detailed });
    return body.queues;
  }

  /** Every queue of the project, page by page (in the server's page size, whatever it is configured to). */
  async allQueues({ detailed } = {}) {
    const all = [];
    for (let marker; ;) {
      const page = await this.listQueues({ marker, detailed });
      if (page.length === 0) return all;
      all.push(...page);
      marker = page[page.length - 1].name;
    }
  }

  /** Resolves true when created, false when it existed (its metadata is then left alone). */
  async createQueue(name, metadata) {
    const params = { queue_name: name };
    if (metadata !== undefined) params.metadata = metadata;
    return (await this.call('queue_create', params)).status === 201;
  }

  async getQueue(name) {
    return (await this.call('queue_get', { queue_name: name })).body;
  }

  async deleteQueue(name) {
    await this.call('queue_delete', { queue_name: name });
  }

  async purgeQueue(name, resourceTypes) {
    await this.call('queue_purge', { queue_name: name, resource_types: resourceTypes });
  }

  /** `{free, claimed, total, oldest?, newest?}`; zeros for a queue that does not exist. */
  async queueStats(name) {
    return (await this.call('queue_get_stats', { queue_name: name })).body.messages;
  }

  // --- messages --------------------------------------------------------------------------------

  /** Post `[{body, ttl?, delay?}, ...]`; resolves with the new ids, in the same order. */
  async postMessages(queue, messages) {
    return (await this.call('message_post', { queue_name: queue, messages })).body.message_ids;
  }

  async postMessage(queue, body, { ttl, delay } = {}) {
    const message = { body };
    if (ttl !== undefined) message.ttl = ttl;
    if (delay !== undefined) message.delay = delay;
    return (await this.postMessages(queue, [message]))[0];
  }

  /** Messages `{id, claim_id, ttl, age, body}` after `marker`, in post order. */
  async listMessages(queue, { marker, limit, echo = true, includeClaimed, includeDelayed } = {}) {
    const { body } = await this.call('message_list', {
      queue_name: queue,
      marker,
      limit,
      echo,
      include_claimed: includeClaimed,
      include_delayed: includeDelayed,
    });
    return body.messages;
  }

  async getMessage(queue, id) {
    return (await this.call('message_get', { queue_name: queue, message_id: id })).body.messages;
  }

  async getMessages(queue, ids) {
    return (await this.call('message_get_many', { queue_name: queue, message_ids: ids })).body.messages;
  }

  /** Delete one message; a claimed one needs the id of its claim. */
  async deleteMessage(queue, id, { claimId } = {}) {
    await this.call('message_delete', { queue_name: queue, message_id: id, claim_id: claimId });
  }

  async deleteMessages(queue, ids) {
    await this.call('message_delete_many', { queue_name: queue, message_ids: ids });
  }

  /** Delete and return up to `count` of the oldest unclaimed messages. */
  async popMessages(queue, count) {
    return (await this.call('message_delete_many', { queue_name: queue, pop: count })).body.messages;
  }

  // --- claims ----------------------------------------------------------------------------------

  /** `{claimId, messages}`; claimId is null and messages empty when nothing was claimable. */
  async claimMessages(queue, { limit, ttl, grace } = {}) {
    const { body } = await this.call('claim_create', { queue_name: queue, limit, ttl, grace });
    return { claimId: body.claim_id, messages: body.messages || [] };
  }

  async getClaim(queue, claimId) {
    return (await this.call('claim_get', { queue_name: queue, claim_id: claimId })).body;
  }

  async renewClaim(queue, claimId, { ttl, grace } = {}) {
    await this.call('claim_update', { queue_name: queue, claim_id: claimId, ttl, grace });
  }

  /** Give the claimed messages back to the queue. */
  async releaseClaim(queue, claimId) {
    await this.call('claim_delete', { queue_name: queue, claim_id: claimId });
  }

  // --- subscriptions ---------------------------------------------------------------------------

  /** A webhook or mailto subscription; resolves with its id. */
  async subscribe(queue, { subscriber, ttl, options } = {}) {
    const { body } = await this.call('subscription_create', { queue_name: queue, subscriber, ttl, options });
    return body.subscription_id;
  }

  async listSubscriptions(queue, { marker, limit } = {}) {
    return (await this.call('subscription_list', { queue_name: queue, marker, limit })).body.subscriptions;
  }

  async getSubscription(queue, id) {
    return (await this.call('subscription_get', { queue_name: queue, subscription_id: id })).body;
  }

  async unsubscribe(queue, id) {
    await this.call('subscription_delete', { queue_name: queue, subscription_id: id });
  }

  // --- live ------------------------------------------------------------------------------------

  /**
   * Call `onMessage(message)` for every message posted to `queue`, once each, in post order.
   *
   * `since`: 'now' (default: messages posted from here on), 'start' (every
   * message in the queue first) or a message id to resume after. Resolves with
   * the Watch once started; `watch.stop()` ends it.
   */
  async watch(queue, onMessage, options = {}) {
    this._start();
    const watch = new Watch(this, queue, onMessage, options);
    this._watches.add(watch);
    try {
      return await watch.start();
    } catch (err) {
      this._watches.delete(watch);
      throw err;
    }
  }

  _onPush(doc) {
    if (!doc || typeof doc.queue_name !== 'string') return;
    for (const watch of this._watches) {
      if (watch.queue === doc.queue_name) watch.wake();
    }
  }

  /**
   * Make sure the current websocket has a connection-bound subscription to `queue`.
   *
   * One per queue and connection, shared by its watches; renewed (deleted and
   * created again) when 90% of its ttl has passed.
   */
  _bind(queue) {
    const conn = this._conn;
    if (!conn || !conn.isOpen) return Promise.resolve(null);
    const ttl = this.options.subscriptionTtl;
    const current = this._bindings.get(queue);
    if (current && current.conn === conn && Date.now() - current.at < ttl * 900) return current.promise;
    const headers = this._headers();
    const promise = (async () => {
      const old = current && current.conn === conn ? await current.promise.catch(() => null) : null;
      if (old) await conn.send('subscription_delete', { queue_name: queue, subscription_id: old }, headers);
      const reply = await conn.send('subscription_create', { queue_name: queue, ttl }, headers);
      if (reply.status === 201) return reply.body.subscription_id;
      if (reply.status === 409) return null; // this connection is subscribed already
      throw new ZaqarError(errorText(reply.body, reply.status), {
        status: reply.status,
        action: 'subscription_create',
      });
    })();
    const binding = { conn, at: Date.now(), promise };
    promise.catch(() => {
      if (this._bindings.get(queue) === binding) this._bindings.delete(queue); // try again next time
    });
    this._bindings.set(queue, binding);
    return promise;
  }

  /** A watch stopped: drop the queue's subscription when no other watch needs it. */
  _forget(watch) {
    this._watches.delete(watch);
    if ([...this._watches].some((w) => w.queue === watch.queue)) return;
    const binding = this._bindings.get(watch.queue);
    this._bindings.delete(watch.queue);
    if (!binding || binding.conn !== this._conn || !binding.conn.isOpen) return;
    const headers = this._headers();
    binding.promise
      .then(
        (id) =>
          id &&
          binding.conn.send('subscription_delete', { queue_name: watch.queue, subscription_id: id }, headers),
      )
      .catch(() => {});
  }
}
