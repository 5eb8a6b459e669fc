// Watching a queue: every message posted to it handed to a callback once, in post order.

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
    this._timer = null;
    this._pulling = null;
    this._again = false;
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
    this.client._forget(this);
  }

  /** Called by the client whenever it changes transport: subscribe or poll, then catch up at once. */
  transportChanged(mode) {
    if (!this._active) return;
    clearTimeout(this._timer);
    this._timer = null;
    if (mode === 'websocket' || mode === 'http') this._tick();
  }

  /** A pushed notification for this queue arrived. */
  wake() {
    if (this._active) this.pull();
  }

  async _tick() {
    const mode = this.client.transport;
    if (mode === 'websocket') {
      try {
        await this.client._bind(this.queue);
      } catch (err) {
        this._onError(err);
      }
    }
    await this.pull();
    if (this._active && this.client.transport === mode) {
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
    const limit = this.client.options.pageSize;
    try {
      do {
        this._again = false;
        for (;;) {
          const page = await this.client.listMessages(this.queue, {
            marker: this.marker ?? undefined,
            limit,
            echo: true,
            includeClaimed: this._includeClaimed,
          });
          if (!this._active) return;
          for (const message of page) {
            this.marker = message.id;
            this._deliver(message);
          }
          if (page.length < limit) break;
        }
      } while (this._again && this._active);
    } catch (err) {
      if (this._active) this._onError(err);
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
