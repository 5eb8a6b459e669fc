// One websocket connection to zaqar: requests matched to their replies, pushes handed on.

import { ZaqarError, deferred } from './util.js';

/**
 * The envelope header that correlates a reply with its request.
 *
 * The server echoes every request's headers in its reply (websocket.md §4) and
 * ignores header names it does not know (§3), so this id comes back untouched.
 */
export const REQUEST_ID = 'X-Zaqar-Request-ID';

/**
 * A single connection: `open()` once, `send()` many times, then it closes for good.
 *
 * Reconnecting is the client's job (a new WsConnection each time), so a reply
 * can never be matched to a request of an earlier connection.
 *
 * Events (EventTarget): `push` (detail: the notification document) for every
 * frame that is not a reply, and `close` (detail: {code, reason, wasOpen})
 * once, however the connection ended.
 *
 * Matching: replies come one per request, in request order (websocket.md §1).
 * A reply carrying our REQUEST_ID settles exactly that request; a reply
 * without one (the server answers `authenticate` and frames it cannot read
 * with an empty echo) settles the oldest request still waiting. A frame is a
 * reply only when it has both `request` and `headers` (§4, §9.3); anything
 * else is a pushed notification, which may arrive between a request and its reply.
 *
 * Liveness: a request left unanswered for `timeout` ms means the connection
 * is dead (a proxy or NAT that stalls without closing): since replies keep
 * request order none can follow, so the connection closes (code 4000) rather
 * than let every later call time out too; waiting requests fail with it.
 */
export class WsConnection extends EventTarget {
  constructor(url, { WebSocket = globalThis.WebSocket, timeout = 10000, connectTimeout = 4000 } = {}) {
    super();
    this.url = url;
    this._WebSocket = WebSocket;
    this._timeout = timeout;
    this._connectTimeout = connectTimeout;
    this._socket = null;
    this._nextId = 1;
    // id -> {action, size, resolve, reject, timer}; a Map keeps send order for the id-less replies.
    this._pending = new Map();
    this._closed = false;
    this.openedAt = null;
  }

  get isOpen() {
    return this.openedAt !== null && !this._closed;
  }

  /** How many requests wait for their reply. */
  get waiting() {
    return this._pending.size;
  }

  /** Resolves once the socket is open; rejects if it closes, errs or takes longer than connectTimeout. */
  open() {
    const opened = deferred();
    let socket;
    try {
      socket = new this._WebSocket(this.url);
    } catch (err) {
      // e.g. a malformed URL, or ws:// from an https page (mixed content) in some browsers
      this._closed = true;
      return Promise.reject(new ZaqarError(`cannot open ${this.url}: ${err.message}`, { sent: false }));
    }
    this._socket = socket;
    const timer = setTimeout(() => {
      opened.reject(
        new ZaqarError(`no websocket connection to ${this.url} after ${this._connectTimeout} ms`, {
          sent: false,
        }),
      );
      this.close(4000, 'connect timeout');
    }, this._connectTimeout);
    socket.onopen = () => {
      clearTimeout(timer);
      this.openedAt = Date.now();
      opened.resolve();
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onerror = () => {}; // always followed by close, which carries the outcome
    socket.onclose = (event) => {
      clearTimeout(timer);
      opened.reject(new ZaqarError(`websocket ${this.url} closed before opening`, { sent: false }));
      this._finish(event.code, event.reason);
    };
    return opened.promise;
  }

  /**
   * Send one request envelope; resolves with `{status, body}` whatever the status.
   *
   * Rejects (status 0) only when no reply can come: the connection closed
   * first, or none arrived within `timeout` ms (which closes the connection).
   * The one exception: the server closed with 1009 (message too big), and
   * the largest request waiting then fails with status 400.
   */
  send(action, body, headers) {
    if (!this.isOpen) {
      return Promise.reject(
        new ZaqarError('websocket is not open', { action, transport: 'websocket', sent: false }),
      );
    }
    const id = String(this._nextId++);
    const frame = JSON.stringify({ action, headers: { ...headers, [REQUEST_ID]: id }, body });
    const reply = deferred();
    const entry = { action, size: frame.length, resolve: reply.resolve, reject: reply.reject, timer: null };
    entry.timer = setTimeout(() => {
      const why = `no reply to ${action} within ${this._timeout} ms`;
      this._pending.delete(id);
      reply.reject(new ZaqarError(why, { action, transport: 'websocket' }));
      this.close(4000, why);
    }, this._timeout);
    this._pending.set(id, entry);
    this._socket.send(frame);
    return reply.promise;
  }

  close(code = 1000, reason = '') {
    if (this._socket && this._socket.readyState <= 1) {
      try {
        this._socket.close(code, reason);
      } catch {
        this._socket.close();
      }
    }
    // The browser's close event may come much later (closing handshake); settle callers now.
    this._finish(code, reason);
  }

  _receive(data) {
    let doc;
    try {
      doc = JSON.parse(data);
    } catch {
      return; // binary (MessagePack) frames are never asked for by this client
    }
    if (doc === null || typeof doc !== 'object') return;
    if (!('request' in doc && 'headers' in doc)) {
      this.dispatchEvent(new CustomEvent('push', { detail: doc }));
      return;
    }
    const echoed = doc.request && doc.request.headers ? doc.request.headers[REQUEST_ID] : undefined;
    let id = echoed;
    if (id === undefined) {
      id = this._pending.keys().next().value; // the oldest waiting: replies come in order
    }
    const entry = id === undefined ? undefined : this._pending.get(id);
    if (entry === undefined) return; // a reply to nothing we are waiting for
    this._pending.delete(id);
    clearTimeout(entry.timer);
    entry.resolve({ status: doc.headers.status, body: doc.body });
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    const wasOpen = this.openedAt !== null;
    const entries = [...this._pending.values()];
    this._pending.clear();
    // NOTE: 1009: the server refused a frame as too large; the largest one waiting is the culprit.
    const culprit = code === 1009 ? entries.reduce((a, b) => (b.size > a.size ? b : a), entries[0]) : null;
    for (const entry of entries) {
      clearTimeout(entry.timer);
      const { action } = entry;
      if (entry === culprit) {
        const why = 'The websocket server refused this request as too large (close code 1009).';
        const title = 'Request too large';
        entry.reject(new ZaqarError(why, { status: 400, title, action, transport: 'websocket' }));
      } else {
        const why = `websocket closed before the reply to ${action}`;
        entry.reject(new ZaqarError(why, { action, transport: 'websocket', sent: true }));
      }
    }
    if (this._socket) {
      this._socket.onopen = this._socket.onmessage = this._socket.onclose = null;
    }
    this.dispatchEvent(new CustomEvent('close', { detail: { code, reason, wasOpen } }));
  }
}
