// The transport under the browser client: one websocket at a time, REST when it cannot be used.
//
// `Link` owns the connection state (connect, reconnect with back-off, fall back
// to HTTP and return, token and reachability) and sends one action at a time
// over whichever transport works; `ZaqarClient` (zaqar.js) builds the
// operations on it.

import { HttpTransport } from './http.js';
import { WsConnection } from './ws.js';
import {
  Backoff,
  ZaqarError,
  checkProjectId,
  checkQueueName,
  invalid,
  replyError,
  sleep,
  uuid4,
} from './util.js';

export const DEFAULTS = Object.freeze({
  transport: 'auto', // 'auto': websocket, HTTP when it fails; 'websocket' or 'http' to insist on one
  requestTimeout: 10000, // ms for one call, including waiting for a connection
  connectTimeout: 4000, // ms for a websocket to open
  maxFailures: 2, // auto: consecutive websocket connects that fail before falling back to HTTP
  maxDrops: 3, // auto: open websockets lost within dropWindow before falling back
  dropWindow: 60000,
  stableAfter: 5000, // ms a websocket must stay open for the reconnect back-off to start over
  probeInterval: 30000, // ms: most between tries to return from HTTP to the websocket (1 s, 2 s, 4 s ...)
  pollInterval: 2000, // ms between pulls of a watched queue over HTTP
  safetyInterval: 30000, // ms between pulls of a watched queue over the websocket (pushes are best-effort)
  subscriptionTtl: 86400, // s; the connection's subscriptions are renewed before this runs out
  pageSize: 20, // items per listing page: the server's max_*_per_page (20 unless configured)
  maxPostSize: 262144, // bytes of JSON per post: the server's max_messages_post_size
  token: null, // Keystone token; setToken() replaces it
  backoff: { base: 250, max: 10000 },
});

// Retried on another connection when the reply was lost: running them twice changes nothing.
// Posting, claiming and subscribing would run twice, so those calls reject instead.
const UNSAFE = new Set(['message_post', 'claim_create', 'subscription_create', 'message_delete_many']);
// States in which calls need not wait: they go over a transport, or fail at once.
const SETTLED = new Set(['websocket', 'http', 'offline', 'unauthorized', 'closed']);

const isAuthFailure = (err) =>
  err instanceof ZaqarError && err.action === 'authenticate' && (err.status === 401 || err.status === 403);

/**
 * One project, one Client-ID, one transport at a time.
 *
 * Transport rules (option `transport: 'auto'`, the default):
 * - it connects to `websocketUrl` first; calls made meanwhile wait for it;
 * - after `maxFailures` consecutive connects that fail (refused, blocked,
 *   no answer within `connectTimeout`) or `maxDrops` open connections lost
 *   within `dropWindow` (a connection that leaves a call unanswered for
 *   `requestTimeout` counts as lost), it switches to HTTP at `httpUrl` and
 *   tries the websocket again after 1 s, 2 s, 4 s ... up to every
 *   `probeInterval`, switching back when it opens;
 * - a lost connection below those limits is reopened with exponential back-off;
 * - without `websocketUrl` (or a WebSocket implementation) it uses HTTP.
 *
 * Event `transport` (detail: {transport, reason}) fires on each change of
 * `transport`: 'websocket' or 'http' while calls go through; 'offline' when
 * HTTP gets no answer either (calls keep trying; the first answer returns to
 * 'http' and tries the websocket at once); 'unauthorized' when the server
 * refused the token (calls then reject with that 401 until `setToken()`);
 * 'connecting' or 'closed' otherwise. Event `unauthorized` (detail: {reason:
 * 'rejected' | 'expired', error}) fires when the token is refused or expires.
 */
