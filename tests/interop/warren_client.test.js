// web/warren.js alone, in Node, against fake WebSocket, EventSource and fetch: the rules of its
// header (resume from the last seq, never twice, fallback order, backoff, operations over the
// WebSocket or HTTP, the saved position) checked one by one, without a browser or a gateway.
'use strict';

const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const Warren = require('../../web/warren.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tick = () => sleep(0);
const URL_ = 'http://gw.test';
// A token whose payload says sub "ann" (the signature is not checked by the client).
const TOKEN = `e30.${Buffer.from('{"sub":"ann"}').toString('base64url')}.sig`;

let sockets; // every FakeWebSocket made, in order
let sources; // every FakeEventSource made
let requests; // every fetch: {url, init, answer(status, body), fail()}

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = false;
    sockets.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close() {
    this.closed = true;
  }

  // test side
  accept() {
    this.onopen();
  }

  push(obj) {
    this.onmessage({ data: JSON.stringify(obj) });
  }

  drop(code = 1006) {
    this.onclose({ code, reason: '' });
  }
}

class FakeEventSource {
  constructor(url) {
    this.url = url;
    sources.push(this);
  }

  close() {
    this.closed = true;
  }

  accept() {
    this.onopen();
  }

  push(obj) {
    this.onmessage({ data: JSON.stringify(obj) });
  }

  fail() {
    this.onerror();
  }
}

function fakeFetch(url, init = {}) {
  return new Promise((resolve, reject) => {
    requests.push({
      url,
      init,
      answer(status, body) {
        resolve({ ok: status >= 200 && status < 300, status, json: async () => body });
      },
      fail() {
        reject(new TypeError('network down'));
      },
    });
    if (init.signal) init.signal.addEventListener('abort', () => reject(new Error('aborted')));
  });
}

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), map: m };
}

function client(extra = {}) {
  const events = [];
  const statuses = [];
  const c = new Warren.Client(Object.assign({
    url: URL_, token: TOKEN, storage: memoryStorage(), backoffBase: 20, backoffMax: 80,
    onEvent: (ev) => events.push(ev), onStatus: (s) => statuses.push(s),
  }, extra));
  return { c, events, statuses };
}

const ev = (seq, type = 'message') => ({ seq, type, room: 'r', from: 'x', data: seq, ts: 1 });
const seqs = (events) => events.map((e) => e.seq);
const since = (url) => new URL(url).searchParams.get('since');

beforeEach(() => {
  sockets = [];
  sources = [];
  requests = [];
  global.WebSocket = FakeWebSocket;
  global.EventSource = FakeEventSource;
  global.fetch = fakeFetch;
});

afterEach(() => {
  delete global.WebSocket;
  delete global.EventSource;
  delete global.fetch;
});

test('delivers each seq once, in order, and saves the position', async () => {
  const { c, events } = client();
  await tick();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, `ws://gw.test/ws?token=${encodeURIComponent(TOKEN)}&since=0`);
  sockets[0].accept();
  for (const s of [5, 6, 6, 7, 5, 8]) sockets[0].push(ev(s));
  assert.deepEqual(seqs(events), [5, 6, 7, 8]);
  assert.equal(c.stats.duplicates, 2);
  assert.equal(c.lastSeq, 8);
  assert.equal(c.user, 'ann');
  assert.equal(c.storage.getItem(`warren.seq ${URL_} ann`), '8');
  c.close();
});

test('transient events are delivered as they come and do not move the position', async () => {
  const { c, events } = client();
  await tick();
  sockets[0].accept();
  sockets[0].push(ev(5));
  sockets[0].push(Object.assign(ev(5, 'presence'), { transient: true }));
  sockets[0].push(Object.assign(ev(5, 'message'), { transient: true, data: 'typing' }));
  sockets[0].push(ev(6));
  assert.deepEqual(events.map((e) => [e.seq, e.transient === true]), [[5, false], [5, true], [5, true], [6, false]]);
  assert.equal(c.stats.duplicates, 0);
  assert.equal(c.storage.getItem(`warren.seq ${URL_} ann`), '6');
  c.close();
});

test('the position is kept in localStorage by default, so it outlives the tab', async () => {
  const storage = memoryStorage();
  storage.setItem(`warren.seq ${URL_} ann`, '77');
  global.localStorage = storage;
  try {
    const c = new Warren.Client({ url: URL_, token: TOKEN, onEvent: () => {} });
    await tick();
    assert.equal(since(sockets[0].url), '77');
    c.close();
  } finally {
    delete global.localStorage;
  }
});

