// A small time-series line chart in SVG: a few series over the last minutes, y from 0,
// a legend that carries the latest values (so the numbers are readable without the
// picture), and a dashed style for reference lines such as a target.

const NS = 'http://www.w3.org/2000/svg';
const HEIGHT = 140;
const PAD = { left: 44, right: 8, top: 8, bottom: 18 };

function el(name, attrs = {}, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.append(node);
  return node;
}

/** A round upper bound for the y axis: 1, 2, 5 × 10^n. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function shortNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(v < 10 && v % 1 ? 1 : 0)}`;
}

export class TimeChart {
  /**
   * @param {HTMLElement} parent
   * @param {{ id: string, title: string, series: {label: string, color: string, dash?: boolean}[],
   *           format?: (v: number) => string, windowMs?: number }} opts
   */
  constructor(parent, opts) {
    this.opts = { windowMs: 5 * 60_000, format: (v) => shortNumber(v), ...opts };
    this.points = [];
    this.figure = document.createElement('figure');
    this.figure.className = 'chart';
    this.figure.id = opts.id;
    const caption = document.createElement('figcaption');
    const title = document.createElement('span');
    title.textContent = opts.title;
    this.now = document.createElement('span');
    this.now.className = 'now';
    caption.append(title, this.now);
    this.svg = el('svg', { role: 'img', height: HEIGHT, 'aria-label': opts.title });
    this.legend = document.createElement('ul');
    this.legend.className = 'legend';
    this.legendValues = opts.series.map((s) => {
      const li = document.createElement('li');
      const swatch = document.createElement('i');
      swatch.style.borderTopColor = s.color;
      if (s.dash) swatch.className = 'dash';
      const value = document.createElement('span');
      li.append(swatch, document.createTextNode(`${s.label} `), value);
      this.legend.append(li);
      return value;
    });
    this.figure.append(caption, this.svg, this.legend);
    parent.append(this.figure);
  }

  /** Adds a sample: `values[i]` belongs to series i (null leaves a gap). */
  push(t, values) {
    this.points.push({ t, values });
    const oldest = t - this.opts.windowMs;
    while (this.points.length && this.points[0].t < oldest) this.points.shift();
  }

  /** Replaces every sample (e.g. when switching sales). */
  reset(points = []) {
    this.points = points.slice();
  }

  render() {
    const { series, format, windowMs } = this.opts;
    const width = Math.max(200, this.svg.clientWidth || this.figure.clientWidth || 300);
    this.svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    this.svg.replaceChildren();
    const last = this.points[this.points.length - 1];
    const now = last ? last.t : Date.now();
    // Show at least a minute, at most the window: a young chart is not squeezed to a dot.
    const first = this.points.length ? this.points[0].t : now;
    const span = Math.min(windowMs, Math.max(60_000, now - first));
    const t0 = now - span;
    let max = 0;
    for (const p of this.points) for (const v of p.values) if (v !== null && v > max) max = v;
    const top = niceMax(max);
    const x = (t) => PAD.left + ((t - t0) / span) * (width - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - v / top) * (HEIGHT - PAD.top - PAD.bottom);

    for (const frac of [0, 0.5, 1]) {
      const v = top * frac;
      el('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }, this.svg);
      const label = el('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 3, 'text-anchor': 'end' }, this.svg);
      label.textContent = format(v);
    }
    const minutes = span / 60_000;
    const left = el('text', { class: 'axis', x: PAD.left, y: HEIGHT - 4 }, this.svg);
    left.textContent = `−${minutes >= 1 ? `${+minutes.toFixed(1)} min` : `${Math.round(span / 1000)} s`}`;
    const right = el('text', { class: 'axis', x: width - PAD.right, y: HEIGHT - 4, 'text-anchor': 'end' }, this.svg);
    right.textContent = 'now';

    series.forEach((s, i) => {
      let d = '';
      let pen = false;
      for (const p of this.points) {
        const v = p.values[i];
        if (v === null || v === undefined) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (!d) return;
      const attrs = { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round' };
      if (s.dash) attrs['stroke-dasharray'] = '5 4';
      el('path', attrs, this.svg);
    });

    const latest = last ? last.values : series.map(() => null);
    const words = series.map((s, i) => `${s.label} ${latest[i] === null ? '—' : format(latest[i])}`);
    series.forEach((s, i) => {
      this.legendValues[i].textContent = latest[i] === null ? '—' : format(latest[i]);
    });
    this.now.textContent = latest[0] === null ? '' : format(latest[0]);
    this.svg.setAttribute('aria-label', `${this.opts.title}, last ${Math.round(span / 1000)} seconds. Now: ${words.join(', ')}.`);
  }
}
