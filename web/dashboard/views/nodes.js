// Nodes: memory, disk and file descriptors against their limits, alarms, uptime. In a cluster
// (docs/cluster.md) every node is listed, running or not; the other nodes show what they published
// in etcd (their statistics need a link between nodes, not there yet), and a fenced node its reason.
import { html } from '../vendor/htm-preact-standalone.module.js';
import { api } from '../api.js';
import { Bar, ErrorBox, Facts, bytes, duration, num, usePoll } from '../ui.js';

function Peer({ n }) {
  const version = (n.applications && n.applications[0] && n.applications[0].version) || '';
  const listeners = (n.listeners || []).map((l) => `${l.protocol} ${l.port}`).join(', ');
  return html`<div class="node card">
    <h2>${n.name} ${n.running ? html`<span class="tag">running</span>` : html`<span class="tag bad">down</span>`}</h2>
    <div class="ok-line">Another node of the cluster: its statistics are not shown here yet.</div>
    <${Facts} rows=${[
      ['Uptime', n.running ? duration(n.uptime) : '—'],
      ['Type', n.type],
      ['OS pid', n.os_pid || '—'],
      ['Version', version],
      ['Listeners', listeners || '—'],
    ]} />
  </div>`;
}

function Node({ n }) {
  if (n.mem_used === undefined) return html`<${Peer} n=${n} />`;
  const alarms = [n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean);
  // Disk: the bar shows how close free space is to the limit (full when free <= limit).
  const diskRatio = n.disk_free > 0 ? n.disk_free_limit / n.disk_free : 1;
  return html`<div class=${`node card${alarms.length ? ' alarmed' : ''}`}>
    <h2>${n.name} ${n.running === false ? html`<span class="tag bad">down</span>` : ''}
      ${n.warren_cluster_state === 'fenced' ? html`<span class="tag bad">fenced</span>` : ''}</h2>
    ${n.warren_fenced_reason
      ? html`<div class="alarm" role="alert">Fenced: ${n.warren_fenced_reason} — clients are refused</div>`
      : ''}
    ${alarms.length
      ? html`<div class="alarm" role="alert">Alarm: ${alarms.join(' and ')} — publishers are blocked</div>`
      : html`<div class="ok-line">No alarms</div>`}
    <div class="gauges">
      <div><h3>Memory</h3>
        <${Bar} value=${n.mem_used} max=${n.mem_limit} alarm=${n.mem_alarm}
          label=${`${bytes(n.mem_used)} of ${bytes(n.mem_limit)} limit`} /></div>
      <div><h3>Disk free</h3>
        <${Bar} value=${Math.min(1, diskRatio)} max=${1} alarm=${n.disk_free_alarm} danger=${0.95}
          label=${`${bytes(n.disk_free)} free, limit ${bytes(n.disk_free_limit)}`} /></div>
      <div><h3>File descriptors</h3>
        <${Bar} value=${n.fd_used} max=${n.fd_total} label=${`${num(n.fd_used)} of ${num(n.fd_total)}`} /></div>
      ${n.sockets_total !== undefined && html`<div><h3>Sockets</h3>
        <${Bar} value=${n.sockets_used} max=${n.sockets_total}
          label=${`${num(n.sockets_used)} of ${num(n.sockets_total)}`} /></div>`}
    </div>
    <${Facts} rows=${[
      ['Uptime', duration(n.uptime)],
      ['Processors', num(n.processors)],
      ['Type', n.type],
      ['OS pid', n.os_pid],
      ['Run queue', num(n.run_queue)],
    ]} />
  </div>`;
}

export function Nodes() {
  const { data, error } = usePoll(() => api('/nodes'));
  return html`<div class="view">
    <h1>Nodes</h1>
    <${ErrorBox} error=${error} />
    ${(data || []).map((n) => html`<${Node} key=${n.name} n=${n} />`)}
  </div>`;
}
