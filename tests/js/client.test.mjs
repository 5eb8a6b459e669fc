// Unit tests of the browser client (zaqar/static/client/): matching, reconnect, fallback, watching.
// Run with `node --test tests/js/`; tests/js/test_node.py runs them under pytest.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { HttpTransport } from '../../zaqar/static/client/http.js';
import { Backoff, ZaqarError } from '../../zaqar/static/client/util.js';
import { REQUEST_ID, WsConnection } from '../../zaqar/static/client/ws.js';
import { FakeZaqar, HTTP_URL, WS_URL, advance, newClient, settle, within } from './fakes.mjs';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

async function openConnection(server, options) {
  const conn = new WsConnection(WS_URL, { WebSocket: server.WebSocket, ...options });
  await conn.open();
  return conn;
}

describe('request/response matching over one socket', () => {
  test('replies settle their own request, whatever their order, with pushes in between', async () => {
    const server = new FakeZaqar();
    server.hold = () => true;
    const conn = await openConnection(server);
    const pushes = [];
    conn.addEventListener('push', (e) => pushes.push(e.detail));
    const calls = ['q1', 'q2', 'q3'].map((q) =>
      conn.send('message_list', { queue_name: q }, { 'Client-ID': 'c' }),
    );
    const [a, b, c] = server.held;
    const push = (n) =>
      server.sockets[0].deliver({ body: n, ttl: 60, queue_name: 'q9', Message_Type: 'Notification' });
    push(1);
    c.socket.deliver({ ...c.reply, body: 'third' });
    push(2);
    a.socket.deliver({ ...a.reply, body: 'first' });
    b.socket.deliver({ ...b.reply, body: 'second' });
    const replies = await Promise.all(calls);
    assert.deepEqual(
      replies.map((r) => r.body),
      ['first', 'second', 'third'],
    );
    assert.deepEqual(
      pushes.map((p) => p.body),
      [1, 2],
    );
    assert.deepEqual(
      server.frames.map((f) => f.headers[REQUEST_ID]),
      ['1', '2', '3'],
    );
  });

  test('a reply without our id (authenticate echoes no headers) settles the oldest waiting request', async () => {
    const server = new FakeZaqar();
    server.hold = () => true;
    const conn = await openConnection(server);
    const first = conn.send('authenticate', {}, { 'X-Auth-Token': 't' });
    const second = conn.send('message_list', { queue_name: 'q' }, {});
    const [auth, list] = server.held;
    auth.socket.deliver({
      ...auth.reply,
      request: { action: 'authenticate', body: {}, headers: {}, api: 'v2' },
    });
    list.socket.deliver(list.reply);
    assert.equal((await first).status, 200);
    assert.deepEqual((await second).body, { messages: [] });
  });

  test('a request left unanswered closes the connection: nothing stays waiting, no late reply is taken', async () => {
    const server = new FakeZaqar();
    server.hold = () => true; // a proxy that went silent: frames go in, nothing comes back
    const conn = await openConnection(server, { timeout: 1000 });
    const closes = [];
    conn.addEventListener('close', (e) => closes.push([e.detail.code, e.detail.reason]));
    const first = conn.send('queue_list', {}, {});
    const second = conn.send('message_list', { queue_name: 'q' }, {});
    const outcomes = Promise.allSettled([first, second]);
    await advance(mock.timers, 1000);
    const [a, b] = await outcomes;
    assert.match(a.reason.message, /^no reply to queue_list within 1000 ms$/);
    assert.equal(a.reason.status, 0);
    assert.match(b.reason.message, /closed before the reply to message_list/);
    assert.deepEqual(closes, [[4000, 'no reply to queue_list within 1000 ms']]);
    assert.equal(conn.isOpen, false);
    assert.equal(conn.waiting, 0, 'no timed-out entry left behind');
    assert.equal(server.sockets[0].readyState, 3, 'the socket itself is closed');
    await assert.rejects(conn.send('queue_list', {}, {}), (err) => err.sent === false);
  });

  test('closing rejects every waiting request with status 0', async () => {
    const server = new FakeZaqar();
    server.hold = () => true;
    const conn = await openConnection(server);
    const waiting = conn.send('message_post', { queue_name: 'q', messages: [] }, {});
    server.sockets[0].drop();
    await assert.rejects(waiting, (err) => err.status === 0 && err.sent === true);
  });
});

