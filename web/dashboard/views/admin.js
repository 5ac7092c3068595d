// Admin: users (add with password and tags, delete), permissions (per user and vhost: set,
// clear) and vhosts (add, delete), each user's and vhost's limits shown (set them with warrenctl
// or the API: docs/security.md, "Limits").
import { html, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, p } from '../api.js';
import { ActionResult, ErrorBox, Section, field, num, useAction, usePoll } from '../ui.js';

// {"max-connections": 10} -> "max-connections 10"; none: empty.
const limitsText = (l) => Object.entries(l || {}).map(([k, v]) => `${k} ${v}`).join(', ');

function Users() {
  const { data, error, reload } = usePoll(() => api('/users'));
  const [form, setForm] = useState({ name: '', password: '', tags: '' });
  const [act, run] = useAction();
  const add = (e) => {
    e.preventDefault();
    run(() => api(p`/users/${form.name}`, { method: 'PUT', body: { password: form.password, tags: form.tags } }),
      `User ${form.name} saved.`).then((out) => {
      if (out !== undefined) setForm({ name: '', password: '', tags: '' });
      reload();
    });
  };
  const del = (name) => {
    if (!window.confirm(`Delete user ${name}?`)) return;
    run(() => api(p`/users/${name}`, { method: 'DELETE' }), `User ${name} deleted.`).then(reload);
  };
  const tags = (u) => (Array.isArray(u.tags) ? u.tags.join(', ') : u.tags || '');
  return html`<${Section} title="Users">
    <${ErrorBox} error=${error} />
    <table class="list"><thead><tr><th>Name</th><th>Tags</th><th>Limits</th><th></th></tr></thead>
      <tbody>${(data || []).map((u) => html`<tr key=${u.name}><td>${u.name}</td><td>${tags(u)}</td>
        <td class="mono">${limitsText(u.limits)}</td>
        <td><button class="small danger" onClick=${() => del(u.name)}>Delete</button></td></tr>`)}</tbody></table>
    <h3>Add or update a user</h3>
    <form class="inline" onSubmit=${add}>
      <label>Name ${field(form, setForm, 'name', { required: true })}</label>
      <label>Password ${field(form, setForm, 'password', { type: 'password', autocomplete: 'new-password' })}</label>
      <label>Tags ${field(form, setForm, 'tags', { placeholder: 'administrator, monitoring' })}</label>
      <button type="submit" disabled=${act.busy}>Save user</button>
    </form>
    <${ActionResult} state=${act} />
  <//>`;
}

function Permissions() {
  const { data, error, reload } = usePoll(() => api('/permissions'));
  const users = usePoll(() => api('/users'));
  const vhosts = usePoll(() => api('/vhosts'));
  const [form, setForm] = useState({ user: '', vhost: '', configure: '.*', write: '.*', read: '.*' });
  const [act, run] = useAction();
  const user = form.user || (users.data && users.data[0] && users.data[0].name) || '';
  const vhost = form.vhost || (vhosts.data && vhosts.data[0] && vhosts.data[0].name) || '';
  const set = (e) => {
    e.preventDefault();
    run(() => api(p`/permissions/${vhost}/${user}`, { method: 'PUT',
      body: { configure: form.configure, write: form.write, read: form.read } }),
    `Permissions of ${user} in ${vhost} set.`).then(reload);
  };
  const clear = (pm) => {
    if (!window.confirm(`Clear the permissions of ${pm.user} in ${pm.vhost}?`)) return;
    run(() => api(p`/permissions/${pm.vhost}/${pm.user}`, { method: 'DELETE' }), 'Permissions cleared.').then(reload);
  };
  const pick = (key, list, value) => html`<select name=${key} value=${value}
      onChange=${(e) => setForm({ ...form, [key]: e.target.value })}>
    ${(list || []).map((x) => html`<option value=${x.name}>${x.name}</option>`)}</select>`;
  return html`<${Section} title="Permissions">
    <${ErrorBox} error=${error} />
    <table class="list"><thead><tr><th>User</th><th>Vhost</th><th>Configure</th><th>Write</th><th>Read</th><th></th>
      </tr></thead>
      <tbody>${(data || []).map((pm) => html`<tr key=${`${pm.user}\u0000${pm.vhost}`}>
        <td>${pm.user}</td><td>${pm.vhost}</td><td class="mono">${pm.configure}</td><td class="mono">${pm.write}</td>
        <td class="mono">${pm.read}</td>
        <td><button class="small danger" onClick=${() => clear(pm)}>Clear</button></td></tr>`)}</tbody></table>
    <h3>Set permissions</h3>
    <form class="inline" onSubmit=${set}>
      <label>User ${pick('user', users.data, user)}</label>
      <label>Vhost ${pick('vhost', vhosts.data, vhost)}</label>
      <label>Configure ${field(form, setForm, 'configure', { size: 8 })}</label>
      <label>Write ${field(form, setForm, 'write', { size: 8 })}</label>
      <label>Read ${field(form, setForm, 'read', { size: 8 })}</label>
      <button type="submit" disabled=${act.busy || !user || !vhost}>Set permissions</button>
    </form>
    <${ActionResult} state=${act} />
  <//>`;
}

function Vhosts() {
  const { data, error, reload } = usePoll(() => api('/vhosts'));
  const limits = usePoll(() => api('/vhost-limits'));
  const limitsOf = (name) => ((limits.data || []).find((l) => l.vhost === name) || {}).value;
  const [form, setForm] = useState({ name: '', description: '' });
  const [act, run] = useAction();
  const add = (e) => {
    e.preventDefault();
    const body = form.description ? { description: form.description } : {};
    run(() => api(p`/vhosts/${form.name}`, { method: 'PUT', body }), `Vhost ${form.name} added.`).then((out) => {
      if (out !== undefined) setForm({ name: '', description: '' });
      reload();
    });
  };
  const del = (name) => {
    if (!window.confirm(`Delete vhost ${name} and everything in it?`)) return;
    run(() => api(p`/vhosts/${name}`, { method: 'DELETE' }), `Vhost ${name} deleted.`).then(reload);
  };
  return html`<${Section} title="Virtual hosts">
    <${ErrorBox} error=${error} />
    <table class="list"><thead><tr><th>Name</th><th>Description</th><th class="n">Messages</th><th>Limits</th><th></th>
      </tr></thead>
      <tbody>${(data || []).map((v) => html`<tr key=${v.name}><td>${v.name}</td><td>${v.description || ''}</td>
        <td class="n">${num(v.messages)}</td><td class="mono">${limitsText(limitsOf(v.name))}</td>
        <td><button class="small danger" onClick=${() => del(v.name)}>Delete</button></td></tr>`)}</tbody></table>
    <h3>Add a vhost</h3>
    <form class="inline" onSubmit=${add}>
      <label>Name ${field(form, setForm, 'name', { required: true })}</label>
      <label>Description ${field(form, setForm, 'description')}</label>
      <button type="submit" disabled=${act.busy}>Add vhost</button>
    </form>
    <${ActionResult} state=${act} />
  <//>`;
}

const TABS = [['users', 'Users', Users], ['permissions', 'Permissions', Permissions], ['vhosts', 'Virtual hosts', Vhosts]];

export function Admin({ tab = 'users' }) {
  const current = TABS.find(([k]) => k === tab) || TABS[0];
  const View = current[2];
  return html`<div class="view">
    <h1>Admin</h1>
    <nav class="tabs">${TABS.map(([k, l]) => html`<a href=${`#/admin/${k}`} class=${k === current[0] ? 'active' : ''}>${l}</a>`)}</nav>
    <${View} key=${current[0]} />
  </div>`;
}
