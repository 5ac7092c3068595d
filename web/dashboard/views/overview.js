// Overview: message rates and queued messages over the last ten minutes, object totals, listeners.
import { html, useMemo } from '../vendor/htm-preact-standalone.module.js';
import { api } from '../api.js';
import { chartData, SAMPLE_QUERY, TimeChart } from '../chart.js';
import { ErrorBox, Facts, Section, Stat, num, rate, usePoll } from '../ui.js';

const RATES = [
  ['publish', 'Publish'],
  ['deliver_get', 'Deliver / get'],
  ['ack', 'Ack'],
  ['redeliver', 'Redeliver'],
  ['confirm', 'Confirm'],
];
const LENGTHS = [
  ['messages_ready', 'Ready'],
  ['messages_unacknowledged', 'Unacked'],
  ['messages', 'Total'],
];

export function Overview() {
  const { data, error } = usePoll(() => api(`/overview?${SAMPLE_QUERY}`));
  const o = data || {};
  const ms = o.message_stats || {};
  const qt = o.queue_totals || {};
  const rates = useMemo(() => chartData('overview.rates',
    RATES.map(([k]) => ({ details: ms[`${k}_details`] })), 'rate'), [data]);
  const lengths = useMemo(() => chartData('overview.lengths',
    LENGTHS.map(([k]) => ({ details: qt[`${k}_details`], value: qt[k] })), 'length'), [data]);
  const totals = o.object_totals || {};
  return html`<div class="view">
    <h1>Overview</h1>
    <${ErrorBox} error=${error} />
    ${data && html`<p class="muted">${[`${o.product_name || 'Warren'} ${o.product_version || o.rabbitmq_version || ''}`,
      `node ${o.node}`, o.cluster_name && `cluster ${o.cluster_name}`].filter(Boolean).join(' · ')}</p>`}
    <div class="charts">
      <${TimeChart} title="Queued messages" labels=${LENGTHS.map(([, l]) => l)} data=${lengths} />
      <${TimeChart} title="Message rates (/s)" labels=${RATES.map(([, l]) => l)} data=${rates} />
    </div>
    <div class="stats">
      ${LENGTHS.map(([k, l]) => html`<${Stat} k=${`queue_totals.${k}`} label=${`${l} messages`} value=${num(qt[k] ?? 0)} />`)}
      ${RATES.slice(0, 3).map(([k, l]) => html`<${Stat} label=${l} value=${rate(ms[`${k}_details`]) || '0/s'} />`)}
    </div>
    <${Section} title="Totals">
      <div class="stats">
        ${['connections', 'channels', 'exchanges', 'queues', 'consumers'].map((k) =>
          html`<${Stat} k=${`object_totals.${k}`} label=${k} value=${num(totals[k] ?? 0)} />`)}
      </div>
    <//>
    <${Section} title="Listeners">
      <table class="list">
        <thead><tr><th>Protocol</th><th>Address</th><th>Port</th><th>Node</th></tr></thead>
        <tbody>${(o.listeners || []).map((l) => html`<tr>
          <td>${l.protocol}</td><td>${l.ip_address}</td><td>${l.port}</td><td>${l.node}</td></tr>`)}</tbody>
      </table>
    <//>
    ${data && html`<${Section} title="Broker">
      <${Facts} rows=${[
        ['Product', `${o.product_name || ''} ${o.product_version || ''}`],
        ['RabbitMQ compatible', o.rabbitmq_version],
        ['Management', o.management_version],
        ['Rates mode', o.rates_mode],
      ]} />
    <//>`}
  </div>`;
}