describe('reconnecting', () => {
  test('back-off doubles up to its cap, with jitter within [d/2, d]', () => {
    const fixed = new Backoff({ base: 100, max: 1000, random: () => 1 });
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map(() => fixed.next()),
      [100, 200, 400, 800, 1000, 1000],
    );
    fixed.reset();
    assert.equal(fixed.next(), 100);
    const low = new Backoff({ base: 100, max: 1000, random: () => 0 });
    assert.deepEqual(
      [1, 2].map(() => low.next()),
      [50, 100],
    );
  });

  test('a dropped socket is reopened after the back-off delay, and waiting calls then go through', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { transport: 'websocket', requestTimeout: 60000 });
    assert.equal(await client.connect(), 'websocket');
    server.connect = 'refuse';
    server.sockets[0].drop();
    await settle();
    assert.equal(client.transport, 'connecting');
    const call = client.createQueue('jobs');
    await advance(mock.timers, 99);
    assert.equal(server.sockets.length, 1, 'no reconnect before the first delay');
    await advance(mock.timers, 1);
    assert.equal(server.sockets.length, 2, 'first retry after 100 ms');
    await advance(mock.timers, 199);
    assert.equal(server.sockets.length, 2);
    await advance(mock.timers, 1);
    assert.equal(server.sockets.length, 3, 'second retry 200 ms later');
    server.connect = 'open';
    await advance(mock.timers, 400);
    assert.equal(client.transport, 'websocket');
    assert.equal(await call, true);
    assert.equal(server.requests.length, 0, 'never fell back: transport is websocket');
  });

  test('a call whose reply was lost is sent again on the next connection when that is safe', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { transport: 'websocket' });
    await client.connect();
    server.post('q', ['a']);
    server.hold = () => true;
    const listing = client.listMessages('q');
    const posting = client.postMessage('q', 'b');
    const postFailed = assert.rejects(posting, (err) => err.status === 0 && err.sent);
    await settle();
    server.hold = null;
    server.sockets[0].drop();
    await advance(mock.timers, 100);
    assert.deepEqual(
      (await listing).map((m) => m.body),
      ['a', 'b'],
      'the listing is answered',
    );
    assert.equal(
      server.frames.filter((f) => f.action === 'message_list').length,
      2,
      'sent on both connections',
    );
    await postFailed; // the post may have been stored (here it was): not repeated behind the caller's back
    assert.equal(server.frames.filter((f) => f.action === 'message_post').length, 1);
  });

  test('a connection that stayed up resets the back-off', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { transport: 'websocket', stableAfter: 5000 });
    await client.connect();
    for (let i = 0; i < 3; i += 1) {
      server.sockets.at(-1).drop();
      await advance(mock.timers, 100 * 2 ** i); // 100, 200, 400: each drop came right after opening
    }
    assert.equal(server.sockets.length, 4);
    await advance(mock.timers, 5000);
    server.sockets.at(-1).drop();
    await advance(mock.timers, 100);
    assert.equal(server.sockets.length, 5, 'back to the first delay after a stable connection');
  });
});

