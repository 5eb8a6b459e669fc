// Unit tests of the browser client when things go wrong: a websocket that stalls, a token refused
// or expired, a server that no transport reaches, a post too large for the server.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { ZaqarError } from '../../zaqar/static/client/util.js';
import { FakeZaqar, advance, newClient, settle, within } from './fakes.mjs';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

/** Never rejects: `{value}` or `{error}`, so a test can advance the clock before looking. */
const outcome = (promise) =>
  promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  );

describe('a websocket that stops answering', () => {
  test('is closed when a call gets no reply in time, and reopened with back-off', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { requestTimeout: 5000 });
    await client.connect();
    server.hold = () => true; // frames go in, nothing comes back
    const call = outcome(client.listQueues());
    await advance(mock.timers, 5000);
    const { error } = await call;
    assert.equal(error.status, 0);
    assert.match(error.message, /no reply to queue_list within 5000 ms/);
    assert.equal(server.sockets[0].readyState, 3, 'the silent connection is closed');
    assert.match(client.transportReason, /websocket stopped answering/);
    server.hold = null;
    await advance(mock.timers, 100); // the first back-off delay
    assert.equal(client.transport, 'websocket');
    assert.equal(server.sockets.length, 2);
    assert.deepEqual(await client.listQueues(), []);
  });

  test('a proxy that stalls for good ends in the HTTP fallback, not in endless timeouts', async () => {
    // The open connection goes silent, and new ones never finish their handshake (s8_blackhole).
    const server = new FakeZaqar();
    const client = newClient(server, { requestTimeout: 5000, connectTimeout: 4000 });
    await client.connect();
    server.hold = () => true;
    server.connect = 'hang';
    const results = [];
    for (let i = 0; i < 3; i += 1) results.push(await within(mock.timers, outcome(client.listQueues()), 20000));
    assert.equal(client.transport, 'http');
    assert.match(client.transportReason, /websocket unreachable/);
    assert.deepEqual(results.at(-1), { value: [] }, 'the third call went through, over HTTP');
    assert.deepEqual(
      server.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /v2/queues'],
    );
  });

  test('after a timeout, a reply without an id settles the live request, not the timed-out one', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { requestTimeout: 1000 });
    await client.connect();
    server.post('q', ['a']);
    server.hold = (doc) => doc.action === 'queue_get_stats'; // its reply never comes
    const stats = outcome(client.queueStats('q'));
    await advance(mock.timers, 1000);
    assert.equal((await stats).error.status, 0);
    server.hold = (doc) => doc.action === 'message_list';
    const listing = outcome(client.listMessages('q'));
    await advance(mock.timers, 100);
    const held = server.held.find((x) => x.reply.request.action === 'message_list');
    // Answered without our id, as the server answers a frame it cannot read: the oldest waiting takes it.
    held.socket.deliver({ ...held.reply, request: { ...held.reply.request, headers: {} } });
    const { value } = await within(mock.timers, listing, 2000);
    assert.deepEqual(
      value.map((m) => m.body),
      ['a'],
    );
  });
});

describe('authentication', () => {
  test('a refused token is an authentication error: no fallback to HTTP, no reconnecting with it', async () => {
    const server = new FakeZaqar();
    server.tokens = new Set(['good']);
    const client = newClient(server, { token: 'bad' });
    const events = [];
    client.addEventListener('unauthorized', (e) => events.push(e.detail.reason));
    const { error } = await outcome(client.createQueue('q'));
    assert.ok(error instanceof ZaqarError);
    assert.equal(error.status, 401);
    assert.equal(error.title, 'Unauthorized');
    assert.equal(error.description, 'Authentication failed.');
    assert.equal(client.transport, 'unauthorized');
    assert.deepEqual(events, ['rejected']);
    await advance(mock.timers, 60000, 500);
    assert.equal(server.sockets.length, 1, 'not reconnecting with the same token');
    assert.equal(server.requests.length, 0, 'not falling back to HTTP');
    const again = await outcome(client.listQueues());
    assert.equal(again.error.status, 401, 'later calls fail at once, with the same error');

    await client.setToken('good');
    assert.equal(client.transport, 'websocket');
    assert.equal(await client.createQueue('q'), true);
    const auth = server.frames.filter((f) => f.action === 'authenticate').at(-1);
    assert.equal(auth.headers['X-Auth-Token'], 'good');
    assert.equal(server.frames.at(-1).headers['X-Auth-Token'], 'good');
  });

  test('setToken() authenticates the open websocket again, on the same connection', async () => {
    const server = new FakeZaqar();
    server.tokens = new Set(['t1', 't2']);
    const client = newClient(server, { token: 't1' });
    await client.connect();
    await client.setToken('t2');
    assert.equal(server.sockets.length, 1);
    assert.deepEqual(
      server.frames.map((f) => [f.action, f.headers['X-Auth-Token']]),
      [
        ['authenticate', 't1'],
        ['authenticate', 't2'],
      ],
    );
    await client.createQueue('q');
    assert.equal(server.frames.at(-1).headers['X-Auth-Token'], 't2');
    server.tokens.delete('t2');
    await assert.rejects(client.setToken('t3'), (err) => err.status === 401);
    assert.equal(client.transport, 'unauthorized');
  });

  test('a websocket closed with 4003 (token expired) tells the page and waits for setToken()', async () => {
    const server = new FakeZaqar();
    server.tokens = new Set(['t1']);
    const client = newClient(server, { token: 't1' });
    const events = [];
    client.addEventListener('unauthorized', (e) => events.push([e.detail.reason, e.detail.error.status]));
    await client.connect();
    server.tokens.delete('t1');
    server.sockets[0].drop(4003);
    await settle();
    assert.deepEqual(events, [['expired', 401]]);
    assert.equal(client.transport, 'unauthorized');
    await advance(mock.timers, 60000, 500);
    assert.equal(server.sockets.length, 1, 'no reconnecting with the expired token');
    assert.equal((await outcome(client.listQueues())).error.status, 401);
    server.tokens.add('t2');
    await client.setToken('t2');
    assert.equal(client.transport, 'websocket');
    assert.equal(server.sockets.length, 2);
    assert.deepEqual(await client.listQueues(), []);
  });

  test('over HTTP a 401 is surfaced with the server text, and polling stops until setToken()', async () => {
    const server = new FakeZaqar();
    server.tokens = new Set(['good']);
    const client = newClient(server, { transport: 'http', token: 'bad', pollInterval: 1000 });
    const errors = [];
    await client.watch('q', () => {}, { since: 'start', onError: (e) => errors.push(e.status) });
    const { error } = await outcome(client.createQueue('jobs'));
    assert.equal(error.status, 401);
    assert.equal(error.description, 'The request you have made requires authentication.');
    assert.equal(client.transport, 'unauthorized');
    const sent = server.requests.length;
    await advance(mock.timers, 10000, 100);
    assert.equal(server.requests.length, sent, 'no request with the refused token meanwhile');
    await client.setToken('good');
    assert.equal(client.transport, 'http');
    assert.equal(await client.createQueue('jobs'), true);
    assert.equal(server.requests.at(-1).headers['X-Auth-Token'], 'good');
    assert.ok(errors.includes(401), 'the watch reported the refusal too');
  });
});

