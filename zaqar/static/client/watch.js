// Watching a queue: every message posted to it handed to a callback once, as it becomes available.

const SEEN_MAX = 10000; // ids remembered beyond the marker of a delayed queue

// HTTP calls carry on while the server is unreachable ('offline'): the same polling goes on.
const family = (mode) => (mode === 'offline' ? 'http' : mode);

/**
 * A live view of one queue's new messages, over whichever transport the client uses.
 *
 * The watch keeps a marker (the id of the last message delivered) and pulls
 * `message_list` pages after it, so each message is delivered exactly once
 * and in post order however the pulls are triggered:
 *
 * - over the websocket, a connection-bound subscription makes the server push
 *   a notification per posted message (websocket.md §9); a push only wakes
 *   the watch up, because notifications carry no message id and may arrive
 *   out of order. A slow safety pull (`safetyInterval`) covers notifications
 *   lost in transit, which the server delivers best-effort;
 * - over HTTP (the fallback), it pulls every `pollInterval` ms.
 *
 * Pulls never overlap: a wake-up during a pull makes one more pull afterwards.
 * Message markers stay valid after their message is deleted or expires
 * (http-v2.md §0.7), so nothing is skipped or repeated across reconnects.
 *
 * A delayed queue (`_default_message_delay`, checked every `safetyInterval`)
 * makes messages available out of post order (http-v2.md §4.9), so a marker
 * alone would skip a message whose delay outlasts a later one's. There the
 * marker stops before the first message still delayed, and the ids delivered
 * beyond it are remembered (at most SEEN_MAX). No push announces the end of
 * a delay, so while a message waits the watch pulls every `pollInterval`
 * over the websocket too.
 */
export class Watch {
  constructor(client, queue, onMessage, { since = 'now', includeClaimed = true, onError = null } = {}) {
    this.client = client;
    this.queue = queue;
    this.marker = null;
    this._onMessage = onMessage;
    this._onError = onError || ((err) => client.dispatchEvent(new CustomEvent('error', { detail: err })));
    this._since = since;
    this._includeClaimed = includeClaimed;
    this._active = false;
    this._family = null;
    this._timer = null;
    this._pulling = null;
    this._again = false;
    this._delayed = false;
    this._checkedAt = -Infinity;
    this._seen = new Set(); // delivered, beyond the marker (delayed queues)
    this._waiting = false; // a delayed message is still to come
    this._recheck = null; // the pull for it, over the websocket
  }

  get active() {
    return this._active;
  }

  /** Resolves once the starting point is known; messages after it are then delivered. */
  async start() {
    if (this._since === 'now') {
      const stats = await this.client.queueStats(this.queue);
      this.marker = stats.newest ? stats.newest.id : null;
    } else {
      this.marker = this._since === 'start' ? null : this._since;
    }
    this._active = true;
    this.transportChanged(this.client.transport);
    return this;
  }

  stop() {
    if (!this._active) return;
    this._active = false;
    clearTimeout(this._timer);
    clearTimeout(this._recheck);
    this.client._forget(this);
  }

  /** Called by the client whenever it changes transport: subscribe or poll, then catch up at once. */
  transportChanged(mode) {
    if (!this._active || family(mode) === this._family) return;
    this._family = family(mode);
    clearTimeout(this._timer);
    this._timer = null;
    if (this._family === 'websocket' || this._family === 'http') this._tick();
  }

  /** A pushed notification for this queue arrived. */
  wake() {
    if (this._active) this.pull();
  }

  async _tick() {
    const mode = family(this.client.transport);
    if (mode === 'websocket') {
      try {
        await this.client._bind(this.queue);
      } catch (err) {
        this._onError(err);
      }
    }
    await this.pull();
    if (this._active && family(this.client.transport) === mode) {
      const { pollInterval, safetyInterval } = this.client.options;
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._tick(), mode === 'websocket' ? safetyInterval : pollInterval);
    }
  }

  /** Fetch and deliver everything after the marker. Returns when caught up. */
  pull() {
    if (this._pulling) {
      this._again = true;
      return this._pulling;
    }
    this._pulling = this._drain().finally(() => {
      this._pulling = null;
    });
    return this._pulling;
  }

  async _drain() {
    try {
      do {
        this._again = false;
        await this._checkDelayed();
        this._waiting = false;
        if (this._delayed) await this._catchUpDelayed();
        else await this._catchUp();
      } while (this._again && this._active);
    } catch (err) {
      if (this._active) this._onError(err);
    }
    if (this._active && this._waiting && !this._recheck && family(this.client.transport) === 'websocket') {
      this._recheck = setTimeout(() => {
        this._recheck = null;
        this.pull();
      }, this.client.options.pollInterval);
    }
  }

  async _checkDelayed() {
    const now = Date.now();
    if (now - this._checkedAt < this.client.options.safetyInterval) return;
    this._checkedAt = now;
    const meta = await this.client.getQueue(this.queue).catch(() => undefined);
    // NOTE: a failed read says nothing: keep what was known. Taken for "no delay", the next
    // catch-up would hand over again what lies past the marker and step over a delayed message.
    if (meta !== undefined) this._delayed = Boolean(meta && meta._default_message_delay);
  }

  _page(marker, includeDelayed) {
    return this.client.listMessages(this.queue, {
      marker: marker ?? undefined,
      limit: this.client.options.pageSize,
      echo: true,
      includeClaimed: this._includeClaimed,
      includeDelayed,
    });
  }

  /** A queue without delays: deliver page after page, moving the marker. */
  async _catchUp() {
    const limit = this.client.options.pageSize;
    for (;;) {
      const page = await this._page(this.marker);
      for (const message of page) {
        if (!this._active) return; // stop() from a callback stops the rest of the page too
        this.marker = message.id;
        this._deliver(message);
      }
      if (page.length < limit) return;
    }
  }

  /** Every message after the marker, delayed ones included when asked. */
  async _all(includeDelayed) {
    const all = [];
    for (let marker = this.marker; ;) {
      const page = await this._page(marker, includeDelayed);
      all.push(...page);
      if (page.length < this.client.options.pageSize) return all;
      marker = page[page.length - 1].id;
    }
  }

  /** A delayed queue: deliver what became available; the marker stops at the first still delayed. */
  async _catchUpDelayed() {
    const all = await this._all(true);
    const available = new Set((await this._all(false)).map((m) => m.id));
    let waiting = false;
    for (const message of all) {
      if (!this._active) return;
      if (!available.has(message.id)) {
        this._waiting = waiting = true;
        continue;
      }
      if (!this._seen.has(message.id)) {
        this._seen.add(message.id);
        this._deliver(message);
      }
      if (!waiting) {
        this.marker = message.id;
        this._seen.delete(message.id);
      }
    }
    // NOTE: ids of messages deleted beyond the marker never come back to be dropped: cap them.
    for (const id of this._seen) {
      if (this._seen.size <= SEEN_MAX) break;
      this._seen.delete(id);
    }
  }

  _deliver(message) {
    try {
      this._onMessage(message, this);
    } catch (err) {
      this._onError(err); // a failing callback must not stop delivery of the next messages
    }
  }
}