describe('falling back to HTTP', () => {
  test('a websocket that cannot be opened: the same calls go over HTTP, and the client says why', async () => {
    const server = new FakeZaqar();
    server.connect = 'refuse';
    const client = newClient(server);
    const changes = [];
    client.addEventListener('transport', (e) => changes.push(e.detail.transport));
    const created = client.createQueue('jobs');
    await advance(mock.timers, 100);
    assert.equal(client.transport, 'http');
    assert.match(client.transportReason, /websocket unreachable/);
    assert.deepEqual(changes, ['connecting', 'http']);
    assert.equal(await created, true);
    const ids = await client.postMessages('jobs', [{ body: 1 }, { body: 2 }]);
    assert.deepEqual(ids, ['000000000000000000000001', '000000000000000000000002']);
    assert.deepEqual(
      server.requests.map((r) => `${r.method} ${r.path}`),
      ['PUT /v2/queues/jobs', 'POST /v2/queues/jobs/messages'],
    );
    assert.equal(server.requests[1].headers['Client-ID'], client.clientId);
    assert.equal(server.requests[1].headers['X-Project-ID'], 'p1');
  });

  test('a websocket that never answers counts as failing after connectTimeout', async () => {
    const server = new FakeZaqar();
    server.connect = 'hang';
    const client = newClient(server, { connectTimeout: 3000, maxFailures: 1 });
    const mode = client.connect();
    await advance(mock.timers, 2990);
    assert.equal(client.transport, 'connecting');
    assert.equal(await within(mock.timers, mode, 10), 'http');
  });

  test('a websocket that keeps dropping: HTTP after maxDrops within dropWindow', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { maxDrops: 3, dropWindow: 60000 });
    await client.connect();
    server.sockets.at(-1).drop();
    await advance(mock.timers, 100);
    server.sockets.at(-1).drop();
    await advance(mock.timers, 200);
    assert.equal(client.transport, 'websocket', 'two drops: still reconnecting');
    server.sockets.at(-1).drop();
    await settle();
    assert.equal(client.transport, 'http');
    assert.match(client.transportReason, /keeps dropping/);
  });

  test('drops spread wider than dropWindow never fall back', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { maxDrops: 3, dropWindow: 10000 });
    await client.connect();
    for (let i = 0; i < 5; i += 1) {
      server.sockets.at(-1).drop();
      await advance(mock.timers, 6000);
      assert.equal(client.transport, 'websocket');
    }
  });

  test('from HTTP the client probes the websocket after 1 s, 2 s, 4 s ... up to probeInterval', async () => {
    const server = new FakeZaqar();
    server.connect = 'refuse';
    const client = newClient(server, { probeInterval: 4000 });
    assert.equal(await within(mock.timers, client.connect()), 'http');
    const probes = () => server.sockets.length - 2; // the two failed connects before falling back
    await advance(mock.timers, 990);
    assert.equal(probes(), 0);
    for (const [wait, count] of [[10, 1], [2000, 2], [4000, 3], [4000, 4]]) {
      await advance(mock.timers, wait);
      assert.equal(probes(), count, `probe ${count}`);
    }
    server.connect = 'open';
    await advance(mock.timers, 3900);
    assert.equal(client.transport, 'http');
    await advance(mock.timers, 100);
    assert.equal(client.transport, 'websocket');
    await client.createQueue('back');
    assert.equal(server.frames.at(-1).action, 'queue_create');
  });

  test("transport 'http' never opens a websocket", async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { transport: 'http' });
    assert.equal(await client.connect(), 'http');
    await client.createQueue('q');
    assert.equal(server.sockets.length, 0);
  });
});

describe('HTTP answers in the websocket shapes', () => {
  test('claims take their id from Location; messages their claim id from the href', async () => {
    const server = new FakeZaqar();
    server.post('q', ['x', 'y']);
    const http = new HttpTransport(HTTP_URL, { fetch: server.fetch });
    const claimed = await http.send('claim_create', { queue_name: 'q', limit: 5 }, {});
    assert.equal(claimed.status, 201);
    assert.equal(claimed.body.claim_id, 'c1');
    assert.deepEqual(
      claimed.body.messages.map((m) => [m.body, m.claim_id, 'href' in m]),
      [
        ['x', 'c1', false],
        ['y', 'c1', false],
      ],
    );
    assert.deepEqual((await http.send('claim_create', { queue_name: 'q' }, {})).body, { claim_id: null });
    const stats = await http.send('queue_get_stats', { queue_name: 'q' }, {});
    assert.equal(stats.body.messages.newest.id, '000000000000000000000002');
    assert.deepEqual(server.requests[0].query, { limit: '5' });
  });
});

