// Exchanges (paginated, by vhost) and one exchange: its bindings both ways and a publish form.
import { html, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, exchangeLabel, exchangeSegment, p } from '../api.js';
import { ActionResult, ErrorBox, Facts, PagedTable, Section, field, num, rate, useAction, usePoll,
  yesNo } from '../ui.js';
import { link } from '../router.js';

export function features(o) {
  const f = [];
  if (o.durable) f.push(html`<abbr class="feat" title="durable">D</abbr>`);
  if (o.auto_delete) f.push(html`<abbr class="feat" title="auto-delete">AD</abbr>`);
  if (o.internal) f.push(html`<abbr class="feat" title="internal">I</abbr>`);
  if (o.exclusive) f.push(html`<abbr class="feat" title="exclusive">Excl</abbr>`);
  if (o.arguments && Object.keys(o.arguments).length) {
    f.push(html`<abbr class="feat" title=${JSON.stringify(o.arguments)}>Args</abbr>`);
  }
  return f;
}

const vhostBase = (resource, vhost) => (vhost ? p`/${resource}/${vhost}` : `/${resource}`);

export function Exchanges({ vhost }) {
  return html`<div class="view">
    <h1>Exchanges ${vhost && html`<small>in ${vhost}</small>`}</h1>
    <${PagedTable} base=${vhostBase('exchanges', vhost)} rowKey=${(x) => `${x.vhost}\u0000${x.name}`}
      columns=${[
        { title: 'Vhost', cell: (x) => x.vhost },
        { title: 'Name', cell: (x) => html`<a href=${link('exchanges', x.vhost, exchangeSegment(x.name))}>
          ${exchangeLabel(x.name)}</a>` },
        { title: 'Type', cell: (x) => x.type },
        { title: 'Features', cell: features },
        { title: 'Rate in', cell: (x) => rate(x.message_stats && x.message_stats.publish_in_details), cls: 'n' },
        { title: 'Rate out', cell: (x) => rate(x.message_stats && x.message_stats.publish_out_details), cls: 'n' },
      ]} />
  </div>`;
}

export function BindingsTable({ items, from }) {
  return html`<table class="list"><thead><tr>
      <th>${from ? 'To' : 'From'}</th><th>Kind</th><th>Routing key</th><th>Arguments</th></tr></thead>
    <tbody>${(items || []).map((b) => html`<tr key=${b.properties_key + b.source + b.destination}>
      <td>${from
        ? html`<a href=${link(b.destination_type === 'queue' ? 'queues' : 'exchanges', b.vhost, b.destination)}>${b.destination}</a>`
        : html`<a href=${link('exchanges', b.vhost, exchangeSegment(b.source))}>${exchangeLabel(b.source)}</a>`}</td>
      <td>${from ? b.destination_type : 'exchange'}</td>
      <td class="mono">${b.routing_key}</td>
      <td class="mono">${b.arguments && Object.keys(b.arguments).length ? JSON.stringify(b.arguments) : ''}</td>
    </tr>`)}
    ${items && items.length === 0 && html`<tr><td colspan="4" class="empty">No bindings.</td></tr>`}</tbody>
  </table>`;
}

export function PublishForm({ vhost, exchange, routingKey = '' }) {
  const [form, setForm] = useState({ routing_key: routingKey, payload: '', headers: '', delivery_mode: '1',
    content_type: '' });
  const [act, run] = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      const properties = { delivery_mode: Number(form.delivery_mode) };
      if (form.content_type) properties.content_type = form.content_type;
      if (form.headers.trim()) {
        try {
          properties.headers = JSON.parse(form.headers);
        } catch (err) {
          throw { error: 'bad_request', reason: `headers are not JSON: ${err.message}` };
        }
      }
      return api(p`/exchanges/${vhost}/${exchangeSegment(exchange)}/publish`, { method: 'POST', body: {
        properties, routing_key: form.routing_key, payload: form.payload, payload_encoding: 'string' } });
    }, (out) => (out && out.routed ? 'Message published and routed.'
      : 'Message published, but not routed to any queue.'));
  };
  return html`<form class="stack publish" onSubmit=${submit}>
    <label>Routing key ${field(form, setForm, 'routing_key')}</label>
    <label>Delivery mode <select name="delivery_mode" value=${form.delivery_mode}
        onChange=${(e) => setForm({ ...form, delivery_mode: e.target.value })}>
      <option value="1">1 - non-persistent</option><option value="2">2 - persistent</option></select></label>
    <label>Content type ${field(form, setForm, 'content_type', { placeholder: 'text/plain' })}</label>
    <label>Headers (JSON) ${field(form, setForm, 'headers', { placeholder: '{"x-key": "value"}' })}</label>
    <label>Payload <textarea name="payload" rows="4" value=${form.payload}
      onInput=${(e) => setForm({ ...form, payload: e.target.value })}></textarea></label>
    <div><button type="submit" disabled=${act.busy}>Publish message</button></div>
    <${ActionResult} state=${act} />
  </form>`;
}

export function Exchange({ vhost, name }) {
  const seg = exchangeSegment(name);
  const { data: x, error } = usePoll(() => api(p`/exchanges/${vhost}/${seg}?msg_rates_age=60&msg_rates_incr=5`),
    [vhost, name]);
  const source = usePoll(() => api(p`/exchanges/${vhost}/${seg}/bindings/source`), [vhost, name]);
  const dest = usePoll(() => api(p`/exchanges/${vhost}/${seg}/bindings/destination`), [vhost, name]);
  const [act, run] = useAction();
  const ms = (x && x.message_stats) || {};
  const del = () => {
    if (!window.confirm(`Delete exchange ${name} in ${vhost}?`)) return;
    run(() => api(p`/exchanges/${vhost}/${seg}`, { method: 'DELETE' }), 'Exchange deleted.')
      .then(() => { location.hash = '#/exchanges'; });
  };
  const builtin = name === '' || name === 'amq.default' || name.startsWith('amq.');
  return html`<div class="view">
    <p><a href="#/exchanges">← Exchanges</a></p>
    <h1>Exchange <span class="mono">${exchangeLabel(name)}</span> <small>in ${vhost}</small></h1>
    <${ErrorBox} error=${error} />
    ${x && html`<${Facts} rows=${[
      ['Type', x.type], ['Features', features(x)], ['Durable', yesNo(x.durable)],
      ['Auto-delete', yesNo(x.auto_delete)], ['Internal', yesNo(x.internal)],
      ['Arguments', html`<span class="mono">${JSON.stringify(x.arguments || {})}</span>`],
      ['Messages in', `${num(ms.publish_in ?? 0)} ${rate(ms.publish_in_details)}`],
      ['Messages out', `${num(ms.publish_out ?? 0)} ${rate(ms.publish_out_details)}`],
    ]} />`}
    <${Section} title="Bindings from this exchange">
      <${ErrorBox} error=${source.error} /><${BindingsTable} items=${source.data} from=${true} />
    <//>
    <${Section} title="Bindings to this exchange">
      <${ErrorBox} error=${dest.error} /><${BindingsTable} items=${dest.data} from=${false} />
    <//>
    <${Section} title="Publish message"><${PublishForm} vhost=${vhost} exchange=${name} /><//>
    ${!builtin && html`<${Section} title="Delete">
      <button class="danger" onClick=${del} disabled=${act.busy}>Delete this exchange</button>
      <${ActionResult} state=${act} />
    <//>`}
  </div>`;
}
