// Queues (paginated, by vhost) and one queue: its depth and rates over time, consumers, bindings,
// Get messages, Purge and Delete.
import { html, useMemo, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, p } from '../api.js';
import { chartData, SAMPLE_QUERY, TimeChart } from '../chart.js';
import { ActionResult, ErrorBox, Facts, PagedTable, Section, Stat, bytes, field, num, rate, useAction,
  usePoll, yesNo } from '../ui.js';
import { link } from '../router.js';
import { BindingsTable, PublishForm, features } from './exchanges.js';

const stat = (q, k) => rate(q.message_stats && q.message_stats[`${k}_details`]);

export function Queues({ vhost }) {
  return html`<div class="view">
    <h1>Queues ${vhost && html`<small>in ${vhost}</small>`}</h1>
    <${PagedTable} base=${vhost ? p`/queues/${vhost}` : '/queues'} rowKey=${(q) => `${q.vhost}\u0000${q.name}`}
      empty="No queues."
      columns=${[
        { title: 'Vhost', cell: (q) => q.vhost },
        { title: 'Name', cell: (q) => html`<a class="queue-link" href=${link('queues', q.vhost, q.name)}>${q.name}</a>` },
        { title: 'Type', cell: (q) => q.type },
        { title: 'Features', cell: features },
        { title: 'State', cell: (q) => html`<span class=${`state ${q.state}`}>${q.state}</span>` },
        { title: 'Consumers', cell: (q) => num(q.consumers), cls: 'n' },
        { title: 'Ready', cell: (q) => num(q.messages_ready), cls: 'n ready' },
        { title: 'Unacked', cell: (q) => num(q.messages_unacknowledged), cls: 'n unacked' },
        { title: 'Total', cell: (q) => num(q.messages), cls: 'n total' },
        { title: 'Incoming', cell: (q) => stat(q, 'publish'), cls: 'n' },
        { title: 'Deliver / get', cell: (q) => stat(q, 'deliver_get'), cls: 'n' },
        { title: 'Ack', cell: (q) => stat(q, 'ack'), cls: 'n' },
      ]} />
  </div>`;
}

const DEPTH = [['messages_ready', 'Ready'], ['messages_unacknowledged', 'Unacked']];
const RATES = [['publish', 'Publish'], ['deliver_get', 'Deliver / get'], ['ack', 'Ack'], ['redeliver', 'Redeliver']];

function GetMessages({ vhost, name, onDone }) {
  const [form, setForm] = useState({ count: '1', ackmode: 'ack_requeue_true', encoding: 'auto', truncate: '50000' });
  const [act, run] = useAction();
  const [messages, setMessages] = useState(null);
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      const body = { count: Number(form.count) || 1, ackmode: form.ackmode, encoding: form.encoding };
      if (form.truncate) body.truncate = Number(form.truncate);
      const out = await api(p`/queues/${vhost}/${name}/get`, { method: 'POST', body });
      setMessages(out || []);
      onDone();
      return out;
    }, (out) => (out && out.length ? '' : 'Queue is empty.'));
  };
  const select = (key, options) => html`<select name=${key} value=${form[key]}
    onChange=${(e) => setForm({ ...form, [key]: e.target.value })}>
    ${options.map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select>`;
  return html`<div>
    <form class="inline" onSubmit=${submit}>
      <label>Ack mode ${select('ackmode', [['ack_requeue_true', 'Nack, requeue'], ['ack_requeue_false', 'Ack (remove)'],
        ['reject_requeue_true', 'Reject, requeue'], ['reject_requeue_false', 'Reject (drop)']])}</label>
      <label>Encoding ${select('encoding', [['auto', 'Auto string / base64'], ['base64', 'base64']])}</label>
      <label>Messages ${field(form, setForm, 'count', { size: 3 })}</label>
      <label>Truncate at ${field(form, setForm, 'truncate', { size: 7 })} bytes</label>
      <button type="submit" disabled=${act.busy}>Get messages</button>
    </form>
    <${ActionResult} state=${act} />
    ${messages && messages.map((m, i) => html`<div class="message card">
      <h3>Message ${i + 1}</h3>
      <${Facts} rows=${[
        ['Exchange', m.exchange === '' ? '(AMQP default)' : m.exchange], ['Routing key', m.routing_key],
        ['Redelivered', yesNo(m.redelivered)], ['Remaining in queue', num(m.message_count)],
        ['Properties', html`<span class="mono">${JSON.stringify(m.properties || {})}</span>`],
        ['Payload', `${num(m.payload_bytes)} bytes, encoding ${m.payload_encoding}`],
      ]} />
      <pre class="payload">${m.payload}</pre>
    </div>`)}
  </div>`;
}

