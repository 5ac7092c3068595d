// The chat demo (web/index.html, web/chat.js on web/warren.js) in two headless Chromium pages against
// the real warren binary: alice and bob chat in a room while a backend publishes to it over HTTP and
// AMQP; alice reloads her page mid-conversation while the others keep sending. Each page must end
// up showing the room's history, then every message exactly once, in each sender's order. Run once
// per transport (WebSocket, SSE alone, long-poll alone), then the fallbacks from a WebSocket (and
// SSE) that cannot connect, a page back after its room membership lapsed or its inbox dropped
// events, and a page opened again after its browser was closed while messages came and the broker
// restarted. Skipped (not failed) where Chromium is not installed.
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const bin = process.env.WARREN_BIN || path.resolve(__dirname, '../../build/warren');

function findChromium() {
  if (process.env.CHROMIUM) return fs.existsSync(process.env.CHROMIUM) ? process.env.CHROMIUM : null;
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
    } catch (e) {
      // not this one
    }
  }
  return null;
}
const chromiumPath = findChromium();
// CTest's SKIP_REGULAR_EXPRESSION matches this text (tests/interop/CMakeLists.txt).
const skip = chromiumPath ? false : 'chromium not found (scripts/install-deps installs Debian\'s chromium)';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Root needs --no-sandbox; a small /dev/shm (containers) would crash tabs.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage'];
const GUEST = `Basic ${Buffer.from('guest:guest').toString('base64')}`;
const WAIT = 30000; // ms for a page to do or show what it should (generous: CI runs it beside ASan builds)

// One warren process on port 0 with the web gateway, its dev tokens and presence events.
// restart() stops it (SIGTERM) and starts it again on the same data dir and the same ports, so
// that pages keep their origin (and their localStorage).
async function startWarren(extra = []) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-chat-'));
  const portsFile = path.join(tmp, 'ports.json');
  const stderr = path.join(tmp, 'stderr.log');
  let proc = null;
  let exited = null;
  let ports = null;
  async function launch(portArgs) {
    try {
      fs.unlinkSync(portsFile);
    } catch (e) {
      // the first start
    }
    proc = spawn(bin, [...portArgs, '--prometheus-port', '0', '--bind', '127.0.0.1',
                       '--workers', '2', '--data-dir', path.join(tmp, 'data'), '--ports-file', portsFile,
                       '--jwt-secret', 'chat-test-secret-0123456789abcdef', '--web-dev-tokens',
                       '--room-presence-events', ...extra],
                 { stdio: ['ignore', 'ignore', fs.openSync(stderr, 'a')] });
    let spawnError = null;
    proc.on('error', (e) => {
      spawnError = e; // e.g. no binary at WARREN_BIN
    });
    const p = proc;
    exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 10000;
    ports = null;
    while (!ports) {
      if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message} (set WARREN_BIN or build it)`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`warren exited (${proc.exitCode ?? proc.signalCode}) before writing its ports file: ${bin}\n`
                        + fs.readFileSync(stderr, 'utf8'));
      }
      if (Date.now() > deadline) throw new Error('warren did not write its ports file');
      try {
        ports = JSON.parse(fs.readFileSync(portsFile, 'utf8'));
      } catch (e) {
        await sleep(20);
      }
    }
  }
  await launch(['--amqp-port', '0', '--http-port', '0', '--web-port', '0']);
  assert.ok(ports.web > 0, `ports file has no web port: ${JSON.stringify(ports)}`);
  const page = await fetch(`http://127.0.0.1:${ports.web}/warren.js`);
  if (page.status !== 200) {
    proc.kill('SIGTERM');
    await exited;
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(`${bin} serves no /warren.js (${page.status}): it was built without this tree's web/ files`);
  }
  const stop = async () => {
    proc.kill('SIGTERM');
    const { code } = await exited;
    return code;
  };
  return {
    base: `http://127.0.0.1:${ports.web}`,
    amqpUrl: `amqp://guest:guest@127.0.0.1:${ports.amqp}`,
    async restart() {
      const code = await stop();
      assert.equal(code, 0, `warren must exit 0 on SIGTERM\n${fs.readFileSync(stderr, 'utf8').slice(-3000)}`);
      await launch(['--amqp-port', String(ports.amqp), '--http-port', String(ports.http), '--web-port',
                    String(ports.web)]);
    },
    async stop() {
      const code = await stop();
      const log = fs.readFileSync(stderr, 'utf8');
      fs.rmSync(tmp, { recursive: true, force: true });
      assert.equal(code, 0, `warren must exit 0 on SIGTERM\n${log.slice(-3000)}`);
    },
  };
}

