// The management dashboard (web/dashboard/, served at / of the management port) in headless
// Chromium against the real warren binary: log in, see a queue declared over AMQP (amqplib) in the
// queues list, watch its depth chart grow while a publisher runs, purge it to 0, close an amqplib
// connection from the connections view, and see a browser user of the web gateway online on the
// gateway page. Skipped (not failed) where Chromium is not installed.
//
// DASHBOARD_URL and DASHBOARD_AMQP_URL point it at a running broker instead (e.g. RabbitMQ with its
// management plugin behind a proxy that serves web/dashboard). DASHBOARD_SCREENSHOTS=DIR saves
// screenshots of the main views there (docs/images/dashboard-*.png come from it).
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
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
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage'];
const WAIT = 30000; // ms for the page to show what it should (polls every second here; RabbitMQ samples every 5 s)
const shots = process.env.DASHBOARD_SCREENSHOTS;
const JWT_SECRET = 'dashboard-test-secret-0123456789abcdef';

// An HS256 token for the web gateway (docs/web-api.md, "Identity").
function gatewayToken(sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${crypto.createHmac('sha256', JWT_SECRET).update(body).digest('base64url')}`;
}

// One warren process on free ports; its management port serves the dashboard.
async function startWarren() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-dash-'));
  const portsFile = path.join(tmp, 'ports.json');
  const stderr = path.join(tmp, 'stderr.log');
  const proc = spawn(bin, ['--amqp-port', '0', '--http-port', '0', '--web-port', '0', '--prometheus-port', '0',
                           '--bind', '127.0.0.1', '--workers', '2', '--data-dir', path.join(tmp, 'data'),
                           '--ports-file', portsFile, '--jwt-secret', JWT_SECRET],
                     { stdio: ['ignore', 'ignore', fs.openSync(stderr, 'w')] });
  let spawnError = null;
  proc.on('error', (e) => {
    spawnError = e;
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 10000;
  let ports = null;
  while (!ports) {
    if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message} (set WARREN_BIN or build it)`);
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`warren exited (${proc.exitCode ?? proc.signalCode}) before writing its ports file\n`
                      + fs.readFileSync(stderr, 'utf8'));
    }
    if (Date.now() > deadline) throw new Error('warren did not write its ports file');
    try {
      ports = JSON.parse(fs.readFileSync(portsFile, 'utf8'));
    } catch (e) {
      await sleep(20);
    }
  }
  return {
    base: `http://127.0.0.1:${ports.http}`,
    amqpUrl: `amqp://guest:guest@127.0.0.1:${ports.amqp}`,
    webBase: `http://127.0.0.1:${ports.web}`,
    async stop() {
      proc.kill('SIGTERM');
      const { code } = await exited;
      const log = fs.readFileSync(stderr, 'utf8');
      fs.rmSync(tmp, { recursive: true, force: true });
      assert.equal(code, 0, `warren must exit 0 on SIGTERM\n${log.slice(-3000)}`);
    },
  };
}

async function startBroker() {
  if (process.env.DASHBOARD_URL) {
    return { base: process.env.DASHBOARD_URL.replace(/\/$/, ''), amqpUrl: process.env.DASHBOARD_AMQP_URL,
      async stop() {} };
  }
  return startWarren();
}

// Polls fn until it returns a truthy value.
async function until(what, fn, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(200);
  }
}