export class Link extends EventTarget {
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
    this._token = o.token || null;
    this._badProject = checkProjectId(o.projectId);
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
    this._probeBackoff = new Backoff({ base: 1000, max: o.probeInterval, random: o.backoff.random });
    this._authError = null;
    this._afterAuth = 'websocket'; // where an unauthorized client resumes once it has a new token
  }

  /** 'websocket', 'http', 'offline', 'unauthorized', 'connecting', 'closed'; 'idle' before any call. */
  get transport() {
    return this._mode;
  }

  /** Why the client uses the transport it uses (e.g. why it fell back to HTTP). */
  get transportReason() {
    return this._reason;
  }

  /** Start connecting; resolves with the transport in use once one works. */
  async connect() {
    if (this._badProject) throw this._badProject;
    this._start();
    await this._usable(Infinity);
    return this._mode;
  }

  /** Close the websocket and stop every timer; later calls reject. */
  close() {
    clearTimeout(this._timer);
    this._setMode('closed', 'closed by the page');
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close(1000, 'client closed');
  }

  /**
   * Use a new Keystone token from now on; resolves once the server accepted it.
   *
   * An open websocket authenticates again with it, later HTTP calls send it,
   * and an 'unauthorized' client reconnects with it. Rejects with the
   * server's 401/403 when the token is refused too.
   */
  async setToken(token) {
    this._token = token;
    if (this._mode === 'unauthorized') {
      this._authError = null;
      this._failures = 0;
      if (this._afterAuth === 'http') this._toHttp('new token');
      else {
        this._setMode('connecting', 'authenticating with the new token');
        this._attempt();
      }
      await this._usable(Date.now() + this.options.requestTimeout);
      return;
    }
    const conn = this._conn;
    if (this._mode !== 'websocket' || !conn || !conn.isOpen) return;
    try {
      await this._authenticate(conn);
    } catch (err) {
      if (isAuthFailure(err)) this._unauthorized(err, 'rejected');
      throw err;
    }
  }

  // --- transports ------------------------------------------------------------------------------

  _start() {
    if (this._mode !== 'idle' || this._badProject) return;
    const o = this.options;
    if (o.transport === 'http' || !o.websocketUrl || !o.WebSocket) {
      const reason = o.transport === 'http' ? 'HTTP requested' : 'no websocket available';
      this._setMode('http', reason);
      return;
    }
    this._setMode('connecting', 'opening the websocket');
    this._attempt();
  }

  get _canProbe() {
    const o = this.options;
    return o.transport === 'auto' && Boolean(o.websocketUrl && o.WebSocket);
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
      if (this._token) await this._authenticate(conn);
      return conn;
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  async _authenticate(conn) {
    const reply = await conn.send('authenticate', {}, this._headers());
    if (reply.status !== 200) {
      throw replyError(reply.status, reply.body, { action: 'authenticate', transport: 'websocket' });
    }
  }

  async _attempt() {
    const token = this._token;
    let conn;
    try {
      conn = await this._open();
    } catch (err) {
      if (this._mode !== 'connecting') return; // closed, or unauthorized meanwhile
      if (isAuthFailure(err) && token !== this._token) {
        this._schedule(() => this._attempt(), 0); // refused an older token: try the new one
        return;
      }
      if (isAuthFailure(err)) {
        this._unauthorized(err, 'rejected'); // NOTE: not the network's fault: no retry, no fallback
        return;
      }
      this._failures += 1;
      if (this.options.transport === 'auto' && this._failures >= this.options.maxFailures) {
        this._fallback(`websocket unreachable (${err.message})`);
      } else {
        const why = this._failures > 1 ? `cannot reach the websocket (${err.message}), retrying` : null;
        this._setMode('connecting', why || this._reason);
        this._schedule(() => this._attempt(), this._backoff.next());
      }
      return;
    }
    this._adopt(conn);
  }

  async _probe() {
    const token = this._token;
    let conn;
    try {
      conn = await this._open();
    } catch (err) {
      const waiting = this._mode === 'http' || this._mode === 'offline';
      if (waiting && isAuthFailure(err) && token === this._token) this._unauthorized(err, 'rejected');
      else if (waiting) this._schedule(() => this._probe(), this._probeBackoff.next());
      return;
    }
    this._adopt(conn);
  }

  _adopt(conn) {
    const busy = this._mode === 'websocket' && this._conn; // e.g. two probes raced
    if (busy || this._mode === 'closed' || this._mode === 'unauthorized') {
      conn.close();
      return;
    }
    clearTimeout(this._timer);
    if (this._mode === 'http' || this._mode === 'offline') this._drops = []; // a fresh start after a probe
    this._failures = 0;
    this._conn = conn;
    this._adopted(conn);
    conn.addEventListener('push', (event) => this._onPush(event.detail));
    conn.addEventListener('close', (event) => this._onClose(conn, event.detail));
    this._setMode('websocket', `connected to ${conn.url}`);
  }

  _onClose(conn, { code, reason }) {
    if (conn !== this._conn || this._mode === 'closed') return;
    this._conn = null;
    if (code === 4003) {
      // The server's token expiry (websocket.md §8.1): reconnecting with the same token is pointless.
      const expired = new ZaqarError(reason || 'Authentication expired.', {
        status: 401,
        action: 'authenticate',
        transport: 'websocket',
      });
      this._unauthorized(expired, 'expired');
      return;
    }
    const now = Date.now();
    if (now - conn.openedAt >= this.options.stableAfter) {
      this._backoff.reset();
      this._probeBackoff.reset(); // NOTE: only here: a websocket that drops soon after each probe
    } //                             keeps being probed less and less often, up to probeInterval
    // NOTE: 1009 (a request too large for the server) is that request's error, not a flaky link.
    if (code !== 1009) {
      this._drops = this._drops.filter((t) => now - t < this.options.dropWindow);
      this._drops.push(now);
    }
    if (this.options.transport === 'auto' && this._drops.length >= this.options.maxDrops) {
      this._fallback(
        `websocket keeps dropping (${this._drops.length} times in ${this.options.dropWindow / 1000} s)`,
      );
      return;
    }
    const why =
      code === 4000 && reason ? `websocket stopped answering (${reason})` : `websocket closed (code ${code})`;
    this._setMode('connecting', `${why}, reconnecting`);
    this._schedule(() => this._attempt(), this._backoff.next());
  }

  _fallback(reason) {
    if (!this._http) {
      this._setMode('connecting', `${reason}; no HTTP URL to fall back to`);
      this._schedule(() => this._attempt(), this._backoff.next());
      return;
    }
    this._toHttp(reason);
  }

  /** Carry calls over HTTP, and try the websocket again soon when that is allowed. */
  _toHttp(reason, probeAfter = null) {
    this._setMode('http', reason);
    if (!this._canProbe) return;
    this._schedule(() => this._probe(), probeAfter ?? this._probeBackoff.next());
  }

  /** The token was refused or expired: stop, fail calls with `error` and tell the page. */
  _unauthorized(error, reason) {
    if (this._mode === 'unauthorized') return; // e.g. several HTTP calls refused at once
    this._authError = error;
    this._afterAuth = this._mode === 'http' || this._mode === 'offline' ? 'http' : 'websocket';
    clearTimeout(this._timer);
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close(1000, 'unauthorized');
    const what = reason === 'expired' ? 'token expired' : 'token refused';
    this._setMode('unauthorized', `${what}: ${error.message}`);
    this.dispatchEvent(new CustomEvent('unauthorized', { detail: { reason, error } }));
  }

  /** An HTTP call got no answer: neither transport reaches the server. */
  _unreachable(err) {
    if (this._mode !== 'http') return;
    this._setMode('offline', `the server does not answer over HTTP either (${err.message})`);
  }

  /** An HTTP call got an answer: back from 'offline', and try the websocket at once. */
  _reachable() {
    if (this._mode === 'offline') this._toHttp('the server answers again', 0);
  }

  _schedule(fn, ms) {
    clearTimeout(this._timer);
    this._timer = setTimeout(fn, ms);
  }

  _setMode(mode, reason) {
    const changed = mode !== this._mode || reason !== this._reason;
    this._mode = mode;
    this._reason = reason;
    if (SETTLED.has(mode)) {
      for (const wake of this._waiters) wake();
      this._waiters.clear();
    }
    if (changed) {
      this.dispatchEvent(new CustomEvent('transport', { detail: { transport: mode, reason } }));
      this._transportChanged(mode);
    }
  }

  // Hooks for ZaqarClient: a new websocket is in use; a pushed notification; the mode changed.
  _adopted() {}

  _onPush() {}

  _transportChanged() {}

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
      if (this._mode === 'unauthorized') throw this._authError;
      if (this._mode === 'http' || this._mode === 'offline') return this._http;
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
    if (this._token) headers['X-Auth-Token'] = this._token;
    return headers;
  }

  // --- requests --------------------------------------------------------------------------------

  /** What the server would refuse anyway, refused at once and alike on both transports (or null). */
  _refuse(action, params) {
    if (this._badProject) return this._badProject;
    if ('queue_name' in params) {
      const bad = checkQueueName(params.queue_name, action);
      if (bad) return bad;
    }
    if (action === 'message_delete_many' && Array.isArray(params.message_ids) && !params.message_ids.length) {
      // NOTE: HTTP drops an empty `ids` from the URL and would answer about a missing `pop` instead.
      const max = this.options.pageSize;
      const text = `ids parameter should have at least 1 and not greater than ${max} values.`;
      return invalid(text, null, action);
    }
    if (action === 'message_post') {
      const max = this.options.maxPostSize;
      // NOTE: the server's measure over the websocket: UTF-8 bytes of the compact JSON of `messages`.
      if (new TextEncoder().encode(JSON.stringify(params.messages)).length > max)
        return invalid(`Message collection size is too large. Max size ${max}`, null, action);
    }
    return null;
  }

  /**
   * Send one action; resolves with `{status, body, transport}` (websocket shapes) whatever the status.
   *
   * A request whose connection was lost before the reply is sent again on the
   * next one, unless it is in UNSAFE and may have run: it then rejects with
   * status 0 and `sent: true`, and the caller decides.
   */
  async request(action, params = {}) {
    const refused = this._refuse(action, params);
    if (refused) throw refused;
    this._start();
    const deadline = Date.now() + this.options.requestTimeout;
    for (;;) {
      const transport = await this._usable(deadline, action);
      const overHttp = transport === this._http;
      const token = this._token;
      let reply;
      try {
        reply = await transport.send(action, params, this._headers());
      } catch (err) {
        if (!(err instanceof ZaqarError) || err.status !== 0) throw err;
        if (overHttp) this._unreachable(err);
        const unsafe = UNSAFE.has(action) && err.sent;
        if (unsafe || Date.now() >= deadline) throw err;
        if (overHttp) await sleep(Math.min(500, deadline - Date.now()));
        continue;
      }
      if (overHttp) {
        this._reachable();
        // NOTE: only a refusal of the current token: one sent before setToken() says nothing of it.
        if (reply.status === 401 && token === this._token) {
          const refused = replyError(401, reply.body, { action: 'authenticate', transport: 'http' });
          this._unauthorized(refused, 'rejected');
        }
      }
      return { ...reply, transport: overHttp ? 'http' : 'websocket' };
    }
  }

  /** Like request(), but rejects with a ZaqarError for error statuses. */
  async call(action, params = {}) {
    const reply = await this.request(action, params);
    // NOTE: stats of an unknown queue are zeros with 404 over the websocket, 200 over HTTP.
    if (reply.status >= 400 && !(action === 'queue_get_stats' && reply.status === 404)) {
      throw replyError(reply.status, reply.body, { action, transport: reply.transport });
    }
    return reply;
  }
}