// A backend sending to a room: over the HTTP API (basic auth) or AMQP (exchange warren.rooms), both
// with from = "server". AMQP publishes wait for the broker's confirm so their order is kept.
class Backend {
  constructor(server) {
    this.server = server;
  }

  async http(room, text) {
    const res = await fetch(`${this.server.base}/api/rooms/${encodeURIComponent(room)}/publish`, {
      method: 'POST',
      headers: { Authorization: GUEST, 'Content-Type': 'application/json' },
      body: JSON.stringify({ data: { text }, from: 'server' }),
    });
    assert.equal(res.status, 200, `backend publish: ${res.status} ${await res.text()}`);
  }

  async amqp(room, text) {
    if (!this.channel) {
      const amqp = require('amqplib');
      this.conn = await amqp.connect(this.server.amqpUrl);
      this.channel = await this.conn.createConfirmChannel();
    }
    await new Promise((resolve, reject) => {
      this.channel.publish('warren.rooms', room, Buffer.from(JSON.stringify({ text })),
                           { contentType: 'application/json', headers: { from: 'server' } },
                           (err) => (err ? reject(err) : resolve()));
    });
  }

  async close() {
    if (this.conn) await this.conn.close();
  }
}

// --- the page, seen through its DOM as a person would ---

const openPages = new Set(); // for diagnostics when a test fails, and closing what it left open
const shortUrl = (url) => url.replace(/token=[^&]+/, 'token=T');

class ChatPage {
  constructor(page, user) {
    this.page = page;
    this.user = user;
    this.errors = [];
    this.log = []; // console messages and failed requests
    this.inflight = new Map(); // request -> when it started
    openPages.add(this);
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (e) => this.errors.push(e.message));
    page.on('console', (m) => this.log.push(`console ${m.type()}: ${shortUrl(m.text())}`));
    page.on('request', (r) => this.inflight.set(r, Date.now()));
    page.on('requestfinished', (r) => this.inflight.delete(r));
    page.on('requestfailed', (r) => {
      this.inflight.delete(r);
      this.log.push(`failed: ${r.method()} ${shortUrl(r.url())}: ${r.failure() && r.failure().errorText}`);
    });
  }

  async diagnose() {
    let status = '?';
    try {
      status = await this.page.textContent('#status', { timeout: 1000 });
    } catch (e) {
      // the page is gone or elsewhere
    }
    const now = Date.now();
    const open = [...this.inflight].map(([r, t]) => `${r.method()} ${shortUrl(r.url())} (${now - t} ms)`);
    return [`--- ${this.user}: status "${status}", url ${shortUrl(this.page.url())}`,
            `requests in flight: ${open.join(', ') || 'none'}`, ...this.log.slice(-20)].join('\n');
  }

  static async open(browser, base, user, query = '') {
    const context = await browser.newContext();
    const page = new ChatPage(await context.newPage(), user);
    await page.page.goto(`${base}/${query}`);
    await page.page.fill('#name', user);
    await page.page.click('#login button[type=submit]');
    await page.page.waitForSelector('#chat:not([hidden])');
    return page;
  }

  async join(room) {
    await this.page.fill('#room-name', room);
    await this.page.click('#join button[type=submit]');
    await this.page.waitForSelector(`#rooms li.current[data-room="${room}"]`);
  }

  async send(text) {
    await this.page.fill('#text', text);
    await this.page.click('#send button[type=submit]');
    // chat.js clears the box once the gateway acknowledged, or shows why not.
    await this.page.waitForFunction(() => document.getElementById('text').value === ''
                                        || document.getElementById('send-error').textContent !== '');
    assert.equal(await this.page.textContent('#send-error'), '', `${this.user} could not send ${text}`);
  }

  async status() {
    return this.page.$eval('#status', (el) => ({ state: el.dataset.state, transport: el.dataset.transport }));
  }

  async waitOpen() {
    await this.page.waitForSelector('#status[data-state="open"]', { timeout: WAIT });
  }

  async shown() {
    return this.page.$$eval('#messages li', (lis) => lis.map((li) => (li.dataset.seq === undefined
      ? { note: li.textContent }
      : { seq: Number(li.dataset.seq), type: li.dataset.type, from: li.dataset.from,
          text: li.querySelector('.text').textContent })));
  }

  async waitShown(texts) {
    try {
      await this.page.waitForFunction((want) => {
        const have = new Set([...document.querySelectorAll('#messages li[data-seq] .text')].map((e) => e.textContent));
        return want.every((t) => have.has(t));
      }, texts, { timeout: WAIT });
    } catch (e) {
      const have = new Set((await this.shown()).map((m) => m.text));
      throw new Error(`${this.user} never showed ${texts.filter((t) => !have.has(t)).join(' ')}\n${e.message}`);
    }
  }

  async waitUsers(users) {
    await this.page.waitForFunction((want) => {
      const have = [...document.querySelectorAll('#users li')].map((li) => li.textContent);
      return want.every((u) => have.includes(u));
    }, users, { timeout: WAIT });
  }

  async close() {
    openPages.delete(this);
    await this.page.context().close();
  }
}