describe('when no transport reaches the server', () => {
  test('the client says so at the first HTTP call without answer, and recovers at the first answer', async () => {
    const server = new FakeZaqar();
    server.connect = 'refuse';
    const client = newClient(server);
    assert.equal(await within(mock.timers, client.connect()), 'http');
    server.httpDown = true;
    const changes = [];
    client.addEventListener('transport', (e) => changes.push(e.detail.transport));
    const call = outcome(client.listQueues());
    await settle();
    assert.equal(client.transport, 'offline');
    assert.match(client.transportReason, /does not answer over HTTP either \(.*Failed to fetch\)/);
    server.httpDown = false;
    server.connect = 'open';
    await advance(mock.timers, 500); // the call tries again
    assert.deepEqual(await call, { value: [] });
    await advance(mock.timers, 10);
    assert.equal(client.transport, 'websocket', 'the websocket was tried at once, not after a probe delay');
    assert.deepEqual(changes, ['offline', 'http', 'websocket']);
  });

  test('a watch keeps polling while offline, and catches up when the server is back', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { transport: 'http', pollInterval: 1000 });
    const seen = [];
    await client.watch('jobs', (m) => seen.push(m.body), { since: 'start' });
    server.httpDown = true;
    await advance(mock.timers, 1000);
    assert.equal(client.transport, 'offline');
    server.httpDown = false;
    server.post('jobs', ['back']);
    await advance(mock.timers, 2000);
    assert.equal(client.transport, 'http');
    assert.deepEqual(seen, ['back']);
  });
});

describe('posts too large for the server', () => {
  for (const transport of ['websocket', 'http']) {
    test(`fail at once with the server's text, nothing sent (${transport})`, async () => {
      const server = new FakeZaqar();
      const client = newClient(server, { transport });
      await client.connect();
      const { error } = await outcome(client.postMessage('q', 'y'.repeat(300000)));
      assert.equal(error.status, 400);
      assert.equal(error.description, 'Message collection size is too large. Max size 262144');
      assert.equal(server.frames.length + server.requests.length, 0);
      assert.equal(client.transport, transport);
    });
  }

  test('a 1009 close fails the request too large, retries the others, and is not a flaky connection', async () => {
    const server = new FakeZaqar();
    server.maxFrame = 2000; // the server's frame cap, below what the client was told it may post
    const client = newClient(server, { maxPostSize: 1e6, maxDrops: 3 });
    await client.connect();
    for (let i = 0; i < 3; i += 1) {
      server.hold = (doc) => doc.action === 'message_list';
      const listing = client.listMessages('q');
      const { error } = await outcome(client.postMessage('q', 'y'.repeat(5000)));
      assert.equal(error.status, 400, 'that request failed, as a client error');
      assert.match(error.message, /too large \(close code 1009\)/);
      server.hold = null;
      await advance(mock.timers, 1000);
      assert.deepEqual(await listing, [], 'the other call was sent again on the next connection');
      assert.equal(client.transport, 'websocket');
    }
    assert.equal(server.requests.length, 0, 'never fell back to HTTP');
  });
});
