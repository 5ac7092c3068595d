// Shared pieces of the views: formatting, polling, the paginated list with its name filter,
// error boxes, bars and small forms.
import { html, useState, useEffect, useRef } from './vendor/htm-preact-standalone.module.js';
import { api } from './api.js';

// How often views poll (ms). localStorage 'warren.dashboard.poll_ms' overrides it (the tests).
export const POLL_MS = Number(localStorage.getItem('warren.dashboard.poll_ms')) || 5000;

// --- formatting ----------------------------------------------------------------------------------

export function num(v) {
  if (v === undefined || v === null || v === '') return '';
  if (typeof v !== 'number') return String(v);
  return Number.isInteger(v) ? v.toLocaleString('en') : v.toLocaleString('en', { maximumFractionDigits: 2 });
}

export function rate(details) {
  const r = details && details.rate;
  return typeof r === 'number' ? `${r.toLocaleString('en', { maximumFractionDigits: r < 10 ? 1 : 0 })}/s` : '';
}

export function bytes(v) {
  if (typeof v !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toLocaleString('en', { maximumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}

export function duration(ms) {
  if (typeof ms !== 'number') return '';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export const yesNo = (b) => (b === true ? 'yes' : b === false ? 'no' : '');
export const vhostLabel = (v) => (v === undefined ? '' : v);

// Dotted access ("message_stats.publish_details") into an object; undefined when absent.
export function get(o, path) {
  return path.split('.').reduce((x, k) => (x === undefined || x === null ? undefined : x[k]), o);
}

// --- polling -------------------------------------------------------------------------------------

// Loads at once, then every POLL_MS while mounted. `deps` restart it; reload() polls now.
export function usePoll(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loaded: false });
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    let alive = true;
    let timer = null;
    const run = async () => {
      try {
        const data = await load();
        if (alive) setState({ data, error: null, loaded: true });
      } catch (error) {
        if (alive) setState((s) => ({ data: s.data, error, loaded: true }));
      }
      if (alive) timer = setTimeout(run, POLL_MS);
    };
    run();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [...deps, nonce]);
  return { ...state, reload: () => setNonce((n) => n + 1) };
}

// --- small components ----------------------------------------------------------------------------

export function ErrorBox({ error }) {
  if (!error) return null;
  const status = error.status ? `${error.status} ` : '';
  return html`<div class="error" role="alert">
    <strong>${status}${error.error || 'error'}</strong>${error.reason ? html`: ${error.reason}` : ''}
  </div>`;
}

export function Notice({ text, kind = 'ok' }) {
  return text ? html`<div class=${`notice ${kind}`}>${text}</div>` : null;
}

// A horizontal bar: value of max, red past `danger` (a fraction) or when `alarm`.
export function Bar({ value, max, label, alarm = false, danger = 0.9 }) {
  const frac = max > 0 ? Math.min(1, value / max) : 0;
  const cls = alarm || frac >= danger ? 'bar danger' : frac >= danger * 0.8 ? 'bar warn' : 'bar';
  return html`<div class=${cls} title=${label}>
    <div class="fill" style=${`width:${(frac * 100).toFixed(1)}%`}></div>
    <span>${label}</span>
  </div>`;
}

export function Stat({ label, value, k }) {
  return html`<div class="stat"><div class="v" data-k=${k}>${value}</div><div class="l">${label}</div></div>`;
}

// A definition list of [label, value] pairs.
export function Facts({ rows }) {
  return html`<table class="facts"><tbody>
    ${rows.filter((r) => r).map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}
  </tbody></table>`;
}

export function Section({ title, children, right }) {
  return html`<section><div class="section-head"><h2>${title}</h2>${right}</div>${children}</section>`;
}

// Runs an action (a promise-returning function), showing its error or a success message.
export function useAction() {
  const [state, setState] = useState({ busy: false, error: null, message: '' });
  const run = async (fn, message = '') => {
    setState({ busy: true, error: null, message: '' });
    try {
      const out = await fn();
      setState({ busy: false, error: null, message: typeof message === 'function' ? message(out) : message });
      return out;
    } catch (error) {
      setState({ busy: false, error, message: '' });
      return undefined;
    }
  };
  return [state, run];
}

export function ActionResult({ state }) {
  return html`<${ErrorBox} error=${state.error} /><${Notice} text=${state.message} />`;
}

// --- paginated lists -----------------------------------------------------------------------------

export const PAGE_SIZE = 100;

// A list from a paginated endpoint (`base` like "/queues" or "/queues/%2F") with page links and
// a name filter (substring, or a regex with use_regex). columns: [{title, cell(item), cls}].
export function PagedTable({ base, columns, rowKey, empty = 'Nothing here yet.', extra = '' }) {
  const [page, setPage] = useState(1);
  const [filter, setFilter] = useState({ name: '', regex: false });
  const [draft, setDraft] = useState({ name: '', regex: false });
  const debounce = useRef(null);
  useEffect(() => setPage(1), [base, filter.name, filter.regex]);
  const query = `page=${page}&page_size=${PAGE_SIZE}&name=${encodeURIComponent(filter.name)}`
                + `&use_regex=${filter.regex}&pagination=true${extra}`;
  const { data, error, loaded } = usePoll(() => api(`${base}?${query}`), [base, query]);

  const change = (next) => {
    setDraft(next);
    clearTimeout(debounce.current);
    debounce.current = setTimeout(() => setFilter(next), 300);
  };
  // A server that ignores ?page answers a plain array: one page.
  const listing = Array.isArray(data)
    ? { items: data, page: 1, page_count: 1, total_count: data.length, filtered_count: data.length }
    : data;
  const items = (listing && listing.items) || [];
  return html`<div class="paged">
    <div class="toolbar">
      <label>Filter <input type="search" class="filter" placeholder="name" value=${draft.name}
        onInput=${(e) => change({ ...draft, name: e.target.value })} /></label>
      <label class="check"><input type="checkbox" checked=${draft.regex}
        onChange=${(e) => change({ ...draft, regex: e.target.checked })} /> regex</label>
      ${listing && html`<span class="count">${num(listing.filtered_count)} of ${num(listing.total_count)}</span>`}
      <${Pager} page=${listing ? listing.page : page} count=${listing ? listing.page_count : 1} go=${setPage} />
    </div>
    <${ErrorBox} error=${error} />
    <table class="list">
      <thead><tr>${columns.map((c) => html`<th class=${c.cls || ''}>${c.title}</th>`)}</tr></thead>
      <tbody>
        ${items.map((it) => html`<tr key=${rowKey(it)}>
          ${columns.map((c) => html`<td class=${c.cls || ''}>${c.cell(it)}</td>`)}
        </tr>`)}
        ${loaded && !error && items.length === 0
          && html`<tr><td colspan=${columns.length} class="empty">${empty}</td></tr>`}
      </tbody>
    </table>
  </div>`;
}

export function Pager({ page, count, go }) {
  if (!count || count <= 1) return null;
  // First, last, and a window around the current page.
  const pages = [...new Set([1, page - 2, page - 1, page, page + 1, page + 2, count])]
    .filter((n) => n >= 1 && n <= count).sort((a, b) => a - b);
  const out = [];
  pages.forEach((n, i) => {
    if (i && n - pages[i - 1] > 1) out.push(html`<span class="gap">…</span>`);
    out.push(n === page
      ? html`<span class="page current">${n}</span>`
      : html`<a class="page" href="javascript:void 0" onClick=${() => go(n)}>${n}</a>`);
  });
  return html`<span class="pager">Page ${out}</span>`;
}

// Text inputs bound to one state object: field(state, set, key, attrs).
export function field(state, set, key, attrs = {}) {
  return html`<input name=${key} value=${state[key]} onInput=${(e) => set({ ...state, [key]: e.target.value })}
    ...${attrs} />`;
}