// A test body whose failure message ends with what its pages were doing, and which closes the
// pages it left open.
function diagnosed(body) {
  return async () => {
    try {
      await body();
    } catch (e) {
      const notes = [];
      for (const p of openPages) notes.push(await p.diagnose());
      // Node prints the stack, made when the error was: add the notes to both.
      e.message += `\n${notes.join('\n')}`;
      if (typeof e.stack === 'string') e.stack += `\n${notes.join('\n')}`;
      throw e;
    } finally {
      for (const p of [...openPages]) await p.close().catch(() => {});
    }
  };
}

// What a page shows must be: the history first, then each expected message once, seqs increasing,
// and each sender's messages in the order sent.
function checkTranscript(who, shown, history, senders) {
  const msgs = shown.filter((m) => m.note === undefined);
  const texts = msgs.map((m) => m.text);
  const twice = texts.filter((t, i) => texts.indexOf(t) !== i);
  assert.deepEqual(twice, [], `${who} shows messages twice`);
  for (let i = 1; i < msgs.length; i++) {
    assert.ok(msgs[i].seq > msgs[i - 1].seq, `${who}: seq ${msgs[i].seq} after ${msgs[i - 1].seq}`);
  }
  assert.deepEqual(msgs.slice(0, history.length).map((m) => [m.type, m.text]),
                   history.map((t) => ['history', t]), `${who}: the room's history comes first`);
  const live = msgs.slice(history.length);
  assert.ok(live.every((m) => m.type === 'message'), `${who}: only messages after the history`);
  const expected = Object.values(senders).flatMap((s) => s.texts);
  assert.deepEqual([...texts.slice(history.length)].sort(), [...expected].sort(), `${who}: what was sent, no more`);
  for (const [prefix, s] of Object.entries(senders)) {
    const got = live.filter((m) => m.text.startsWith(prefix));
    assert.deepEqual(got.map((m) => m.text), s.texts, `${who}: ${prefix} messages in the order sent`);
    assert.ok(got.every((m) => m.from === s.from), `${who}: ${prefix} messages are from ${s.from}`);
  }
}

