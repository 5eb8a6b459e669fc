// Helpers shared by the transports and the client: errors, ids, back-off, deadlines.

/**
 * What every failed call rejects with.
 *
 * `status` is the HTTP-style status the server answered (400, 404, 503, ...),
 * or 0 when no answer came (connection lost, timeout, network down). `body`
 * is the server's error document as sent; `sent` says whether the request may
 * have reached the server, which decides whether retrying it is safe.
 */
export class ZaqarError extends Error {
  constructor(message, { status = 0, action = null, body = null, transport = null, sent = true } = {}) {
    super(message);
    this.name = 'ZaqarError';
    this.status = status;
    this.action = action;
    this.body = body;
    this.transport = transport;
    this.sent = sent;
  }
}

/** The human sentence of an error body in any of the server's three shapes (HTTP or websocket). */
export function errorText(body, status) {
  if (typeof body === 'string' && body) return body;
  if (body && typeof body === 'object') {
    const text = body.description || body.exception || body.error || body.title;
    if (typeof text === 'string' && text) return text;
  }
  return `request failed with status ${status}`;
}

/**
 * A random (version 4) UUID for the Client-ID header.
 *
 * `crypto.randomUUID` exists only in secure contexts, and a console opened
 * over plain HTTP on a LAN address is not one; `getRandomValues` works everywhere.
 */
export function uuid4() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Exponential back-off with jitter: base, base*2, base*4 ... capped at `max` (ms).
 *
 * Each delay is drawn from [d/2, d], so many pages that lost the same server
 * do not all come back in the same millisecond.
 */
export class Backoff {
  constructor({ base = 250, max = 10000, factor = 2, random = Math.random } = {}) {
    Object.assign(this, { base, max, factor, random });
    this.attempt = 0;
  }

  next() {
    const ceiling = Math.min(this.max, this.base * this.factor ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling * (0.5 + this.random() / 2));
  }

  reset() {
    this.attempt = 0;
  }
}

/** A promise with its resolve/reject exposed (Promise.withResolvers is not in Node 20). */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
