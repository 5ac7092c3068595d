// Federation links and shovels (GET /api/federation-links, /api/shovels): each one's state, its
// upstream or source and destination, the messages it moved, and the error it last met.
import { html } from '../vendor/htm-preact-standalone.module.js';
import { api } from '../api.js';
import { ErrorBox, num, usePoll } from '../ui.js';

export function Federation() {
  const links = usePoll(() => api('/federation-links'));
  const shovels = usePoll(() => api('/shovels'));
  return html`<div class="view">
    <h1>Federation</h1>
    <${ErrorBox} error=${links.error || shovels.error} />
    <h2>Federation links</h2>
    ${links.data && links.data.length === 0 && html`<p class="notice">No federation links: set a
      federation-upstream parameter and a policy (docs/federation.md).</p>`}
    ${links.data && links.data.length > 0 && html`<table class="list federation-links"><thead><tr>
        <th>Vhost</th><th>Exchange or queue</th><th>Upstream</th><th>URI</th><th>State</th>
        <th class="n">Forwarded</th><th>Error</th></tr></thead>
      <tbody>${links.data.map((l) => html`<tr key=${l.vhost + '|' + (l.exchange || l.queue) + '|' + l.upstream}>
        <td>${l.vhost}</td><td>${l.type} ${l.exchange || l.queue}</td><td>${l.upstream}</td><td>${l.uri}</td>
        <td class=${l.status === 'running' ? 'ok' : 'bad'}>${l.status}</td>
        <td class="n">${num(l.messages_forwarded)}</td><td>${l.error || ''}</td></tr>`)}</tbody></table>`}
    <h2>Shovels</h2>
    ${shovels.data && shovels.data.length === 0 && html`<p class="notice">No shovels.</p>`}
    ${shovels.data && shovels.data.length > 0 && html`<table class="list shovels"><thead><tr>
        <th>Vhost</th><th>Name</th><th>Source</th><th>Destination</th><th>State</th>
        <th class="n">Moved</th><th>Reason</th></tr></thead>
      <tbody>${shovels.data.map((s) => html`<tr key=${s.vhost + '|' + s.name}>
        <td>${s.vhost}</td><td>${s.name}</td><td>${s.src_uri}</td><td>${s.dest_uri}</td>
        <td class=${s.state === 'running' ? 'ok' : 'bad'}>${s.state}</td>
        <td class="n">${num(s.messages_moved)}</td><td>${s.reason || ''}</td></tr>`)}</tbody></table>`}
  </div>`;
}
