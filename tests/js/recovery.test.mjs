// Unit tests of how the browser client recovers from what went wrong meanwhile: a stale token's
// refusal arriving late, a websocket that opens and is cut again and again, a failed metadata read
// on a delayed queue, a watch stopped from its own callback. Each was a bug found in review.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { FakeZaqar, advance, newClient, settle } from './fakes.mjs';

describe('a refusal of a token the page already replaced', () => {
  test('does not lock the client again after setToken()', async () => {
    const server = new FakeZaqar();
    server.tokens = new Set(['old']);
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const fetch = async (url, init) => {
      if (String(url).includes('/stats')) await gate; // this call is slow
      return server.fetch(url, init);
    };
    const client = newClient(server, { transport: 'http', token: 'old', fetch });
    await client.createQueue('q');
    server.tokens = new Set(['new']); // the old token expires
    const events = [];
    client.addEventListener('unauthorized', () => events.push(client.transport));
    const slow = client.queueStats('q').catch((error) => error); // sent with 'old'
    await settle();
    assert.equal((await client.listQueues().catch((error) => error)).status, 401);
    assert.equal(client.transport, 'unauthorized');
    await client.setToken('new');
    release();
    assert.equal((await slow).status, 401); // that call itself was refused, and says so
    await settle();
    assert.equal(client.transport, 'http');
    assert.equal(events.length, 1);
    assert.deepEqual(await client.listQueues(), [{ name: 'q' }]);
    client.close();
  });
});

describe('a websocket that a proxy cuts soon after every opening', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test('is probed less and less often, up to probeInterval', async () => {
    const server = new FakeZaqar();
    const Base = server.WebSocket;
    server.WebSocket = class extends Base {
      constructor(url) {
        super(url);
        queueMicrotask(() => setTimeout(() => this.drop(1006), 300));
      }
    };
    const client = newClient(server);
    const fallbacks = [];
    client.addEventListener('transport', (event) => {
      if (event.detail.transport === 'http') fallbacks.push(Date.now());
    });
    await client.connect();
    await advance(mock.timers, 300_000, 50);
    // NOTE: with the probe back-off reset at every fallback: 233 sockets and 77 fallbacks
    assert.ok(server.sockets.length < 60, `${server.sockets.length} sockets in 5 minutes`);
    const last = fallbacks.slice(-2);
    assert.ok(last[1] - last[0] >= 25_000, `fallbacks ${last[1] - last[0]} ms apart at the end`);
    client.close();
  });
});

for (const transport of ['http', 'websocket']) {
  describe(`watching a delayed queue (${transport})`, () => {
    test('a failed read of the queue changes nothing: no message twice, none lost', async () => {
      const server = new FakeZaqar();
      let failMeta = false;
      const fetch = async (url, init) => {
        if (failMeta && new URL(url).pathname === '/v2/queues/q' && (init.method || 'GET') === 'GET') {
          const body = JSON.stringify({ title: 'Service Unavailable', description: 'storage' });
          return new Response(body, { status: 503 });
        }
        return server.fetch(url, init);
      };
      const answer = server.answer.bind(server);
      server.answer = (document, socket) =>
        failMeta && document.action === 'queue_get'
          ? [503, { exception: 'storage', error: 'x' }]
          : answer(document, socket);
      const client = newClient(server, { transport, fetch, safetyInterval: 0, pollInterval: 3_600_000 });
      await client.createQueue('q', { _default_message_delay: 60 });
      server.post('q', ['A', 'B'], [60, 0]); // A still delayed, B available
      const got = [];
      const watch = await client.watch('q', (message) => got.push(message.body), { since: 'start' });
      await settle();
      assert.deepEqual(got, ['B']);
      failMeta = true;
      await watch.pull();
      failMeta = false;
      assert.deepEqual(got, ['B']); // was ['B', 'B']
      server.messages('q')[0].availableAt = 0; // A's delay has passed
      await watch.pull();
      await watch.pull();
      assert.deepEqual(got, ['B', 'A']); // A was lost
      client.close();
    });

    test('stop() from the callback stops the rest of the page too', async () => {
      const server = new FakeZaqar();
      const client = newClient(server, { transport });
      await client.createQueue('q');
      server.post('q', ['a', 'b', 'c']);
      const got = [];
      await client.watch(
        'q',
        (message, watch) => {
          got.push(message.body);
          watch.stop();
        },
        { since: 'start' },
      );
      await settle();
      assert.deepEqual(got, ['a']);
      client.close();
    });
  });
}
