// The Warren dashboard: a login form, a top navigation bar and one view per hash route, all
// polling the management API (RabbitMQ's shape) every 5 s. No build step: plain ES modules,
// Preact + htm and uPlot vendored in vendor/.
import { html, render, useEffect, useState } from './vendor/htm-preact-standalone.module.js';
import { api, onUnauthorized, session } from './api.js';
import { useRoute } from './router.js';
import { ErrorBox, usePoll } from './ui.js';
import { Overview } from './views/overview.js';
import { Nodes } from './views/nodes.js';
import { Channels, Connection, Connections } from './views/connections.js';
import { Exchange, Exchanges } from './views/exchanges.js';
import { Queue, Queues } from './views/queues.js';
import { Admin } from './views/admin.js';
import { Gateway } from './views/gateway.js';
import { Federation } from './views/federation.js';

const VHOST_KEY = 'warren.dashboard.vhost';

function Login({ message, onLogin }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    session.login(user, password);
    try {
      await api('/overview');
      onLogin();
    } catch (err) {
      session.logout();
      setError(err);
    }
    setBusy(false);
  };
  return html`<div class="login">
    <form onSubmit=${submit} class="card stack">
      <h1>Warren</h1>
      ${message && !error && html`<div class="notice warn">${message}</div>`}
      <${ErrorBox} error=${error} />
      <label>Username <input name="username" autocomplete="username" value=${user} autofocus
        onInput=${(e) => setUser(e.target.value)} /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" value=${password}
        onInput=${(e) => setPassword(e.target.value)} /></label>
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  </div>`;
}

const NAV = [
  ['', 'Overview'], ['nodes', 'Nodes'], ['connections', 'Connections'], ['channels', 'Channels'],
  ['exchanges', 'Exchanges'], ['queues', 'Queues'], ['gateway', 'Web gateway'], ['federation', 'Federation'],
  ['admin', 'Admin'],
];

function TopBar({ section, vhost, setVhost, logout }) {
  const vhosts = usePoll(() => api('/vhosts'));
  return html`<header class="top">
    <a class="brand" href="#/">Warren</a>
    <nav>${NAV.map(([k, l]) => html`<a href=${`#/${k}`} class=${section === k ? 'active' : ''}>${l}</a>`)}</nav>
    <div class="right">
      <label>Vhost <select class="vhost" value=${vhost} onChange=${(e) => setVhost(e.target.value)}>
        <option value="">All</option>
        ${(vhosts.data || []).map((v) => html`<option value=${v.name}>${v.name}</option>`)}
      </select></label>
      <span class="user">${session.user()}</span>
      <button class="small" onClick=${logout}>Log out</button>
    </div>
  </header>`;
}

function page(route, vhost) {
  const [section, a, b] = route;
  switch (section || '') {
    case '': return html`<${Overview} />`;
    case 'nodes': return html`<${Nodes} />`;
    case 'connections': return a !== undefined ? html`<${Connection} name=${a} />` : html`<${Connections} />`;
    case 'channels': return html`<${Channels} />`;
    case 'exchanges': return b !== undefined ? html`<${Exchange} vhost=${a} name=${b} />` : html`<${Exchanges} vhost=${vhost} />`;
    case 'queues': return b !== undefined ? html`<${Queue} vhost=${a} name=${b} />` : html`<${Queues} vhost=${vhost} />`;
    case 'gateway': return html`<${Gateway} />`;
    case 'federation': return html`<${Federation} />`;
    case 'admin': return html`<${Admin} tab=${a} />`;
    default: return html`<div class="view"><h1>Not found</h1><p>No such page: <a href="#/">back to the overview</a>.</p></div>`;
  }
}

function App() {
  const [authed, setAuthed] = useState(Boolean(session.header()));
  const [message, setMessage] = useState('');
  const [vhost, setVhostState] = useState(sessionStorage.getItem(VHOST_KEY) || '');
  const route = useRoute();
  useEffect(() => onUnauthorized((msg) => {
    session.logout();
    setMessage(msg);
    setAuthed(false);
  }), []);
  if (!authed) {
    return html`<${Login} message=${message} onLogin=${() => { setMessage(''); setAuthed(true); }} />`;
  }
  const setVhost = (v) => {
    sessionStorage.setItem(VHOST_KEY, v);
    setVhostState(v);
  };
  const logout = () => {
    session.logout();
    setMessage('Logged out.');
    setAuthed(false);
  };
  return html`<div>
    <${TopBar} section=${route[0] || ''} vhost=${vhost} setVhost=${setVhost} logout=${logout} />
    <main key=${`${route.join('/')}|${vhost}`}>${page(route, vhost)}</main>
  </div>`;
}

const root = document.getElementById('app');
root.textContent = ''; // the "Loading" line: Preact would keep it beside the app
render(html`<${App} />`, root);
