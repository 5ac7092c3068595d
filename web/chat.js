// The chat demo's logic: log in (a dev token, or ?token=), join rooms, show their history and live
// messages, who is in the room, and a send box. Everything the page shows is kept in localStorage,
// saved in the same onEvent call in which warren.js saves its position, so a reload shows the same
// conversation and resumes it with nothing missing and nothing twice.
//
// URL parameters: ?token=JWT (skip the name form), ?transports=sse,poll (force transports),
// ?rooms=a,b (rooms to join on entering).
(function () {
  'use strict';

  const STATE_KEY = 'warren-chat';
  const DIRECT = '@direct'; // messages sent to the user, not to a room
  const KEEP = 500; // entries kept per room
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);

  let state = load() || { token: null, user: null, rooms: [], current: null, log: {} };
  let client = null;
  const members = new Map(); // room -> Map(user -> connections); not saved: asked again after a load
  const unread = new Map();

  function load() {
    try {
      return JSON.parse(localStorage.getItem(STATE_KEY));
    } catch (e) {
      return null;
    }
  }

  function save() {
    try {
      localStorage.setItem(STATE_KEY, JSON.stringify(state));
    } catch (e) {
      // full: the page goes on, a reload would show less
    }
  }

  function textOf(data) {
    if (typeof data === 'string') return data;
    if (data && typeof data.text === 'string') return data.text;
    return JSON.stringify(data);
  }

  // --- the conversation ---

  function append(room, entry) {
    const log = state.log[room] || (state.log[room] = []);
    log.push(entry);
    if (log.length > KEEP) log.splice(0, log.length - KEEP);
    if (room === state.current) renderEntry(entry, true);
    else if (entry.type !== 'note') unread.set(room, (unread.get(room) || 0) + 1);
  }

  function addRoom(room) {
    if (state.rooms.includes(room)) return;
    state.rooms.push(room);
    if (!state.current) state.current = room;
  }

  function onEvent(ev) {
    switch (ev.type) {
      case 'message':
      case 'history': {
        const room = ev.room === null || ev.room === undefined ? DIRECT : ev.room;
        addRoom(room);
        const entry = { seq: ev.seq, type: ev.type, from: ev.from, text: textOf(ev.data), ts: ev.ts };
        // After a new inbox, joining again repeats the room's history: skip what is already shown.
        const seen = ev.type === 'history' && (state.log[room] || []).some(
          (e) => e.ts === entry.ts && e.from === entry.from && e.text === entry.text);
        if (!seen) append(room, entry);
        break;
      }
      case 'presence': {
        const d = ev.data || {};
        const m = members.get(ev.room) || new Map();
        if (d.event === 'join') m.set(d.user, m.get(d.user) || 1);
        else m.delete(d.user);
        members.set(ev.room, m);
        append(ev.room, { seq: ev.seq, type: 'note', text: `${d.user} ${d.event === 'join' ? 'joined' : 'left'}` });
        break;
      }
      case 'reset': {
        const d = ev.data || {};
        const why = d.reason === 'new-inbox' ? 'you were away too long' : 'too many arrived while you were away';
        const text = `Some messages were missed (${why}).`;
        for (const room of state.rooms) append(room, { seq: ev.seq, type: 'note', text });
        refreshMembers();
        break;
      }
      default:
        break;
    }
    save();
    renderRooms();
    renderUsers();
  }

  function onStatus(s) {
    const el = $('status');
    el.dataset.state = s.state;
    el.dataset.transport = s.transport || '';
    const what = { connecting: 'connecting', open: 'connected', fallback: 'trying the next transport',
                   waiting: `retrying in ${((s.delay || 0) / 1000).toFixed(1)} s`, closed: 'closed' }[s.state];
    el.textContent = `${s.transport || ''} ${what || s.state}`.trim();
    // Only long-poll sees the HTTP status of a refused connection (browsers hide it from the others).
    if (s.error && s.error.code === 401) el.textContent = `token refused, ${what}`;
    if (s.state !== 'open') return;
    if (!state.user && client.user) {
      state.user = client.user; // from a ?token= URL
      $('me').textContent = state.user;
      save();
    }
    refreshMembers();
  }

  // Who is in the room: asked after each join and connection; presence events keep it current.
  // Only members may ask (403 otherwise, e.g. before the join after a new inbox): then the join's
  // own call fills it in.
  function loadMembers(room) {
    if (room === DIRECT) return Promise.resolve();
    return client.members(room).then((list) => {
      members.set(room, new Map(list.map((m) => [m.user, m.connections])));
      renderUsers();
    }, () => {});
  }

  function refreshMembers() {
    for (const room of state.rooms) loadMembers(room);
  }

  // --- rendering ---

  function time(ts) {
    return ts ? new Date(ts).toTimeString().slice(0, 5) : '';
  }

  function renderEntry(e, scroll) {
    const list = $('messages');
    const li = document.createElement('li');
    if (e.type === 'note') {
      li.className = 'note';
      li.textContent = e.text;
    } else {
      li.dataset.seq = e.seq;
      li.dataset.type = e.type;
      li.dataset.from = e.from === null ? '' : e.from;
      const t = document.createElement('span');
      t.className = 'time';
      t.textContent = time(e.ts);
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = e.from === null ? '(server)' : e.from;
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = e.text;
      li.append(t, from, text);
    }
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
    list.append(li);
    if (scroll && atBottom) list.scrollTop = list.scrollHeight;
  }

  function renderMessages() {
    $('messages').textContent = '';
    for (const e of state.log[state.current] || []) renderEntry(e, false);
    $('messages').scrollTop = $('messages').scrollHeight;
  }

  function renderRooms() {
    const ul = $('rooms');
    ul.textContent = '';
    for (const room of state.rooms) {
      const li = document.createElement('li');
      li.dataset.room = room;
      if (room === state.current) li.className = 'current';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = room === DIRECT ? 'direct messages' : room;
      li.append(name);
      const n = unread.get(room);
      if (n) {
        const badge = document.createElement('span');
        badge.className = 'unread';
        badge.textContent = n;
        li.append(badge);
      }
      if (room !== DIRECT) {
        const x = document.createElement('button');
        x.type = 'button';
        x.title = `leave ${room}`;
        x.textContent = '\u00d7'; // the multiplication sign
        x.onclick = (e) => {
          e.stopPropagation();
          leaveRoom(room);
        };
        li.append(x);
      }
      li.onclick = () => switchRoom(room);
      ul.append(li);
    }
  }

  function renderUsers() {
    const room = state.current;
    $('users-room').textContent = room && room !== DIRECT ? room : '';
    const ul = $('users');
    ul.textContent = '';
    const m = members.get(room);
    if (!m) return;
    for (const user of [...m.keys()].sort()) {
      const li = document.createElement('li');
      li.textContent = user;
      ul.append(li);
    }
  }

  function renderAll() {
    renderRooms();
    renderMessages();
    renderUsers();
    $('send').querySelector('button').disabled = !state.current || state.current === DIRECT;
  }

  // --- actions ---

  function switchRoom(room) {
    state.current = room;
    unread.delete(room);
    save();
    renderAll();
  }

  function joinRoom(room) {
    addRoom(room);
    state.current = room;
    unread.delete(room);
    save();
    renderAll();
    return client.join(room).then(() => {
      $('send-error').textContent = '';
      return loadMembers(room);
    }, (e) => {
      $('send-error').textContent = `join ${room}: ${e.message}`;
    });
  }

  function leaveRoom(room) {
    client.leave(room).catch(() => {}); // gone from the page either way
    state.rooms = state.rooms.filter((r) => r !== room);
    delete state.log[room];
    members.delete(room);
    if (state.current === room) state.current = state.rooms[0] || null;
    save();
    renderAll();
  }

  function send(text) {
    const room = state.current;
    const button = $('send').querySelector('button');
    button.disabled = true;
    return client.publish(room, { text }).then(() => {
      $('send-error').textContent = '';
      $('text').value = '';
    }, (e) => {
      $('send-error').textContent = `not sent: ${e.message}`;
    }).finally(() => {
      button.disabled = false;
      $('text').focus();
    });
  }

  function start() {
    $('login').hidden = true;
    $('chat').hidden = false;
    $('logout').hidden = false;
    $('me').textContent = state.user || '';
    const transports = (params.get('transports') || 'ws,sse,poll').split(',').filter(Boolean);
    client = new Warren.Client({ url: location.origin, token: state.token, transports, onEvent, onStatus });
    const wanted = (params.get('rooms') || '').split(',').filter(Boolean);
    for (const room of wanted) addRoom(room);
    save();
    renderAll();
    // The user may still be a member (membership outlives the page); then this is acknowledged
    // without repeating the history.
    for (const room of state.rooms) {
      if (room !== DIRECT) client.join(room).then(() => loadMembers(room), () => {});
    }
    window.chat.client = client;
  }

  async function login(name) {
    $('login-error').textContent = '';
    let res;
    try {
      res = await fetch('/api/dev-token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: name }),
      });
    } catch (e) {
      $('login-error').textContent = `cannot reach the gateway: ${e.message}`;
      return;
    }
    if (!res.ok) {
      $('login-error').textContent = res.status === 404
        ? 'This gateway gives no dev tokens (it runs without --web-dev-tokens): open this page with ?token=JWT.'
        : `The gateway refused: HTTP ${res.status}.`;
      return;
    }
    const body = await res.json();
    state = { token: body.token, user: name, rooms: [], current: null, log: {} };
    save();
    start();
  }

  function logout() {
    if (client) {
      client.close();
      if (client.storageKey) localStorage.removeItem(client.storageKey);
    }
    localStorage.removeItem(STATE_KEY);
    location.href = location.pathname;
  }

  $('login').onsubmit = (e) => {
    e.preventDefault();
    login($('name').value.trim());
  };
  $('join').onsubmit = (e) => {
    e.preventDefault();
    const room = $('room-name').value.trim();
    if (!room) return;
    $('room-name').value = '';
    joinRoom(room);
  };
  $('send').onsubmit = (e) => {
    e.preventDefault();
    const text = $('text').value;
    if (text.trim() && state.current && state.current !== DIRECT) send(text);
  };
  $('logout').onclick = logout;

  window.chat = { state: () => state, client: null, members };
  const urlToken = params.get('token');
  if (urlToken && urlToken !== state.token) {
    state = { token: urlToken, user: null, rooms: [], current: null, log: {} };
    save();
  }
  if (state.token) start();
  else {
    $('login').hidden = false;
    $('name').focus();
  }
})();
