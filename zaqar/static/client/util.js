// Helpers shared by the transports and the client: errors, input checks, ids, back-off.

// Headings for statuses whose answer carries none (websocket replies, the client's own checks).
const TITLES = {
  0: 'No answer from the server',
  400: 'Invalid API request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Resource conflict',
  500: 'Internal server error',
  503: 'Service temporarily unavailable',
};

/**
 * What every failed call rejects with, whichever transport carried it.
 *
 * `status` is the HTTP-style status the server answered (400, 404, 503, ...),
 * or 0 when no answer came (connection lost, timeout, network down). `title`
 * is a short heading (HTTP's own; over the websocket, which sends none, the
 * usual one for the status) and `description` (also `message`) the human
 * sentence; `body` is `{title, description}` on both transports. `sent` says
 * whether the request may have reached the server, which decides whether
 * retrying it is safe.
 */
export class ZaqarError extends Error {
  constructor(message, { status = 0, title = null, action = null, transport = null, sent = true } = {}) {
    super(message);
    this.name = 'ZaqarError';
    this.status = status;
    this.title = title || TITLES[status] || `Error ${status}`;
    this.description = message;
    this.body = { title: this.title, description: message };
    this.action = action;
    this.transport = transport;
    this.sent = sent;
  }
}

const text = (value) => (typeof value === 'string' && value ? value : null);

/**
 * The ZaqarError for an error reply, from any of the server's body shapes.
 *
 * HTTP sends `{title, description}`, Keystone `{error: {title, message}}`, the
 * websocket `{error}`, `{exception, error}` or a bare sentence
 * (limits-and-errors.md §5, §6).
 */
export function replyError(status, body, { action = null, transport = null } = {}) {
  let title = null;
  let sentence = text(body);
  if (body && typeof body === 'object') {
    const nested = body.error && typeof body.error === 'object' ? body.error : {};
    title = text(body.title) || text(nested.title);
    sentence = text(body.description) || text(body.exception) || text(nested.message) || text(body.error);
  }
  return new ZaqarError(sentence || title || `request failed with status ${status}`, {
    status,
    title,
    action,
    transport,
  });
}

/** A 400 the client answers itself, before sending anything. */
export const invalid = (message, title, action = null) =>
  new ZaqarError(message, { status: 400, title, action, sent: false });

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
// Printable ASCII: what an HTTP header carries unchanged, so both transports see the same id.
const PROJECT_ID = /^[!-~]([ -~]{0,254}[!-~])?$/;

export const isQueueName = (name) => typeof name === 'string' && QUEUE_NAME.test(name);

const shown = (value) => JSON.stringify(String(value).slice(0, 80));

/** The error for a queue name the server cannot accept (limits-and-errors.md §2), or null. */
export function checkQueueName(name, action = null) {
  if (isQueueName(name)) return null;
  return invalid(
    `Invalid queue name ${shown(name)}: use 1 to 64 ASCII letters, digits, underscores, dashes and dots.`,
    'Invalid queue identification',
    action,
  );
}

/** The error for a project id that both transports cannot carry alike, or null. */
export function checkProjectId(id) {
  if (typeof id === 'string' && PROJECT_ID.test(id)) return null;
  return invalid(
    `Invalid project id ${shown(id)}: use 1 to 256 printable ASCII characters, ` +
      'not starting or ending with a space.',
    'Invalid project id',
  );
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
