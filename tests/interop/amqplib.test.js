// Warren driven by Node's amqplib, the client most Node services use: the core scenarios of the
// broker model (queues, exchanges, consume/ack, prefetch, confirms) and its errors.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const amqp = require('amqplib');

const bin = process.env.WARREN_BIN || path.resolve(__dirname, '../../build/warren');
let proc;
let url;
let tmp;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-amqplib-'));
  const portsFile = path.join(tmp, 'ports.json');
  proc = spawn(bin, ['--amqp-port', '0', '--http-port', '0', '--web-port', '0', '--prometheus-port', '0',
                     '--bind', '127.0.0.1', '--workers', '2', '--data-dir', path.join(tmp, 'data'),
                     '--ports-file', portsFile],
               { stdio: ['ignore', 'ignore', fs.openSync(path.join(tmp, 'stderr.log'), 'w')] });
  const deadline = Date.now() + 10000;
  while (!fs.existsSync(portsFile)) {
    if (Date.now() > deadline) throw new Error('warren did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  const ports = JSON.parse(fs.readFileSync(portsFile, 'utf8'));
  url = `amqp://guest:guest@127.0.0.1:${ports.amqp}`;
});

after(async () => {
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  proc.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0, 'warren must exit 0 on SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('send to a queue and consume with acks', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  assert.match(q.queue, /^amq\.gen-/);
  for (let i = 0; i < 100; i++) ch.sendToQueue(q.queue, Buffer.from(`m${i}`));
  const got = [];
  await new Promise((resolve) => {
    ch.consume(q.queue, (msg) => {
      got.push(msg.content.toString());
      ch.ack(msg);
      if (got.length === 100) resolve();
    });
  });
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => `m${i}`));
  await conn.close();
});

test('topic exchange routes by pattern', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange('node-topic', 'topic', { durable: false });
  const a = await ch.assertQueue('', { exclusive: true });
  const b = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(a.queue, 'node-topic', 'stock.*.nyse');
  await ch.bindQueue(b.queue, 'node-topic', 'stock.#');
  ch.publish('node-topic', 'stock.ibm.nyse', Buffer.from('1'));
  ch.publish('node-topic', 'stock.ibm.lse.x', Buffer.from('2'));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await ch.checkQueue(a.queue)).messageCount, 1);
  assert.equal((await ch.checkQueue(b.queue)).messageCount, 2);
  await conn.close();
});

test('prefetch limits unacknowledged deliveries', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  for (let i = 0; i < 10; i++) ch.sendToQueue(q.queue, Buffer.from('x'));
  await ch.prefetch(3);
  const held = [];
  await ch.consume(q.queue, (msg) => held.push(msg));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(held.length, 3);
  ch.ack(held[2], true); // multiple: acks all three
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(held.length, 6);
  await conn.close();
});

test('confirm channel: publishes are acknowledged', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  for (let i = 0; i < 500; i++) ch.sendToQueue(q.queue, Buffer.from('c'));
  await ch.waitForConfirms();
  assert.equal((await ch.checkQueue(q.queue)).messageCount, 500);
  await conn.close();
});

test('checkQueue on a missing queue closes the channel with 404', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  await assert.rejects(ch.checkQueue('no-such-queue'), /404/);
  const ch2 = await conn.createChannel(); // the connection survives
  await ch2.assertQueue('', { exclusive: true });
  await conn.close();
});

test('a wrong password is refused with 403', async () => {
  await assert.rejects(amqp.connect(url.replace('guest:guest', 'guest:nope')), /403|ACCESS_REFUSED/);
});

test('nack with requeue redelivers', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(q.queue, Buffer.from('again'));
  const first = await new Promise((resolve) => {
    const poll = async () => {
      const m = await ch.get(q.queue);
      if (m) resolve(m); else setTimeout(poll, 20);
    };
    poll();
  });
  assert.equal(first.fields.redelivered, false);
  ch.nack(first, false, true);
  const second = await new Promise((resolve) => {
    const poll = async () => {
      const m = await ch.get(q.queue, { noAck: true });
      if (m) resolve(m); else setTimeout(poll, 20);
    };
    poll();
  });
  assert.equal(second.content.toString(), 'again');
  assert.equal(second.fields.redelivered, true);
  await conn.close();
});