export function Queue({ vhost, name }) {
  const { data: q, error, reload } = usePoll(() => api(`${p`/queues/${vhost}/${name}`}?${SAMPLE_QUERY}`), [vhost, name]);
  const bindings = usePoll(() => api(p`/queues/${vhost}/${name}/bindings`), [vhost, name]);
  const [act, run] = useAction();
  const [deleted, setDeleted] = useState(false);
  const key = `queue.${vhost}.${name}`;
  const depth = useMemo(() => chartData(`${key}.depth`,
    DEPTH.map(([k]) => ({ details: q && q[`${k}_details`], value: q && q[k] })), 'length'), [q]);
  const ms = (q && q.message_stats) || {};
  const rates = useMemo(() => chartData(`${key}.rates`,
    RATES.map(([k]) => ({ details: ms[`${k}_details`] })), 'rate'), [q]);
  const purge = () => {
    if (!window.confirm(`Purge all ready messages of ${name}?`)) return;
    run(() => api(p`/queues/${vhost}/${name}/contents`, { method: 'DELETE' }), 'Queue purged.').then(reload);
  };
  const del = () => {
    if (!window.confirm(`Delete queue ${name} in ${vhost}?`)) return;
    run(() => api(p`/queues/${vhost}/${name}`, { method: 'DELETE' }), 'Queue deleted.').then((out) => {
      if (out !== undefined) {
        setDeleted(true);
        location.hash = '#/queues';
      }
    });
  };
  const consumers = (q && q.consumer_details) || [];
  return html`<div class="view">
    <p><a href="#/queues">← Queues</a></p>
    <h1>Queue <span class="mono">${name}</span> <small>in ${vhost}</small></h1>
    <${ErrorBox} error=${deleted ? null : error} />
    ${q && html`<div class="stats">
      <${Stat} k="messages_ready" label="Ready" value=${num(q.messages_ready ?? 0)} />
      <${Stat} k="messages_unacknowledged" label="Unacked" value=${num(q.messages_unacknowledged ?? 0)} />
      <${Stat} k="messages" label="Total" value=${num(q.messages ?? 0)} />
      <${Stat} k="consumers" label="Consumers" value=${num(q.consumers ?? 0)} />
      <${Stat} label="Incoming" value=${rate(ms.publish_details) || '0/s'} />
      <${Stat} label="Deliver / get" value=${rate(ms.deliver_get_details) || '0/s'} />
    </div>`}
    <div class="charts">
      <${TimeChart} title="Queue depth" labels=${DEPTH.map(([, l]) => l)} data=${depth} />
      <${TimeChart} title="Message rates (/s)" labels=${RATES.map(([, l]) => l)} data=${rates} />
    </div>
    ${q && html`<${Section} title="Details"><${Facts} rows=${[
      ['Type', q.type], ['State', q.state], ['Features', features(q)], ['Durable', yesNo(q.durable)],
      ['Auto-delete', yesNo(q.auto_delete)], ['Exclusive', yesNo(q.exclusive)], ['Node', q.node],
      ['Policy', q.policy], ['Arguments', html`<span class="mono">${JSON.stringify(q.arguments || {})}</span>`],
      ['Message bytes', bytes(q.message_bytes)], ['Memory', bytes(q.memory)],
      ['Consumer utilisation', typeof q.consumer_utilisation === 'number'
        ? `${Math.round(q.consumer_utilisation * 100)}%` : ''],
    ]} /><//>`}
    <${Section} title=${`Consumers (${consumers.length})`}>
      <table class="list consumers"><thead><tr><th>Channel</th><th>Tag</th><th>Ack required</th><th>Exclusive</th>
        <th>Prefetch</th><th>Active</th><th>Arguments</th></tr></thead>
      <tbody>${consumers.map((c) => html`<tr key=${c.consumer_tag}>
        <td>${c.channel_details && c.channel_details.connection_name
          ? html`<a href=${link('connections', c.channel_details.connection_name)}>${c.channel_details.name}</a>`
          : c.channel_details && c.channel_details.name}</td>
        <td class="mono">${c.consumer_tag}</td><td>${yesNo(c.ack_required)}</td><td>${yesNo(c.exclusive)}</td>
        <td class="n">${num(c.prefetch_count)}</td><td>${c.activity_status || yesNo(c.active)}</td>
        <td class="mono">${c.arguments && Object.keys(c.arguments).length ? JSON.stringify(c.arguments) : ''}</td>
      </tr>`)}
      ${consumers.length === 0 && html`<tr><td colspan="7" class="empty">No consumers.</td></tr>`}</tbody></table>
    <//>
    <${Section} title="Bindings">
      <${ErrorBox} error=${deleted ? null : bindings.error} />
      <${BindingsTable} items=${bindings.data} from=${false} />
    <//>
    <${Section} title="Publish message">
      <p class="muted">Through the default exchange, with the queue's name as routing key.</p>
      <${PublishForm} vhost=${vhost} exchange="" routingKey=${name} />
    <//>
    <${Section} title="Get messages">
      <p class="muted">Getting messages is destructive unless they are requeued (which marks them redelivered).</p>
      <${GetMessages} vhost=${vhost} name=${name} onDone=${reload} />
    <//>
    <${Section} title="Purge and delete">
      <div class="inline">
        <button class="purge" onClick=${purge} disabled=${act.busy}>Purge messages</button>
        <button class="danger" onClick=${del} disabled=${act.busy}>Delete queue</button>
      </div>
      <${ActionResult} state=${act} />
    <//>
  </div>`;
}
