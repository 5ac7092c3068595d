// The web gateway: browser connections per transport, online users, rooms, deliveries per second
// (GET /api/warren/gateway, Warren's own endpoint; "not available" where it answers 404).
import { html, useMemo } from '../vendor/htm-preact-standalone.module.js';
import { api } from '../api.js';
import { chartData, TimeChart } from '../chart.js';
import { ErrorBox, Stat, num, rate, usePoll } from '../ui.js';

const TRANSPORTS = [['websocket', 'WebSocket'], ['sse', 'SSE'], ['longpoll', 'Long-poll'], ['stream', 'Stream']];

export function Gateway() {
  const { data: g, error } = usePoll(() => api('/warren/gateway').catch((e) => {
    if (e.status === 404) return { unavailable: true };
    throw e;
  }));
  const conns = (g && g.connections) || {};
  const usable = g && !g.unavailable;
  const delivered = useMemo(() => chartData('gateway.delivered',
    [{ details: usable ? g.events_delivered_details : undefined }], 'rate'), [g]);
  const online = useMemo(() => chartData('gateway.online',
    [{ value: usable ? g.online_users : 0 }, ...TRANSPORTS.map(([k]) => ({ value: conns[k] ?? 0 }))], 'length'), [g]);
  const total = TRANSPORTS.reduce((s, [k]) => s + (conns[k] || 0), 0);
  return html`<div class="view">
    <h1>Web gateway</h1>
    <${ErrorBox} error=${error} />
    ${g && g.unavailable && html`<p class="notice">Web gateway statistics are not available on this broker
      (no /api/warren/gateway).</p>`}
    ${usable && html`<div>
      <div class="stats">
        <${Stat} k="online_users" label="Online users" value=${num(g.online_users)} />
        <${Stat} k="rooms" label="Rooms" value=${num(g.rooms)} />
        <${Stat} k="inboxes" label="Inboxes" value=${num(g.inboxes)} />
        <${Stat} k="held_events" label="Held events" value=${num(g.held_events)} />
        <${Stat} k="events_delivered" label="Events delivered" value=${num(g.events_delivered)} />
        <${Stat} label="Deliveries" value=${rate(g.events_delivered_details) || '0/s'} />
      </div>
      <table class="list transports"><thead><tr><th>Transport</th><th class="n">Connections</th><th>Share</th></tr></thead>
        <tbody>${TRANSPORTS.map(([k, l]) => html`<tr><td>${l}</td><td class="n">${num(conns[k] ?? 0)}</td>
          <td><div class="bar"><div class="fill" style=${`width:${total ? ((conns[k] || 0) * 100 / total).toFixed(1) : 0}%`}></div></div></td>
        </tr>`)}</tbody></table>
      <div class="charts">
        <${TimeChart} title="Events delivered (/s)" labels=${['Delivered']} data=${delivered} />
        <${TimeChart} title="Online" labels=${['Users', ...TRANSPORTS.map(([, l]) => l)]} data=${online} />
      </div>
    </div>`}
  </div>`;
}
