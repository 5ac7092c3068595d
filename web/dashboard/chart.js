// Small time-series charts (uPlot) and where their points come from: the API's `samples` when it
// sends them (?lengths_age=...&msg_rates_age=...), otherwise the values polled so far, kept
// client-side for ten minutes.
import { html, useEffect, useRef } from './vendor/htm-preact-standalone.module.js';

export const WINDOW_S = 600; // the ten minutes asked for with ?*_age=600
export const SAMPLE_QUERY = `lengths_age=${WINDOW_S}&lengths_incr=5&msg_rates_age=${WINDOW_S}&msg_rates_incr=5`;

export const COLORS = ['#1f6feb', '#e36209', '#2da44e', '#bf3989', '#8250df', '#6e7781'];

// Points polled while the API sends no samples, by chart: {t: [s], ys: [[...], ...]}.
const polled = new Map();

function remember(key, values) {
  const now = Date.now() / 1000;
  let h = polled.get(key);
  if (!h || h.ys.length !== values.length) {
    h = { t: [], ys: values.map(() => []) };
    polled.set(key, h);
  }
  h.t.push(now);
  values.forEach((v, i) => h.ys[i].push(typeof v === 'number' ? v : null));
  while (h.t.length && h.t[0] < now - WINDOW_S) {
    h.t.shift();
    h.ys.forEach((y) => y.shift());
  }
  return [h.t.slice(), ...h.ys.map((y) => y.slice())];
}

// samples [{sample, timestamp(ms)}], newest first (RabbitMQ's order) -> ascending [[t s], [v]].
function ascending(samples) {
  return samples.slice().sort((a, b) => a.timestamp - b.timestamp);
}

// uPlot data for one chart. key: names the chart for client-side history. series: one entry per
// line, {details: the *_details object (may be absent), value: the current value}. kind:
// 'length' plots sample values; 'rate' plots rates, from the differences of the counters that
// rate samples hold, or from the polled `rate`.
export function chartData(key, series, kind) {
  const withSamples = series.filter((s) => s.details && Array.isArray(s.details.samples)
                                           && s.details.samples.length > 1);
  if (withSamples.length) {
    const base = ascending(withSamples[0].details.samples);
    let ts = base.map((s) => s.timestamp);
    const lines = series.map((s) => {
      const by = new Map(((s.details && s.details.samples) || []).map((x) => [x.timestamp, x.sample]));
      return ts.map((t) => (by.has(t) ? by.get(t) : null));
    });
    let out = lines;
    if (kind === 'rate') {
      out = lines.map((line) => line.slice(1).map((v, i) => {
        const prev = line[i];
        const dt = (ts[i + 1] - ts[i]) / 1000;
        return v === null || prev === null || dt <= 0 ? null : Math.max(0, (v - prev) / dt);
      }));
      ts = ts.slice(1);
    }
    // A line the API sent no samples for shows its current value at the last point only.
    series.forEach((s, i) => {
      if (withSamples.includes(s) || !out[i].length) return;
      out[i][out[i].length - 1] = (kind === 'rate' ? s.details && s.details.rate : s.value) ?? null;
    });
    return [ts.map((t) => t / 1000), ...out];
  }
  const values = series.map((s) => (kind === 'rate' ? s.details && s.details.rate : s.value) ?? 0);
  return remember(key, values);
}

// A chart of several lines over time. labels: the lines' names; data: [xs, ...ys] (chartData).
export function TimeChart({ title, labels, data, height = 170, unit = '' }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    if (!window.uPlot || !box.current) return undefined;
    const opts = {
      width: Math.max(240, box.current.clientWidth),
      height,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [{ stroke: '#555', grid: { stroke: '#eee' } },
        { stroke: '#555', grid: { stroke: '#eee' }, size: 60, values: (u, vs) => vs.map((v) => `${v}${unit}`) }],
      series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2,
        points: { show: false } }))],
    };
    plot.current = new window.uPlot(opts, data, box.current);
    const resize = new ResizeObserver(() => {
      if (plot.current && box.current) plot.current.setSize({ width: Math.max(240, box.current.clientWidth), height });
    });
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [labels.join('|'), height]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  // The latest values, as text and as an attribute tests read.
  const last = labels.map((l, i) => {
    const ys = data[i + 1] || [];
    const v = ys.length ? ys[ys.length - 1] : null;
    return [l, v === null || v === undefined ? 0 : Math.round(v * 100) / 100];
  });
  return html`<figure class="chart" data-points=${(data[0] || []).length}
      data-last=${last.map(([l, v]) => `${l}=${v}`).join(',')}>
    <figcaption>${title}</figcaption>
    <div ref=${box} class="plot"></div>
    ${!window.uPlot && html`<p class="muted">(charts unavailable)</p>`}
  </figure>`;
}