describe('watching a queue', () => {
  test('over the websocket: pushed wake-ups deliver each message once, in post order', async () => {
    const server = new FakeZaqar();
    server.post('jobs', ['old']);
    const client = newClient(server);
    const seen = [];
    await client.watch('jobs', (m) => seen.push(m.body));
    await settle();
    assert.ok(server.sockets[0].subscriptions.has('jobs'), 'a connection-bound subscription');
    server.post('jobs', ['a', 'b']);
    await settle();
    server.post('jobs', ['c']);
    server.sockets[0].deliver({ body: 'b', ttl: 3600, queue_name: 'jobs', Message_Type: 'Notification' });
    await settle();
    assert.deepEqual(seen, ['a', 'b', 'c'], "since 'now': the older message is not delivered");
    assert.equal(server.requests.length, 0, 'no HTTP polling');
  });

  test('over the websocket: notifications lost in transit are caught up by the safety pull', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { safetyInterval: 30000 });
    const seen = [];
    await client.watch('jobs', (m) => seen.push(m.body), { since: 'start' });
    await settle(); // subscribed, first pull done
    server.pushes = false;
    server.post('jobs', ['lost']);
    await advance(mock.timers, 29000, 500);
    assert.deepEqual(seen, []);
    await advance(mock.timers, 1000);
    assert.deepEqual(seen, ['lost']);
  });

  test('over HTTP: short polling at pollInterval, each message once, in order, across many pages', async () => {
    const server = new FakeZaqar();
    server.connect = 'refuse';
    const client = newClient(server, { pollInterval: 2000, pageSize: 10 });
    const seen = [];
    assert.equal(await within(mock.timers, client.connect()), 'http');
    await client.watch('jobs', (m) => seen.push(m.body), { since: 'start' });
    await settle(); // the first poll is done
    server.post(
      'jobs',
      Array.from({ length: 25 }, (_, i) => i),
    );
    await advance(mock.timers, 1990);
    assert.deepEqual(seen, []);
    await advance(mock.timers, 10);
    assert.deepEqual(
      seen,
      Array.from({ length: 25 }, (_, i) => i),
    );
    const polls = server.requests.filter((r) => r.path.endsWith('/messages'));
    assert.deepEqual(
      polls.slice(-3).map((r) => r.query.marker),
      [undefined, '000000000000000000000010', '000000000000000000000020'],
      'pages follow the marker',
    );
    assert.deepEqual(polls.at(-1).query, {
      marker: '000000000000000000000020',
      limit: '10',
      echo: 'true',
      include_claimed: 'true',
    });
  });

  test('switching transports mid-watch neither repeats nor skips a message', async () => {
    const server = new FakeZaqar();
    const client = newClient(server, { maxDrops: 1, pollInterval: 1000 });
    const seen = [];
    await client.watch('jobs', (m) => seen.push(m.body), { since: 'start' });
    server.post('jobs', [1, 2]);
    await settle();
    server.connect = 'refuse';
    server.sockets[0].drop(); // one drop is enough with maxDrops 1
    server.post('jobs', [3]);
    await advance(mock.timers, 1000);
    assert.equal(client.transport, 'http');
    server.post('jobs', [4]);
    await advance(mock.timers, 1000);
    server.connect = 'open';
    await advance(mock.timers, 30000, 100); // the probe brings the websocket back
    assert.equal(client.transport, 'websocket');
    server.post('jobs', [5]);
    await settle();
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.ok(server.sockets.at(-1).subscriptions.has('jobs'), 'subscribed again on the new connection');
  });

  test('stopping the last watch of a queue removes its subscription', async () => {
    const server = new FakeZaqar();
    const client = newClient(server);
    const w1 = await client.watch('jobs', () => {});
    const w2 = await client.watch('jobs', () => {});
    await settle();
    w1.stop();
    await settle();
    assert.ok(server.sockets[0].subscriptions.has('jobs'), 'still needed by the second watch');
    w2.stop();
    await settle();
    assert.equal(server.sockets[0].subscriptions.has('jobs'), false);
  });

  test('a callback that throws does not stop delivery of later messages', async () => {
    const server = new FakeZaqar();
    const client = newClient(server);
    const seen = [];
    const errors = [];
    await client.watch(
      'jobs',
      (m) => {
        seen.push(m.body);
        if (m.body === 1) throw new Error('page bug');
      },
      { onError: (e) => errors.push(e.message) },
    );
    server.post('jobs', [1, 2]);
    await settle();
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(errors, ['page bug']);
  });
});
