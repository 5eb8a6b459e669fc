// zaqar browser client: the Messaging API v2 over a websocket, with a transparent REST fallback.
//
//   import { ZaqarClient } from './zaqar.js';
//   const zaqar = new ZaqarClient({ websocketUrl: 'ws://127.0.0.1:9000/', httpUrl: 'http://127.0.0.1:8888',
//                                   projectId: 'demo' });
//   await zaqar.postMessage('jobs', { task: 'resize' });
//   const watch = await zaqar.watch('jobs', (message) => console.log(message.id, message.body));
//
// Every operation returns a promise in the same shape whichever transport
// carried it; failures reject with a ZaqarError (see util.js). Transport
// rules, options and events: link.js.

import { DEFAULTS, Link } from './link.js';
import { ZaqarError, checkProjectId, invalid, isQueueName, replyError } from './util.js';
import { Watch } from './watch.js';

export { DEFAULTS, ZaqarError, Watch, checkProjectId, isQueueName };

/** The operations of one project, over the transport `Link` picks. */
export class ZaqarClient extends Link {
  constructor(options = {}) {
    super(options);
    this._watches = new Set();
    this._bindings = new Map(); // queue -> {conn, at, promise of the subscription id}
  }

  /** Close the websocket, stop every watch and timer; later calls reject. */
  close() {
    for (const watch of [...this._watches]) watch.stop();
    super.close();
  }

  _adopted() {
    this._bindings.clear(); // the server deleted the old connection's subscriptions with it
  }

  _transportChanged(mode) {
    for (const watch of this._watches) watch.transportChanged(mode);
  }

  // --- queues ----------------------------------------------------------------------------------

  /** One page of queue names (and metadata with `detailed`), after `marker`, sorted by name. */
  async listQueues({ marker, limit, detailed } = {}) {
    const { body } = await this.call('queue_list', { marker, limit, detailed });
    return body.queues;
  }

  /** Every queue of the project, in pages of `pageSize`. */
  async allQueues({ detailed } = {}) {
    const all = [];
    const limit = this.options.pageSize;
    for (let marker; ;) {
      const page = await this.listQueues({ marker, limit, detailed });
      all.push(...page);
      if (page.length < limit) return all;
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

  /**
   * A webhook or mailto subscription; resolves with its id, also when it existed already.
   *
   * NOTE: the server answers a duplicate with 409 over the websocket (and over
   * HTTP once confirmed), but with 201 and the existing id over HTTP; the
   * existing one is looked up, so both transports resolve with its id.
   */
  async subscribe(queue, { subscriber, ttl, options } = {}) {
    const action = 'subscription_create';
    if (typeof subscriber !== 'string' || !subscriber)
      throw invalid('Missing parameter subscriber in body.', null, action);
    const reply = await this.request(action, { queue_name: queue, subscriber, ttl, options });
    if (reply.status === 409) {
      const existing = await this._findSubscription(queue, subscriber);
      if (existing) return existing.id;
    }
    if (reply.status >= 400) {
      throw replyError(reply.status, reply.body, { action, transport: reply.transport });
    }
    return reply.body.subscription_id;
  }

  async _findSubscription(queue, subscriber) {
    const limit = this.options.pageSize;
    for (let marker; ;) {
      const page = await this.listSubscriptions(queue, { marker, limit });
      const found = page.find((s) => s.subscriber === subscriber);
      if (found || page.length < limit) return found || null;
      marker = page[page.length - 1].id;
    }
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
   * Call `onMessage(message)` for every message posted to `queue`, once each, as it becomes available.
   *
   * That is post order, except on a delayed queue (`_default_message_delay`),
   * where a message comes when its delay has passed. `since`: 'now' (default:
   * messages posted from here on), 'start' (every message in the queue first)
   * or a message id to resume after. Resolves with the Watch once started;
   * `watch.stop()` ends it.
   */
  async watch(queue, onMessage, options = {}) {
    const refused = this._refuse('message_list', { queue_name: queue });
    if (refused) throw refused;
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
      throw replyError(reply.status, reply.body, { action: 'subscription_create', transport: 'websocket' });
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
