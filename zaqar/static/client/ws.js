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
 * without one (the server answers `authenticate` and undecodable frames with an
 * empty echo) settles the oldest request still waiting. A frame is a reply
 * only when it has both `request` and `headers` (§4, §9.3); anything else is a
 * pushed notification, which may arrive between a request and its reply.
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
    // id -> {action, resolve, reject, timer, settled}; a Map keeps send order for the id-less replies.
    this._pending = new Map();
    this._closed = false;
    this.openedAt = null;
  }

  get isOpen() {
    return this.openedAt !== null && !this._closed;
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
   * first, or none arrived within `timeout` ms.
   */
  send(action, body, headers) {
    if (!this.isOpen) {
      return Promise.reject(new ZaqarError('websocket is not open', { action, sent: false }));
    }
    const id = String(this._nextId++);
    const reply = deferred();
    const entry = { action, resolve: reply.resolve, reject: reply.reject, settled: false, timer: null };
    entry.timer = setTimeout(() => {
      // NOTE: the entry stays until its late reply arrives, so that reply cannot settle another request.
      entry.settled = true;
      reply.reject(new ZaqarError(`no reply to ${action} within ${this._timeout} ms`, { action }));
    }, this._timeout);
    this._pending.set(id, entry);
    this._socket.send(JSON.stringify({ action, headers: { ...headers, [REQUEST_ID]: id }, body }));
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
    if (!entry.settled) {
      entry.resolve({ status: doc.headers.status, body: doc.body });
    }
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    const wasOpen = this.openedAt !== null;
    for (const entry of this._pending.values()) {
      clearTimeout(entry.timer);
      if (!entry.settled) {
        entry.reject(
          new ZaqarError(`websocket closed before the reply to ${entry.action}`, {
            action: entry.action,
            transport: 'websocket',
            sent: true,
          }),
        );
      }
    }
    this._pending.clear();
    if (this._socket) {
      this._socket.onopen = this._socket.onmessage = this._socket.onclose = null;
    }
    this.dispatchEvent(new CustomEvent('close', { detail: { code, reason, wasOpen } }));
  }
}
