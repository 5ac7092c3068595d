// Connections (paginated) and one connection's detail, with its channels and a Close button
// (DELETE /api/connections/{name}, the reason in X-Reason).
import { html, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, p } from '../api.js';
import { ActionResult, ErrorBox, Facts, PagedTable, Section, bytes, duration, num, rate, useAction,
  usePoll, yesNo } from '../ui.js';
import { link } from '../router.js';

const clientName = (c) => (c.client_properties && c.client_properties.connection_name) || '';
const client = (c) => {
  const cp = c.client_properties || {};
  return [cp.product, cp.version].filter(Boolean).join(' ');
};

export function Connections() {
  return html`<div class="view">
    <h1>Connections</h1>
    <${PagedTable} base="/connections" rowKey=${(c) => c.name} empty="No connections."
      columns=${[
        { title: 'Name', cell: (c) => html`<a class="conn-link" href=${link('connections', c.name)}>${c.name}</a>
          ${clientName(c) && html`<div class="muted">${clientName(c)}</div>`}` },
        { title: 'Vhost', cell: (c) => c.vhost },
        { title: 'User', cell: (c) => c.user },
        { title: 'State', cell: (c) => html`<span class=${`state ${c.state}`}>${c.state}</span>` },
        { title: 'Protocol', cell: (c) => c.protocol },
        { title: 'Client', cell: client },
        { title: 'Channels', cell: (c) => num(c.channels), cls: 'n' },
        { title: 'From client', cell: (c) => rate(c.recv_oct_details) && `${bytes(c.recv_oct_details.rate)}/s`, cls: 'n' },
        { title: 'To client', cell: (c) => rate(c.send_oct_details) && `${bytes(c.send_oct_details.rate)}/s`, cls: 'n' },
      ]} />
  </div>`;
}

export function Connection({ name }) {
  const { data: c, error } = usePoll(() => api(p`/connections/${name}`), [name]);
  const channels = usePoll(() => api(p`/connections/${name}/channels`), [name]);
  const [reason, setReason] = useState('Closed from the Warren dashboard');
  const [act, run] = useAction();
  const [closed, setClosed] = useState(false);
  const close = () => {
    if (!window.confirm(`Close connection ${name}?`)) return;
    run(() => api(p`/connections/${name}`, { method: 'DELETE', headers: { 'X-Reason': reason } }),
      'Connection closed.').then(() => setClosed(true));
  };
  return html`<div class="view">
    <p><a href="#/connections">← Connections</a></p>
    <h1>Connection <span class="mono">${name}</span></h1>
    <${ErrorBox} error=${closed ? null : error} />
    ${c && html`<${Facts} rows=${[
      ['User', c.user], ['Vhost', c.vhost], ['State', c.state], ['Protocol', c.protocol],
      ['Client', `${client(c)}${clientName(c) ? ` (${clientName(c)})` : ''}`],
      ['Peer', `${c.peer_host}:${c.peer_port}`], ['Connected', c.connected_at && new Date(c.connected_at).toLocaleString()],
      ['Open for', c.connected_at && duration(Date.now() - c.connected_at)],
      ['Channels', num(c.channels)], ['Channel max', num(c.channel_max)], ['Frame max', num(c.frame_max)],
      ['Heartbeat', c.timeout !== undefined && `${c.timeout}s`], ['TLS', yesNo(c.ssl)],
      ['Auth mechanism', c.auth_mechanism],
      ['Received', `${bytes(c.recv_oct)} ${rate(c.recv_oct_details) && `(${bytes(c.recv_oct_details.rate)}/s)`}`],
      ['Sent', `${bytes(c.send_oct)} ${rate(c.send_oct_details) && `(${bytes(c.send_oct_details.rate)}/s)`}`],
    ]} />`}
    <${Section} title="Channels">
      <${ErrorBox} error=${closed ? null : channels.error} />
      <table class="list"><thead><tr><th>Channel</th><th>State</th><th>Consumers</th><th>Prefetch</th>
        <th>Unacked</th></tr></thead>
      <tbody>${(channels.data || []).map((ch) => html`<tr key=${ch.name}><td>${ch.name}</td><td>${ch.state}</td>
        <td class="n">${num(ch.consumer_count)}</td><td class="n">${num(ch.prefetch_count)}</td>
        <td class="n">${num(ch.messages_unacknowledged)}</td></tr>`)}</tbody></table>
    <//>
    <${Section} title="Close this connection">
      <form class="inline" onSubmit=${(e) => { e.preventDefault(); close(); }}>
        <label>Reason <input name="reason" size="40" value=${reason} onInput=${(e) => setReason(e.target.value)} /></label>
        <button type="submit" class="danger" disabled=${act.busy || closed}>Close connection</button>
      </form>
      <${ActionResult} state=${act} />
    <//>
  </div>`;
}

export function Channels() {
  const mode = (ch) => [ch.confirm && 'C', ch.transactional && 'T'].filter(Boolean).join(' ');
  return html`<div class="view">
    <h1>Channels</h1>
    <${PagedTable} base="/channels" rowKey=${(ch) => ch.name} empty="No channels."
      columns=${[
        { title: 'Channel', cell: (ch) => html`${ch.connection_details
          ? html`<a href=${link('connections', ch.connection_details.name)}>${ch.name}</a>` : ch.name}` },
        { title: 'Vhost', cell: (ch) => ch.vhost },
        { title: 'User', cell: (ch) => ch.user },
        { title: 'Mode', cell: mode },
        { title: 'State', cell: (ch) => ch.state },
        { title: 'Consumers', cell: (ch) => num(ch.consumer_count), cls: 'n' },
        { title: 'Prefetch', cell: (ch) => num(ch.prefetch_count), cls: 'n' },
        { title: 'Unacked', cell: (ch) => num(ch.messages_unacknowledged), cls: 'n' },
        { title: 'Unconfirmed', cell: (ch) => num(ch.messages_unconfirmed), cls: 'n' },
        { title: 'Publish', cell: (ch) => rate(ch.message_stats && ch.message_stats.publish_details), cls: 'n' },
        { title: 'Deliver / get', cell: (ch) => rate(ch.message_stats && ch.message_stats.deliver_get_details), cls: 'n' },
        { title: 'Ack', cell: (ch) => rate(ch.message_stats && ch.message_stats.ack_details), cls: 'n' },
      ]} />
  </div>`;
}