describe('management dashboard in Chromium', { skip }, () => {
  let server;
  let browser;
  let page;
  let amqpConn;
  const pageErrors = [];
  const queue = `dash-q-${process.pid}`;

  const shot = async (name) => {
    if (!shots) return;
    fs.mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, `dashboard-${name}.png`) });
  };
  // The text of a stat box (data-k attribute) of the current view.
  const statText = (k) => page.locator(`[data-k="${k}"]`).first().textContent();

  before(async () => {
    server = await startBroker();
    const res = await fetch(`${server.base}/`);
    const text = await res.text();
    assert.equal(res.status, 200, `GET / on the management port: ${res.status}`);
    assert.match(text, /dashboard\/app\.js/, `${server.base}/ does not serve the dashboard`);
    const { chromium } = require('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => d.accept()); // the confirmations of Purge and Close
    await page.addInitScript(() => localStorage.setItem('warren.dashboard.poll_ms', '1000'));
    const amqp = require('amqplib');
    amqpConn = await amqp.connect(server.amqpUrl);
  });

  after(async () => {
    if (amqpConn) await amqpConn.close().catch(() => {});
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('a wrong password is refused at the login form', async () => {
    await page.goto(`${server.base}/`);
    await page.fill('input[name=username]', 'guest');
    await page.fill('input[name=password]', 'wrong');
    await page.click('button[type=submit]');
    await page.locator('.login .error').waitFor({ timeout: WAIT });
    assert.match(await page.locator('.login .error').textContent(), /401/);
  });

  test('logs in and shows the overview', async () => {
    await page.fill('input[name=username]', 'guest');
    await page.fill('input[name=password]', 'guest');
    await page.click('button[type=submit]');
    await page.locator('header.top').waitFor({ timeout: WAIT });
    await page.locator('figure.chart').first().waitFor({ timeout: WAIT });
    const auth = await page.evaluate(() => sessionStorage.getItem('warren.dashboard.auth'));
    assert.equal(auth, `Basic ${Buffer.from('guest:guest').toString('base64')}`);
    await until('object totals', async () => (await statText('object_totals.connections')) !== '0');
    await shot('overview');
  });

  test('a queue declared over AMQP appears in the queues list', async () => {
    const ch = await amqpConn.createChannel();
    await ch.assertQueue(queue, { durable: false });
    await ch.close();
    await page.click('header.top nav a[href="#/queues"]');
    await page.locator('a.queue-link', { hasText: queue }).waitFor({ timeout: WAIT });
    await page.fill('input.filter', queue);
    await until('the filtered list', async () => (await page.locator('a.queue-link').count()) === 1);
  });

  test('the queue\'s depth chart grows while a publisher runs, and purge empties it', async () => {
    await page.click(`a.queue-link:has-text("${queue}")`);
    await page.locator('figure.chart').first().waitFor({ timeout: WAIT });
    const ch = await amqpConn.createConfirmChannel();
    let publishing = true;
    let sent = 0;
    const publisher = (async () => {
      while (publishing) {
        for (let i = 0; i < 20; i += 1) ch.sendToQueue(queue, Buffer.from(`m${sent++}`));
        await ch.waitForConfirms();
        await sleep(100);
      }
    })();
    const depthChart = page.locator('figure.chart').first();
    const readyInChart = async () => {
      const last = await depthChart.getAttribute('data-last');
      return Number(/Ready=([\d.]+)/.exec(last || '')[1]);
    };
    try {
      const first = await until('a first depth above 0', async () => {
        const v = await readyInChart();
        return v > 0 ? v : 0;
      });
      await until('the depth chart to move', async () => (await readyInChart()) > first);
      const points = Number(await depthChart.getAttribute('data-points'));
      assert.ok(points >= 2, `the depth chart has ${points} points`);
      await until('the Ready count', async () => Number((await statText('messages_ready')).replace(/,/g, '')) > 0);
    } finally {
      publishing = false;
      await publisher;
    }
    await ch.close();
    await until('the Ready count to settle', async () =>
      Number((await statText('messages_ready')).replace(/,/g, '')) === sent);
    await shot('queue');
    await page.click('button.purge');
    await page.locator('.notice', { hasText: 'purged' }).waitFor({ timeout: WAIT });
    await until('Ready 0 after purge', async () => (await statText('messages_ready')) === '0');
    await until('Total 0 after purge', async () => (await statText('messages')) === '0');
    await page.click('header.top nav a[href="#/queues"]');
    await page.locator('a.queue-link').first().waitFor({ timeout: WAIT });
    await shot('queues');
  });

  test('closing a connection from the connections view closes amqplib\'s connection', async () => {
    const amqp = require('amqplib');
    const victim = await amqp.connect(server.amqpUrl, { clientProperties: { connection_name: 'dashboard-victim' } });
    const closed = new Promise((resolve) => victim.on('close', (err) => resolve(err || 'closed')));
    victim.on('error', () => {}); // the forced close is reported here too
    await page.click('header.top nav a[href="#/connections"]');
    const row = page.locator('table.list tr', { hasText: 'dashboard-victim' });
    await row.waitFor({ timeout: WAIT });
    await shot('connections');
    await row.locator('a.conn-link').click();
    await page.locator('h1', { hasText: 'Connection' }).waitFor({ timeout: WAIT });
    await page.fill('input[name=reason]', 'closed by the dashboard test');
    await page.click('button:has-text("Close connection")');
    const why = await Promise.race([closed, sleep(WAIT).then(() => null)]);
    assert.ok(why, 'amqplib saw no close');
    assert.match(String(why.message || why), /CONNECTION_FORCED|320|closed by the dashboard test|closed/i);
    await page.locator('.notice', { hasText: 'closed' }).waitFor({ timeout: WAIT });
  });

  test('the gateway page shows a browser user online', async (t) => {
    if (!server.webBase) return t.skip('no Warren web gateway here');
    // An SSE stream held open (its body is never read) is an open connection of user "dash-user".
    const sse = new AbortController();
    const res = await fetch(`${server.webBase}/sse?token=${gatewayToken('dash-user')}`, { signal: sse.signal });
    assert.equal(res.status, 200, `GET /sse: ${res.status}`);
    try {
      await page.click('header.top nav a[href="#/gateway"]');
      await page.locator('h1', { hasText: 'Web gateway' }).waitFor({ timeout: WAIT });
      await until('one online user', async () => (await statText('online_users')) === '1');
      const sseRow = page.locator('table.transports tr', { hasText: 'SSE' });
      assert.match(await sseRow.textContent(), /SSE\s*1/);
      assert.equal(await statText('inboxes'), '1');
      await shot('gateway');
    } finally {
      sse.abort();
    }
    await until('the user to go offline', async () => (await statText('online_users')) === '0');
  });

  test('the nodes and admin views render', async () => {
    await page.click('header.top nav a[href="#/nodes"]');
    await page.locator('.node h2').first().waitFor({ timeout: WAIT });
    assert.match(await page.locator('.node').first().textContent(), /Memory/);
    await shot('nodes');
    // Limits show beside their user and vhost.
    const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`,
      'content-type': 'application/json' };
    for (const [path, value] of [['user-limits/guest/max-channels', 40], ['vhost-limits/%2F/max-queues', 7]]) {
      const res = await fetch(`${server.base}/api/${path}`, { method: 'PUT', headers: auth, body: JSON.stringify({ value }) });
      assert.equal(res.status, 204);
    }
    await page.click('header.top nav a[href="#/admin"]');
    await page.locator('table.list td', { hasText: 'guest' }).first().waitFor({ timeout: WAIT });
    await page.locator('table.list td', { hasText: 'max-channels 40' }).first().waitFor({ timeout: WAIT });
    await page.click('nav.tabs a[href="#/admin/vhosts"]');
    await page.locator('table.list td', { hasText: 'max-queues 7' }).first().waitFor({ timeout: WAIT });
    for (const path of ['user-limits/guest/max-channels', 'vhost-limits/%2F/max-queues'])
      await fetch(`${server.base}/api/${path}`, { method: 'DELETE', headers: auth });
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });

  test('the federation view shows a shovel and why it is not running', async (t) => {
    if (!server.webBase) return t.skip('no Warren here (RabbitMQ has no /api/federation-links without the plugin)');
    const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`,
      'content-type': 'application/json' };
    const value = { 'src-uri': 'amqp://guest:guest@127.0.0.1:1', 'src-queue': 'a', 'dest-uri': server.amqpUrl,
      'dest-queue': 'b', 'reconnect-delay': 1 };
    const res = await fetch(`${server.base}/api/parameters/shovel/%2F/dash-shovel`,
      { method: 'PUT', headers: auth, body: JSON.stringify({ value }) });
    assert.equal(res.status, 201);
    try {
      await page.click('header.top nav a[href="#/federation"]');
      await page.locator('h1', { hasText: 'Federation' }).waitFor({ timeout: WAIT });
      const row = page.locator('table.shovels tr', { hasText: 'dash-shovel' });
      await row.waitFor({ timeout: WAIT });
      await until('the shovel to say why', async () => /terminated.*Connection refused/s.test(await row.textContent()));
      assert.match(await row.textContent(), /amqp:\/\/127\.0\.0\.1:1/);  // no credentials shown
      await shot('federation');
    } finally {
      await fetch(`${server.base}/api/parameters/shovel/%2F/dash-shovel`, { method: 'DELETE', headers: auth });
    }
    assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  });

  test('a 401 returns to the login form', async () => {
    await page.evaluate(() => sessionStorage.setItem('warren.dashboard.auth', 'Basic Z3Vlc3Q6bm9wZQ=='));
    await page.click('header.top nav a[href="#/"]');
    await page.locator('.login').waitFor({ timeout: WAIT });
    assert.match(await page.locator('.login .notice').textContent(), /401/);
  });
});
