// warren.js: the browser client of Warren's web gateway (the contract is docs/web-api.md). No build
// step and no dependencies: `<script src="/warren.js">` defines a global `Warren`; where `module`
// exists (a bundler, Node) it is also `module.exports`.
//
//   const c = new Warren.Client({
//     url: "https://push.example.com",     // the gateway; default: the page's origin
//     token: jwt,                          // or a function returning a token or a Promise of one
//     transports: ["ws", "sse", "poll"],   // tried in this order (the default)
//     onEvent(ev) { ... },                 // each inbox event once, in seq order
//     onStatus(s) { ... },                 // {state, transport, attempt, delay, error}
//   });
//   await c.join("lobby");                 // history arrives as "history" events
//   await c.publish("lobby", {text: "hi"});
//   const members = await c.members("lobby");   // [{user, connections}]
//   await c.leave("lobby");
//   c.close();
//
// Events are the gateway's JSON objects: {seq, type: "message"|"history"|"presence"|"reset",
// room, from, data, ts}. What the client promises about them:
// - Resuming: every (re)connection asks for the events after the last one delivered (`since=` on
//   the URL for all three transports), so a dropped connection loses nothing the inbox still holds.
//   A client with no position yet asks for `since=0`: everything the user's inbox holds (so a second
//   tab of a user sees what the first one was sent; a user's room membership, and so its history,
//   belongs to the user, not the tab).
// - No duplicates: an event whose seq is not above the last delivered one is dropped, whatever the
//   transport or the reconnection did.
// - Page loads: the last delivered seq is kept in localStorage under a key made of the gateway
//   URL and the token's `sub` (so per user), so a reloaded tab, or a visitor who comes back days
//   later, resumes where it was and gets what arrived meanwhile (the gateway keeps a user's inbox
//   while the user is away). An app that shows history across page loads keeps its own copy of
//   what it showed (the demo in chat.js does), saved in the same onEvent call, so the two never
//   disagree.
// - Transient events (`transient: true`: typing, presence) carry the last held seq; they are
//   delivered as they come and do not move the position.
// - Gaps are told: when the gateway no longer holds what was missed it sends a `reset` event
//   (data.reason "dropped" or "new-inbox"); it goes to onEvent like the others, and to onReset if
//   given. After a new inbox the user is in no room: the client joins its rooms again on every
//   reconnection, which is acknowledged without history where the user still is a member.
// - Fallback and reconnection: a transport that cannot open is followed at once by the next one;
//   when all have failed, or an open connection drops, it waits (exponential backoff from
//   backoffBase to backoffMax ms, each delay a random 50-100% of the step) and tries again,
//   starting with the transport that last worked. `online` events cut the wait short.
// - Operations: over an open WebSocket they are WebSocket ops; otherwise they are HTTP calls
//   (POST /api/rooms/R/join|leave|publish, GET .../members) with `Authorization: Bearer`. While a
//   connection is being made they wait for it (up to opTimeout/3 ms), so that a join's history
//   finds the user's inbox there (the gateway makes it on the first connection). Promises
//   reject with a Warren.Error whose `code` is the gateway's (400, 403, 404, 429, 503; 0 when no
//   answer came). A publish whose WebSocket closed before the answer is rejected, not resent, as it
//   may or may not have been published; join, leave and members are resent over HTTP.
// - A WebSocket that hears nothing for pingInterval ms is sent a ping op; no answer within
//   pingTimeout ms more and it is dropped and reconnected (a half-open TCP connection otherwise
//   goes unnoticed for minutes).
// Limits: seq numbers are JavaScript numbers (exact up to 2^53, centuries past the gateway's
// microsecond clock); the rejoin after a reconnection is one op per room, within the gateway's
// per-connection rate limit for a few dozen rooms.
(function (global) {
  'use strict';

  const DEFAULTS = {
    transports: ['ws', 'sse', 'poll'],
    backoffBase: 500,
    backoffMax: 30000,
    pollTimeout: 25,
    pingInterval: 25000,
    pingTimeout: 10000,
    opTimeout: 15000,
  };

  class WarrenError extends Error {
    constructor(message, code, body) {
      super(message);
      this.name = 'WarrenError';
      this.code = code;
      this.body = body;
    }
  }

  // The `sub` claim of a JWT, without checking it (the gateway does): used only to name the storage
  // key, so that two users in one tab (log out, log in) do not share a position.
  function tokenSubject(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(part + '==='.slice((part.length + 3) % 4)), (c) => c.charCodeAt(0));
      const sub = JSON.parse(new TextDecoder().decode(bytes)).sub;
      return typeof sub === 'string' ? sub : null;
    } catch (e) {
      return null;
    }
  }

  function defaultStorage() {
    try {
      return global.localStorage || null;
    } catch (e) {
      return null; // localStorage throws where storage is disabled
    }
  }

  // --- transports: each opens one connection and reports to the client; the client decides the rest ---

  class WsConnection {
    constructor(client, token, since) {
      this.kind = 'ws';
      this.client = client;
      this.open = false;
      this.done = false;
      const base = client.url.replace(/^http/, 'ws');
      this.ws = new WebSocket(`${base}/ws?token=${encodeURIComponent(token)}&since=${since}`);
      this.lastHeard = Date.now();
      this.pingSent = 0;
      this.ws.onopen = () => {
        this.open = true;
        const o = client.options;
        this.timer = setInterval(() => this.checkAlive(), Math.min(o.pingInterval, o.pingTimeout) / 2);
        client._opened(this);
      };
      this.ws.onmessage = (m) => {
        this.lastHeard = Date.now();
        this.pingSent = 0;
        let msg;
        try {
          msg = JSON.parse(m.data);
        } catch (e) {
          return; // not ours to deliver; the gateway sends JSON only
        }
        if (msg && msg.seq === null) client._reply(msg);
        else client._event(msg);
      };
      this.ws.onclose = (e) => this.finish({ code: e.code, reason: e.reason || 'websocket closed' });
      this.ws.onerror = () => {}; // a close event always follows
    }

    checkAlive() {
      const now = Date.now();
      const o = this.client.options;
      if (this.pingSent && now - this.pingSent > o.pingTimeout) {
        this.ws.close(4000, 'no answer to ping');
        this.finish({ code: 0, reason: 'no answer to ping' });
      } else if (!this.pingSent && now - this.lastHeard > o.pingInterval) {
        this.pingSent = now;
        this.send({ op: 'ping' });
      }
    }

    send(obj) {
      this.ws.send(JSON.stringify(obj));
    }

    finish(error) {
      if (this.done) return;
      this.done = true;
      clearInterval(this.timer);
      this.client._dropped(this, error);
    }

    close() {
      this.done = true;
      clearInterval(this.timer);
      try {
        this.ws.close(1000);
      } catch (e) {
        // already closing
      }
    }
  }

  class SseConnection {
    constructor(client, token, since) {
      this.kind = 'sse';
      this.client = client;
      this.open = false;
      this.done = false;
      // EventSource reconnects by itself with Last-Event-ID, but on its own schedule and without
      // falling back; the client closes it on the first error and reconnects with since= itself.
      this.es = new EventSource(`${client.url}/sse?token=${encodeURIComponent(token)}&since=${since}`);
      this.es.onopen = () => {
        this.open = true;
        client._opened(this);
      };
      this.es.onmessage = (m) => {
        let msg;
        try {
          msg = JSON.parse(m.data);
        } catch (e) {
          return;
        }
        client._event(msg);
      };
      this.es.onerror = () => {
        if (this.done) return;
        this.done = true;
        this.es.close();
        client._dropped(this, { code: 0, reason: 'event stream failed' });
      };
    }

    close() {
      this.done = true;
      this.es.close();
    }
  }

  class PollConnection {
    constructor(client, token, since) {
      this.kind = 'poll';
      this.client = client;
      this.open = false;
      this.done = false;
      this.abort = new AbortController();
      this.run(token, since);
    }

    async run(token, since) {
      const client = this.client;
      // The first poll asks not to wait, so that the connection counts as open at once.
      let timeout = 0;
      try {
        for (;;) {
          const url = `${client.url}/poll?token=${encodeURIComponent(token)}&since=${since}&timeout=${timeout}`;
          const res = await fetch(url, { cache: 'no-store', signal: this.abort.signal });
          if (this.done) return;
          if (!res.ok) throw await httpError(res);
          const events = await res.json();
          if (this.done) return;
          if (!this.open) {
            this.open = true;
            client._opened(this);
          }
          if (Array.isArray(events)) for (const ev of events) if (!this.done) client._event(ev);
          if (this.done) return;
          since = client.lastSeq === null ? since : client.lastSeq;
          timeout = client.options.pollTimeout;
        }
      } catch (e) {
        if (this.done) return;
        this.done = true;
        client._dropped(this, { code: e.code || 0, reason: e.message });
      }
    }

    close() {
      this.done = true;
      this.abort.abort();
    }
  }

  const TRANSPORTS = { ws: WsConnection, sse: SseConnection, poll: PollConnection };

  async function httpError(res) {
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      // not JSON: the status says enough
    }
    const text = body && (body.reason || body.error);
    return new WarrenError(text ? `${res.status} ${text}` : `HTTP ${res.status}`, res.status, body);
  }

  class Client {
    constructor(options) {
      const o = Object.assign({}, DEFAULTS, options || {});
      this.options = o;
      this.url = (o.url || (global.location && global.location.origin) || '').replace(/\/+$/, '');
      this.transports = o.transports.filter((t) => TRANSPORTS[t]);
      if (this.transports.length === 0) throw new WarrenError(`no known transport in ${o.transports}`, 0);
      this.onEvent = o.onEvent || (() => {});
      this.onStatus = o.onStatus || (() => {});
      this.onReset = o.onReset || null;
      this.storage = o.storage === undefined ? defaultStorage() : o.storage;
      this.rooms = new Set(); // joined by this client: joined again after each reconnection
      this.lastSeq = null; // the last seq delivered to onEvent
      this.user = null; // the token's sub, once a token was seen
      this.state = 'idle';
      this.transport = null; // the kind of the current connection
      this.stats = { delivered: 0, duplicates: 0, resets: 0, connections: 0 };
      this.storageKey = null;
      this.conn = null;
      this.index = 0; // into transports: the one to try next
      this.failedInRow = 0; // transports that could not open since the last open
      this.attempt = 0; // backoff steps since the last open
      this.pending = new Map(); // WebSocket op id -> {resolve, reject, op, timer}
      this.queue = []; // operations waiting for a connection to open
      this.nextId = 1;
      this.closed = false;
      this.everOpened = false;
      this.waitTimer = null;
      this.onOnline = () => {
        if (this.state === 'waiting') this._connectNow();
      };
      if (global.addEventListener) global.addEventListener('online', this.onOnline);
      // Start after the constructor returns, so the caller's first join() can come before the socket.
      Promise.resolve().then(() => this._connect());
    }

    join(room) {
      this.rooms.add(room);
      return this._op('join', room);
    }

    leave(room) {
      this.rooms.delete(room);
      return this._op('leave', room);
    }

    publish(room, data) {
      return this._op('publish', room, data);
    }

    members(room) {
      return this._op('members', room).then((r) => r.members || []);
    }

    // The user's read position (PUT /api/inbox/read): resolves to {read_seq, unread}.
    markRead(seq) {
      return this._inbox('PUT', '/read', { seq });
    }

    // The user's inbox as the gateway holds it (GET /api/inbox): {first_seq, last_seq, read_seq,
    // unread, events, more}; for "what did I miss" before or without a connection.
    inbox(since = 0, limit = 100) {
      return this._inbox('GET', `?since=${since}&limit=${limit}`);
    }

    async _inbox(method, rest, body) {
      const token = await this._token();
      const init = { method, cache: 'no-store', headers: {} };
      if (token) init.headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      let res;
      try {
        res = await fetch(`${this.url}/api/inbox${rest}`, init);
      } catch (e) {
        throw new WarrenError(`inbox: ${e.message}`, 0);
      }
      if (!res.ok) throw await httpError(res);
      return res.json();
    }

    close() {
      if (this.closed) return;
      this.closed = true;
      clearTimeout(this.waitTimer);
      if (global.removeEventListener) global.removeEventListener('online', this.onOnline);
      if (this.conn) this.conn.close();
      this.conn = null;
      for (const p of [...this.pending.values(), ...this.queue]) {
        clearTimeout(p.timer);
        p.reject(new WarrenError('client closed', 0));
      }
      this.pending.clear();
      this.queue = [];
      this._status('closed', {});
    }

    // --- connecting ---

    async _token() {
      const t = this.options.token;
      return typeof t === 'function' ? await t() : t;
    }

    _useToken(token) {
      const user = tokenSubject(token || '');
      const key = this.options.storageKey || `warren.seq ${this.url} ${user || ''}`;
      this.user = user;
      if (key === this.storageKey) return;
      this.storageKey = key;
      let stored = null;
      try {
        stored = this.storage && this.storage.getItem(key);
      } catch (e) {
        stored = null;
      }
      const n = stored === null ? NaN : Number(stored);
      this.lastSeq = Number.isSafeInteger(n) ? n : null;
    }

    async _connect() {
      if (this.closed) return;
      const kind = this.transports[this.index];
      const attempt = this.attempt;
      this.transport = kind;
      this._status('connecting', { attempt });
      let token;
      try {
        token = await this._token();
      } catch (e) {
        this._wait({ code: 0, reason: `token: ${e.message}` });
        return;
      }
      if (this.closed || this.state !== 'connecting' || this.transport !== kind) return;
      this._useToken(token);
      const since = this.lastSeq === null ? 0 : this.lastSeq;
      this.conn = new TRANSPORTS[kind](this, token, since);
    }

    _connectNow() {
      clearTimeout(this.waitTimer);
      this.waitTimer = null;
      this._connect();
    }

    _opened(conn) {
      if (conn !== this.conn) return;
      this.attempt = 0;
      this.failedInRow = 0;
      this.stats.connections += 1;
      const again = this.everOpened;
      this.everOpened = true;
      // After a new inbox the user is in no room; elsewhere this is acknowledged without history.
      if (again) for (const room of this.rooms) this._op('join', room).catch(() => {});
      // What waited goes first (over a WebSocket, in order), then what onStatus may ask.
      this._flush(this.queue.slice());
      this._status('open', {});
    }

    _dropped(conn, error) {
      if (conn !== this.conn || this.closed) return;
      this.conn = null;
      this._failPending(conn);
      if (!conn.open) {
        this.failedInRow += 1;
        this.index = (this.index + 1) % this.transports.length;
        if (this.failedInRow < this.transports.length) {
          this._status('fallback', { error });
          this._connect();
          return;
        }
        this.failedInRow = 0;
      }
      this._wait(error);
    }

    _wait(error) {
      const step = Math.min(this.options.backoffMax, this.options.backoffBase * 2 ** this.attempt);
      const delay = Math.round(step * (0.5 + Math.random() / 2));
      this.attempt += 1;
      this._status('waiting', { delay, error });
      this._flush(this.queue.slice());
      this.waitTimer = setTimeout(() => this._connectNow(), delay);
    }

    _status(state, extra) {
      this.state = state;
      const s = Object.assign({ state, transport: this.transport }, extra);
      try {
        this.onStatus(s);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }

    // --- delivering ---

    _event(ev) {
      if (!ev || !Number.isSafeInteger(ev.seq)) return;
      if (ev.transient === true) {
        // Live only, never held: no position of its own to keep or to compare.
        try {
          this.onEvent(ev);
        } catch (e) {
          setTimeout(() => {
            throw e;
          });
        }
        return;
      }
      // A reset about our own position is taken even below it: a new inbox numbered after the
      // gateway's clock went back starts below where we were, and its events must not be dropped.
      const ours = ev.type === 'reset' && ev.data && ev.data.after === this.lastSeq;
      if (this.lastSeq !== null && ev.seq <= this.lastSeq && !ours) {
        this.stats.duplicates += 1;
        return;
      }
      this.lastSeq = ev.seq;
      this.stats.delivered += 1;
      if (ev.type === 'reset') this.stats.resets += 1;
      // An app error must not stop delivery or the saving of the position: it is rethrown apart.
      try {
        this.onEvent(ev);
        if (ev.type === 'reset' && this.onReset) this.onReset(ev);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
      try {
        if (this.storage && this.storageKey) this.storage.setItem(this.storageKey, String(ev.seq));
      } catch (e) {
        // storage full or disabled: resuming within this page still works
      }
    }

    // --- operations ---

    _op(op, room, data) {
      if (this.closed) return Promise.reject(new WarrenError('client closed', 0));
      const conn = this.conn;
      if (conn && conn.kind === 'ws' && conn.open && !conn.done) return this._wsOp(conn, op, room, data);
      if (this.state === 'idle' || this.state === 'connecting' || this.state === 'fallback') {
        // Wait for the connection: the user's inbox exists once one is open, and a join's history
        // needs it. Not for long: HTTP works without a connection too.
        return new Promise((resolve, reject) => {
          const item = { op, room, data, resolve, reject };
          item.timer = setTimeout(() => this._flush([item]), this.options.opTimeout / 3);
          this.queue.push(item);
        });
      }
      return this._httpOp(op, room, data);
    }

    _flush(items) {
      for (const item of items) {
        clearTimeout(item.timer);
        const i = this.queue.indexOf(item);
        if (i < 0) continue;
        this.queue.splice(i, 1);
        const conn = this.conn;
        const sent = conn && conn.kind === 'ws' && conn.open && !conn.done
          ? this._wsOp(conn, item.op, item.room, item.data)
          : this._httpOp(item.op, item.room, item.data);
        sent.then(item.resolve, item.reject);
      }
    }

    _wsOp(conn, op, room, data) {
      return new Promise((resolve, reject) => {
        const id = this.nextId++;
        const msg = { op, room, id };
        if (op === 'publish') msg.data = data;
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new WarrenError(`no answer to ${op} within ${this.options.opTimeout} ms`, 0));
        }, this.options.opTimeout);
        this.pending.set(id, { op, room, data, resolve, reject, timer, conn });
        try {
          conn.send(msg);
        } catch (e) {
          this.pending.delete(id);
          clearTimeout(timer);
          this._httpOp(op, room, data).then(resolve, reject);
        }
      });
    }

    _reply(msg) {
      const p = this.pending.get(msg.id);
      if (!p) return; // a ping's answer, or one that timed out
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === 'ok') p.resolve(msg);
      else p.reject(new WarrenError(msg.error || 'error', msg.code || 0, msg));
    }

    _failPending(conn) {
      for (const [id, p] of this.pending) {
        if (p.conn !== conn) continue;
        this.pending.delete(id);
        clearTimeout(p.timer);
        if (p.op === 'publish') {
          const why = 'the connection closed before the gateway answered: may or may not be published';
          p.reject(new WarrenError(why, 0));
        } else {
          this._httpOp(p.op, p.room, p.data).then(p.resolve, p.reject);
        }
      }
    }

    async _httpOp(op, room, data) {
      const token = await this._token();
      if (this.storageKey === null && token) this._useToken(token);
      const init = { method: op === 'members' ? 'GET' : 'POST', cache: 'no-store', headers: {} };
      if (token) init.headers.Authorization = `Bearer ${token}`;
      if (op === 'publish') {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify({ data });
      }
      let res;
      try {
        res = await fetch(`${this.url}/api/rooms/${encodeURIComponent(room)}/${op}`, init);
      } catch (e) {
        throw new WarrenError(`${op}: ${e.message}`, 0);
      }
      if (!res.ok) throw await httpError(res);
      try {
        return await res.json();
      } catch (e) {
        return {};
      }
    }
  }

  const Warren = { Client, Error: WarrenError, version: '1' };
  global.Warren = Warren;
  if (typeof module === 'object' && module.exports) module.exports = Warren;
})(typeof globalThis !== 'undefined' ? globalThis : this);
