// Unit tests of the browser client: the same call gives the same result over both transports,
// input the server would refuse is refused at once, listings use full pages, delayed queues.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { ZaqarError } from '../../zaqar/static/client/util.js';
import { FakeZaqar, advance, newClient, settle } from './fakes.mjs';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

const TRANSPORTS = ['websocket', 'http'];

async function connected(transport, server = new FakeZaqar(), options = {}) {
  const client = newClient(server, { transport, ...options });
  await client.connect();
  return { server, client };
}

const sentAnything = (server) => server.frames.length + server.requests.length > 0;

describe('input the server would refuse is refused at once, alike on both transports', () => {
  for (const transport of TRANSPORTS) {
    test(`queue names that cannot exist (${transport})`, async () => {
      const { server, client } = await connected(transport);
      for (const name of ['a/b', '', 'x'.repeat(65), 'é', 'a b', '..%2F']) {
        const error = await client.createQueue(name).catch((e) => e);
        assert.ok(error instanceof ZaqarError, name);
        assert.equal(error.status, 400);
        assert.equal(error.title, 'Invalid queue identification');
        assert.match(error.description, /^Invalid queue name ".*": use 1 to 64 ASCII letters, digits/);
        assert.equal(error.sent, false);
        await assert.rejects(client.listMessages(name), (e) => e.status === 400);
        await assert.rejects(client.watch(name, () => {}), (e) => e.status === 400);
      }
      assert.equal(sentAnything(server), false, 'nothing reached the server');
      assert.equal(await client.createQueue('a-b_c.9'), true, 'a valid name still works');
    });

    test(`project ids that one transport could not carry (${transport})`, async () => {
      const server = new FakeZaqar();
      for (const project of ['项目', ' lead', 'trail ', 'x'.repeat(257), 'tab\there']) {
        const client = newClient(server, { transport, projectId: project });
        const error = await client.listQueues().catch((e) => e);
        assert.equal(error.status, 400, project);
        assert.equal(error.title, 'Invalid project id');
        assert.match(error.description, /^Invalid project id ".*": use 1 to 256 printable ASCII characters/);
        await assert.rejects(client.connect(), (e) => e.status === 400);
      }
      assert.equal(server.sockets.length + server.requests.length, 0, 'no connection was even opened');
      const fine = newClient(server, { transport, projectId: 'x'.repeat(256) });
      assert.deepEqual(await fine.listQueues(), []);
    });
  }
});

describe('the same call gives the same result over both transports', () => {
  test('deleting an empty list of ids is refused with the same text on both transports', async () => {
    const texts = [];
    for (const transport of TRANSPORTS) {
      const { server, client } = await connected(transport);
      const error = await client.deleteMessages('q', []).catch((e) => e);
      texts.push([error.status, error.description]);
      assert.equal(sentAnything(server), false);
    }
    assert.deepEqual(texts, [
      [400, 'ids parameter should have at least 1 and not greater than 20 values.'],
      [400, 'ids parameter should have at least 1 and not greater than 20 values.'],
    ]);
  });


  test('queue metadata is what was stored: HTTP\'s filled-in reserved defaults are left out', async () => {
    const results = {};
    for (const transport of TRANSPORTS) {
      const { client } = await connected(transport);
      await client.createQueue('q', { a: 1, _default_message_ttl: 600 });
      results[transport] = [await client.getQueue('q'), await client.listQueues({ detailed: true })];
    }
    assert.deepEqual(results.http, results.websocket);
    assert.deepEqual(results.http, [
      { a: 1, _default_message_ttl: 600 },
      [{ name: 'q', metadata: { a: 1, _default_message_ttl: 600 } }],
    ]);
  });

  test('errors carry the same status, title, description and body on both transports', async () => {
    const errors = {};
    for (const transport of TRANSPORTS) {
      const { client } = await connected(transport);
      await client.createQueue('q');
      const error = await client.getMessage('q', 'nope').catch((e) => e);
      errors[transport] = { ...error, message: error.message, transport: undefined };
    }
    assert.deepEqual(errors.http, errors.websocket);
    assert.equal(errors.http.status, 404);
    assert.equal(errors.http.title, 'Not found');
    assert.equal(errors.http.description, 'Message nope does not exist in queue q for project p1');
    assert.deepEqual(errors.http.body, { title: 'Not found', description: errors.http.description });
  });

  for (const transport of TRANSPORTS) {
    test(`subscribing the same subscriber twice resolves with the existing id (${transport})`, async () => {
      const { client } = await connected(transport);
      const hook = 'https://hooks.example.com/q';
      const first = await client.subscribe('q', { subscriber: hook, ttl: 600 });
      assert.equal(await client.subscribe('q', { subscriber: hook, ttl: 600 }), first);
      assert.notEqual(await client.subscribe('q', { subscriber: `${hook}/2` }), first);
      await assert.rejects(client.subscribe('q', {}), (e) => e.status === 400 && e.sent === false);
    });
  }
});

describe('listings use the largest page the server allows', () => {
  for (const transport of TRANSPORTS) {
    test(`allQueues pages by 20 (${transport})`, async () => {
      const server = new FakeZaqar();
      for (let i = 0; i < 45; i += 1) server.messages(`q${String(i).padStart(2, '0')}`);
      const { client } = await connected(transport, server);
      assert.equal((await client.allQueues()).length, 45);
      const limits =
        transport === 'http'
          ? server.requests.map((r) => [r.query.limit, r.query.marker])
          : server.frames.map((f) => [String(f.body.limit), f.body.marker]);
      assert.deepEqual(limits, [
        ['20', undefined],
        ['20', 'q19'],
        ['20', 'q39'],
      ]);
    });
  }
});

describe('watching a delayed queue', () => {
  for (const transport of TRANSPORTS) {
    test(`a message whose delay outlasts a later one's comes when it is available, once (${transport})`, async () => {
      const { server, client } = await connected(transport, new FakeZaqar(), { pollInterval: 1000 });
      await client.createQueue('d', { _default_message_delay: 3 });
      const seen = [];
      await client.watch('d', (m) => seen.push(m.body), { since: 'start' });
      await settle();
      await client.postMessage('d', 'delayed-A'); // the queue's delay: 3 s
      await client.postMessage('d', 'plain-B', { delay: 0 });
      await advance(mock.timers, 1000);
      assert.deepEqual(seen, ['plain-B']);
      await advance(mock.timers, 3000);
      assert.deepEqual(seen, ['plain-B', 'delayed-A'], 'delivered once its delay passed');
      await client.postMessage('d', 'plain-C', { delay: 0 });
      await advance(mock.timers, 40000, 500);
      assert.deepEqual(seen, ['plain-B', 'delayed-A', 'plain-C'], 'each once, in order of availability');
      if (transport === 'websocket') assert.equal(server.requests.length, 0);
    });
  }

  test('a queue without delays is pulled from the marker alone', async () => {
    const { server, client } = await connected('http', new FakeZaqar(), { pollInterval: 1000 });
    await client.createQueue('plain');
    await client.watch('plain', () => {}, { since: 'start' });
    server.post('plain', [1, 2]);
    await advance(mock.timers, 3000);
    const lists = server.requests.filter((r) => r.path.endsWith('/messages'));
    assert.ok(lists.every((r) => r.query.include_delayed === undefined), 'one listing per pull');
  });
});