describe('chat demo in Chromium', { skip }, () => {
  let chromium;
  let browser;
  let server;

  before(async () => {
    ({ chromium } = require('playwright-core'));
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    server = await startWarren();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  // alice and bob chat in a room (history of three backend messages before they join); alice
  // reloads while bob and the backend keep sending, then everyone sends some more.
  async function conversation(label, query, transport) {
    const room = `room-${label}`;
    const alice = `alice-${label}`;
    const bob = `bob-${label}`;
    const backend = new Backend(server);
    const history = ['h1', 'h2', 'h3'].map((h) => `${h}-${label}`);
    for (const h of history) await backend.http(room, h);

    const senders = { a: { from: alice, texts: [] }, b: { from: bob, texts: [] },
                      sh: { from: 'server', texts: [] }, sq: { from: 'server', texts: [] } };
    const say = async (who, page, n) => {
      const text = `${who}${n}-${label}`;
      senders[who].texts.push(text);
      if (who === 'sh') await backend.http(room, text);
      else if (who === 'sq') await backend.amqp(room, text);
      else await page.send(text);
    };

    const a = await ChatPage.open(browser, server.base, alice, query);
    await a.join(room);
    await a.waitShown(history);
    const b = await ChatPage.open(browser, server.base, bob, query);
    await b.join(room);
    await b.waitShown(history);
    await a.waitOpen();
    await b.waitOpen();
    assert.equal((await a.status()).transport, transport);
    assert.equal((await b.status()).transport, transport);
    await a.waitUsers([alice, bob]);
    await b.waitUsers([alice, bob]);

    for (let i = 1; i <= 4; i++) {
      await say('a', a, i);
      await say('b', b, i);
      await say('sh', null, i);
      await say('sq', null, i);
    }
    await a.waitShown(senders.b.texts);

    // The reload: alice's new page holds chat.js back for a moment, so that these messages are
    // certainly sent while she has no connection at all.
    await a.page.route('**/chat.js', async (r) => {
      await sleep(700);
      await r.fallback();
    });
    const reloading = a.page.reload();
    for (let i = 5; i <= 8; i++) {
      await say('b', b, i);
      await say('sh', null, i);
      await say('sq', null, i);
    }
    await reloading;
    await a.page.unroute('**/chat.js');
    await a.waitOpen();
    for (let i = 5; i <= 7; i++) {
      await say('a', a, i);
      await say('b', b, i + 4);
      await say('sq', null, i + 4);
    }

    const all = Object.values(senders).flatMap((s) => s.texts);
    await a.waitShown(all);
    await b.waitShown(all);
    await sleep(500); // duplicates would arrive now
    checkTranscript(alice, await a.shown(), history, senders);
    checkTranscript(bob, await b.shown(), history, senders);
    assert.deepEqual(a.errors, [], 'no script errors on alice\'s page');
    assert.deepEqual(b.errors, [], 'no script errors on bob\'s page');
    assert.equal((await a.status()).transport, transport, 'alice reconnected with the same transport');
    await backend.close();
    await a.close();
    await b.close();
  }

  test('WebSocket: history, live messages, a reload with nothing lost or twice', diagnosed(async () => {
    await conversation('ws', '', 'ws');
  }));

  test('SSE alone: the same', diagnosed(async () => {
    await conversation('sse', '?transports=sse', 'sse');
  }));

  test('long-poll alone: the same', diagnosed(async () => {
    await conversation('poll', '?transports=poll', 'poll');
  }));

  // The page's WebSocket (or EventSource) is pointed at a path the gateway does not serve, so it
  // fails as one refused by a proxy would; the client must go on with the next transport.
  async function fallback(user, broken, transport) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.addInitScript((names) => {
      for (const name of names) {
        const Real = window[name];
        window[name] = function (url, ...rest) {
          return new Real(String(url).replace(/\/(ws|sse)\?/, '/no-such-transport?'), ...rest);
        };
        window[name].prototype = Real.prototype;
      }
    }, broken);
    const c = new ChatPage(page, user);
    await page.goto(`${server.base}/`);
    await page.fill('#name', user);
    await page.click('#login button[type=submit]');
    await c.join(`fallback-${transport}`);
    await c.waitOpen();
    assert.equal((await c.status()).transport, transport);
    await c.send(`over ${transport}`);
    await c.waitShown([`over ${transport}`]);
    assert.deepEqual(c.errors, []);
    await c.close();
  }

  test('a WebSocket that cannot connect falls back to SSE', diagnosed(async () => {
    await fallback('carol', ['WebSocket'], 'sse');
  }));

  test('with neither WebSocket nor SSE it falls back to long-poll', diagnosed(async () => {
    await fallback('dave', ['WebSocket', 'EventSource'], 'poll');
  }));
});

// A gateway that forgets quickly: a user's rooms outlive its last connection by 5 s (long enough
// for a page to go away and come back on a loaded machine; the gateway looks once a second), and an
// inbox holds 8 events.
describe('chat demo in Chromium, when messages were missed', { skip }, () => {
  let browser;
  let server;

  before(async () => {
    const { chromium } = require('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    server = await startWarren(['--inbox-linger', '5', '--inbox-size', '8']);
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  // chat.js's note for a reset: "Some messages were missed (why)", the why told by data.reason.
  const missedNote = (page, why) => page.page.waitForFunction(
    (text) => [...document.querySelectorAll('#messages li.note')].some((li) => li.textContent === text),
    `Some messages were missed (${why}).`, { timeout: WAIT });

  test('back after the membership lapsed: what the inbox held, the rest from the history, once', diagnosed(async () => {
    const a = await ChatPage.open(browser, server.base, 'dora');
    const b = await ChatPage.open(browser, server.base, 'eve');
    await a.join('away');
    await b.join('away');
    await a.waitOpen();
    await b.send('before');
    await a.waitShown(['before']);
    await a.page.goto('about:blank'); // the same tab: sessionStorage stays
    await sleep(300);
    await b.send('while away 1');
    await sleep(6500); // dora's membership lingers 5 s (+1 s at most), then goes; her inbox stays
    await b.send('while away 2');
    await a.page.goto(`${server.base}/`);
    await a.waitOpen();
    // Her inbox held 'while away 1' (she was still a member): no reset. Joining again brings the
    // history, of which only what was not shown before ('while away 2') is added.
    await a.waitShown(['before', 'while away 1', 'while away 2']);
    await b.send('after');
    await a.waitShown(['after']);
    await sleep(300);
    const shownNow = await a.shown();
    const texts = shownNow.filter((m) => m.text !== undefined).map((m) => m.text);
    assert.deepEqual(texts, ['before', 'while away 1', 'while away 2', 'after']);
    assert.ok(!shownNow.some((m) => m.note && m.note.startsWith('Some messages were missed')), 'no reset');
    await a.waitUsers(['dora', 'eve']); // asked again once she was a member again
    assert.deepEqual(a.errors, []);
    await a.close();
    await b.close();
  }));

  test('back after the inbox dropped events: a reset, a note, what it held', diagnosed(async () => {
    const a = await ChatPage.open(browser, server.base, 'fay');
    await a.join('crowd');
    await a.waitOpen();
    const backend = new Backend(server);
    await backend.http('crowd', 'c0');
    await a.waitShown(['c0']);
    await a.page.goto('about:blank');
    for (let i = 1; i <= 12; i++) await backend.http('crowd', `c${i}`);
    await a.page.goto(`${server.base}/`); // well within the linger: the inbox and membership stay
    await a.waitOpen();
    await missedNote(a, 'too many arrived while you were away');
    await a.waitShown(['c12']);
    await sleep(300);
    const shown = await a.shown();
    const texts = shown.filter((m) => m.text !== undefined).map((m) => m.text);
    // The inbox held its last 8 events: c5 to c12.
    assert.deepEqual(texts, ['c0', 'c5', 'c6', 'c7', 'c8', 'c9', 'c10', 'c11', 'c12']);
    const note = shown.findIndex((m) => m.note && m.note.startsWith('Some messages were missed'));
    const c5 = shown.findIndex((m) => m.text === 'c5');
    assert.ok(note > texts.indexOf('c0') && note < c5, 'the note stands at the gap');
    assert.deepEqual(a.errors, []);
    await a.close();
  }));
});

// Durable inboxes (docs/web-api.md, "Inboxes"): gina closes her browser; while it is closed hal and
// a backend write to the room, the backend sends to her directly, the broker restarts, and the
// backend sends once more. She opens her browser again (its localStorage restored, as a browser
// keeps it across a restart of its own): everything is there, once.
describe('chat demo in Chromium, across a closed browser and a broker restart', { skip }, () => {
  let browser;
  let server;

  before(async () => {
    const { chromium } = require('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    server = await startWarren();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  async function direct(user, text) {
    const res = await fetch(`${server.base}/api/send`, {
      method: 'POST',
      headers: { Authorization: GUEST, 'Content-Type': 'application/json' },
      body: JSON.stringify({ user, data: { text }, from: 'server' }),
    });
    assert.equal(res.status, 200, `backend send: ${res.status} ${await res.text()}`);
  }

  test('what arrived while the browser was closed is there when it opens again', diagnosed(async () => {
    const a = await ChatPage.open(browser, server.base, 'gina');
    const b = await ChatPage.open(browser, server.base, 'hal');
    await a.join('meet');
    await b.join('meet');
    await a.waitOpen();
    await b.send('hello');
    await a.waitShown(['hello']);
    const saved = await a.page.context().storageState();
    await a.close(); // the whole browser context: no connection of gina's is left

    const backend = new Backend(server);
    await b.send('while closed');
    await backend.http('meet', 'backend while closed');
    await direct('gina', 'direct while closed');
    await server.restart();
    await direct('gina', 'direct after restart');
    await b.waitOpen();
    await b.join('meet'); // hal's page joins again after the restart anyway: acknowledged
    await b.send('after restart');

    const context = await browser.newContext({ storageState: saved });
    const again = new ChatPage(await context.newPage(), 'gina');
    await again.page.goto(`${server.base}/`);
    await again.waitOpen();
    const room = ['hello', 'while closed', 'backend while closed', 'after restart'];
    await again.waitShown(room);
    await sleep(500); // duplicates would arrive now
    const texts = (await again.shown()).filter((m) => m.text !== undefined).map((m) => m.text);
    assert.deepEqual(texts, room, 'the room: what she saw, what came while away, once each');
    await again.page.click('#rooms li[data-room="@direct"]');
    await again.waitShown(['direct while closed', 'direct after restart']);
    const directs = (await again.shown()).filter((m) => m.text !== undefined).map((m) => m.text);
    assert.deepEqual(directs, ['direct while closed', 'direct after restart']);
    assert.deepEqual(again.errors, []);
    await again.close();
    await b.close();
  }));
});