test('markRead and inbox() use the inbox API with the token', async () => {
  const { c } = client();
  const read = c.markRead(9);
  const page = c.inbox(3, 10);
  await tick();
  const [put, get] = requests.filter((r) => r.url.includes('/api/inbox'));
  put.answer(200, { read_seq: 9, unread: 0 });
  get.answer(200, { events: [] });
  assert.deepEqual(await read, { read_seq: 9, unread: 0 });
  assert.deepEqual(await page, { events: [] });
  assert.equal(put.url, `${URL_}/api/inbox/read`);
  assert.equal(put.init.method, 'PUT');
  assert.equal(JSON.parse(put.init.body).seq, 9);
  assert.equal(put.init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(get.url, `${URL_}/api/inbox?since=3&limit=10`);
  c.close();
});

test('a dropped WebSocket is reconnected after a backoff, resuming after the last seq', async () => {
  const { c, events, statuses } = client();
  await tick();
  sockets[0].accept();
  sockets[0].push(ev(10));
  sockets[0].drop();
  const waiting = statuses.at(-1);
  assert.equal(waiting.state, 'waiting');
  assert.ok(waiting.delay >= 10 && waiting.delay <= 20, `first delay ${waiting.delay}`);
  await sleep(30);
  assert.equal(sockets.length, 2, 'the transport that worked is tried again first');
  assert.equal(since(sockets[1].url), '10');
  sockets[1].accept();
  sockets[1].push(ev(10)); // a gateway resending must not show through
  sockets[1].push(ev(11));
  assert.deepEqual(seqs(events), [10, 11]);
  c.close();
});

test('a new client resumes from the stored position (a page reload)', async () => {
  const storage = memoryStorage();
  storage.setItem(`warren.seq ${URL_} ann`, '42');
  const { c, events } = client({ storage });
  await tick();
  assert.equal(since(sockets[0].url), '42');
  sockets[0].accept();
  sockets[0].push(ev(42));
  sockets[0].push(ev(43));
  assert.deepEqual(seqs(events), [43]);
  c.close();
});

test('a reset is delivered, told to onReset, and moves the position', async () => {
  const resets = [];
  const { c, events } = client({ onReset: (r) => resets.push(r) });
  await tick();
  sockets[0].accept();
  sockets[0].push(ev(3));
  const data = { reason: 'dropped', after: 3, missed_to: 90 };
  sockets[0].push({ seq: 90, type: 'reset', room: null, from: null, data });
  sockets[0].push(ev(50)); // below the reset: already counted as lost
  sockets[0].push(ev(91));
  assert.deepEqual(seqs(events), [3, 90, 91]);
  assert.equal(resets.length, 1);
  assert.equal(c.stats.resets, 1);
  c.close();
});

test('a reset about our position below it still counts (a new inbox after the clock went back)', async () => {
  const storage = memoryStorage();
  storage.setItem(`warren.seq ${URL_} ann`, '5000');
  const { c, events } = client({ storage });
  await tick();
  sockets[0].accept();
  sockets[0].push({ seq: 1200, type: 'reset', data: { reason: 'new-inbox', after: 5000, missed_to: 1200 } });
  sockets[0].push(ev(1201));
  sockets[0].push({ seq: 1100, type: 'reset', data: { reason: 'dropped', after: 4000, missed_to: 1100 } });
  assert.deepEqual(seqs(events), [1200, 1201]);
  c.close();
});

test('falls back from WebSocket to SSE to long-poll, then waits', async () => {
  const { c, events, statuses } = client();
  await tick();
  sockets[0].drop(); // never opened
  await tick();
  assert.equal(sources.length, 1, 'SSE right after the WebSocket failed');
  assert.equal(sources[0].url, `${URL_}/sse?token=${encodeURIComponent(TOKEN)}&since=0`);
  sources[0].fail();
  await tick();
  assert.equal(sources[0].closed, true, 'the client, not EventSource, reconnects');
  assert.equal(requests.length, 1, 'long-poll after SSE failed');
  assert.match(requests[0].url, /\/poll\?token=.*&since=0&timeout=0$/);
  requests[0].fail();
  await tick();
  await tick();
  assert.equal(statuses.at(-1).state, 'waiting', 'all three failed: back off');
  await sleep(30);
  assert.equal(sockets.length, 2, 'then the first transport again');
  sockets[1].drop();
  await tick();
  sources[1].accept();
  sources[1].push(ev(7));
  assert.deepEqual(seqs(events), [7]);
  assert.equal(c.transport, 'sse');
  c.close();
});

test('backoff doubles up to backoffMax', async () => {
  const { c, statuses } = client({ transports: ['ws'] });
  for (let i = 0; i < 5; i++) {
    await sleep(i === 0 ? 0 : 90);
    sockets.at(-1).drop();
  }
  const delays = statuses.filter((s) => s.state === 'waiting').map((s) => s.delay);
  const caps = [20, 40, 80, 80, 80];
  delays.forEach((d, i) => assert.ok(d >= caps[i] / 2 && d <= caps[i], `delay ${i}: ${d} for step ${caps[i]}`));
  c.close();
});

test('long-poll: the next poll asks after the last seq and waits', async () => {
  const { c, events } = client({ transports: ['poll'], pollTimeout: 25 });
  await tick();
  requests[0].answer(200, [ev(1), ev(2)]);
  await sleep(5);
  assert.equal(requests.length, 2);
  assert.match(requests[1].url, /since=2&timeout=25$/);
  requests[1].answer(200, [ev(2), ev(3)]);
  await sleep(5);
  assert.deepEqual(seqs(events), [1, 2, 3]);
  assert.match(requests[2].url, /since=3&/);
  c.close();
});

test('operations: over an open WebSocket, with replies matched by id', async () => {
  const { c } = client();
  const joined = c.join('lobby'); // before the socket is open: waits for it
  await tick();
  assert.equal(sockets[0].sent.length, 0);
  sockets[0].accept();
  const op = sockets[0].sent[0];
  assert.deepEqual({ op: op.op, room: op.room }, { op: 'join', room: 'lobby' });
  sockets[0].push({ seq: null, type: 'ok', op: 'join', room: 'lobby', id: op.id });
  await joined;

  const members = c.members('lobby');
  const m = sockets[0].sent[1];
  sockets[0].push({ seq: null, type: 'ok', op: 'members', id: m.id, members: [{ user: 'ann', connections: 1 }] });
  assert.deepEqual(await members, [{ user: 'ann', connections: 1 }]);

  const refused = c.publish('lobby', { text: 'x' });
  const p = sockets[0].sent[2];
  assert.deepEqual(p.data, { text: 'x' });
  sockets[0].push({ seq: null, type: 'error', op: 'publish', code: 403, error: 'not allowed', id: p.id });
  await assert.rejects(refused, (e) => e instanceof Warren.Error && e.code === 403);
  c.close();
});

test('operations in flight when the WebSocket drops: publish rejected, join resent over HTTP', async () => {
  const { c } = client();
  await tick();
  sockets[0].accept();
  const pub = c.publish('lobby', 'hello');
  const join = c.join('other');
  sockets[0].drop();
  await assert.rejects(pub, (e) => e.code === 0 && /may or may not/.test(e.message));
  await tick();
  const http = requests.find((r) => r.url.endsWith('/api/rooms/other/join'));
  assert.ok(http, 'join resent over HTTP');
  assert.equal(http.init.method, 'POST');
  assert.equal(http.init.headers.Authorization, `Bearer ${TOKEN}`);
  http.answer(200, { ok: true });
  await join;
  c.close();
});

test('with SSE, operations are HTTP calls, and errors carry the status', async () => {
  const { c } = client({ transports: ['sse'] });
  await tick();
  sources[0].accept();
  const pub = c.publish('a/b', { n: 1 });
  await tick();
  assert.equal(requests[0].url, `${URL_}/api/rooms/a%2Fb/publish`);
  assert.equal(requests[0].init.body, JSON.stringify({ data: { n: 1 } }));
  requests[0].answer(429, { error: 'rate', reason: 'too many' });
  await assert.rejects(pub, (e) => e.code === 429 && /too many/.test(e.message));
  const members = c.members('x');
  await tick();
  assert.equal(requests[1].init.method, 'GET');
  requests[1].answer(200, { room: 'x', members: [] });
  assert.deepEqual(await members, []);
  c.close();
});

test('after a reconnection the client joins its rooms again', async () => {
  const { c } = client();
  await tick();
  sockets[0].accept();
  c.join('r1');
  c.join('r2');
  c.leave('r2');
  sockets[0].drop();
  await sleep(30);
  sockets[1].accept();
  assert.deepEqual(sockets[1].sent.map((m) => [m.op, m.room]), [['join', 'r1']]);
  c.close();
});

test('a WebSocket that answers nothing is pinged, then dropped', async () => {
  const { c, statuses } = client({ transports: ['ws'], pingInterval: 20, pingTimeout: 20 });
  await tick();
  sockets[0].accept();
  await sleep(45);
  assert.deepEqual(sockets[0].sent.map((m) => m.op), ['ping']);
  await sleep(40);
  assert.equal(sockets[0].closed, true);
  assert.ok(statuses.some((s) => s.state === 'waiting'));
  c.close();
});

test('close() stops everything and rejects what waits', async () => {
  const { c, statuses } = client();
  const joined = c.join('r');
  await tick();
  c.close();
  await assert.rejects(joined, /client closed/);
  assert.equal(sockets[0].closed, true);
  assert.equal(statuses.at(-1).state, 'closed');
  await sleep(30);
  assert.equal(sockets.length, 1);
});
