// Charts drawn as inline SVG: lines, steps, points with error bars, shaded bands, axes with round ticks.

import {h, isNum, num} from './dom.js';

export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const MARGIN = {left: 62, right: 14, top: 22, bottom: 40};

// About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten).
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const rough = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values, pad) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) {
    lo -= Math.abs(lo) * 0.1 || 0.5;
    hi += Math.abs(hi) * 0.1 || 0.5;
  }
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

// Every x and y a series contributes, error bars and bands included, clipped to `xRange` when given.
function domain(series, xRange) {
  const xs = [];
  const ys = [];
  const inside = (x) => !xRange || (x >= xRange[0] && x <= xRange[1]);
  for (const s of series) {
    for (const [x, y, se] of s.points || []) {
      if (!isNum(x) || !isNum(y) || !inside(x)) continue;
      xs.push(x);
      ys.push(y);
      if (isNum(se)) ys.push(y - se, y + se);
    }
    for (const [x, lo, hi] of s.band || []) {
      if (isNum(x) && isNum(lo) && isNum(hi) && inside(x)) xs.push(x), ys.push(lo, hi);
    }
  }
  return {xs, ys};
}

export function chart({series, xLabel = '', yLabel = '', width = 620, height = 260, xRange, yRange, title,
  xInteger = false}) {
  const {xs, ys} = domain(series, xRange);
  const [x0, x1] = xRange || extent(xs, 0.02);
  const [y0, y1] = yRange || extent(ys, 0.08);
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const sx = (x) => MARGIN.left + ((x - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (y) => MARGIN.top + (1 - (y - y0) / (y1 - y0 || 1)) * plotH;
  const svg = h('svg.chart', {viewBox: `0 0 ${width} ${height}`, width, height, role: 'img'});
  if (title) svg.appendChild(h('title', {text: title}));
  svg.appendChild(axes({x0, x1, y0, y1, sx, sy, plotW, plotH, xLabel, yLabel, width, height, xInteger}));
  const clip = `clip${Math.random().toString(36).slice(2)}`;
  svg.appendChild(h('clipPath', {id: clip}, h('rect', {x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH})));
  const body = h('g', {'clip-path': `url(#${clip})`});
  series.forEach((s, i) => body.appendChild(drawSeries(s, s.color || COLORS[i % COLORS.length], sx, sy)));
  svg.appendChild(body);
  svg.appendChild(legend(series, width));
  if (!xs.length) svg.appendChild(h('text.empty', {x: width / 2, y: height / 2, 'text-anchor': 'middle', text: 'no data yet'}));
  return svg;
}

function axes({x0, x1, y0, y1, sx, sy, plotW, plotH, xLabel, yLabel, width, height, xInteger}) {
  const g = h('g.axes');
  const bottom = MARGIN.top + plotH;
  g.appendChild(h('rect.frame', {x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH}));
  for (const t of ticks(x0, x1, 6).filter((t) => !xInteger || Number.isInteger(t))) {
    g.appendChild(h('line.grid', {x1: sx(t), x2: sx(t), y1: MARGIN.top, y2: bottom}));
    g.appendChild(h('text', {x: sx(t), y: bottom + 14, 'text-anchor': 'middle', text: num(t, 3)}));
  }
  for (const t of ticks(y0, y1, 5)) {
    g.appendChild(h('line.grid', {x1: MARGIN.left, x2: MARGIN.left + plotW, y1: sy(t), y2: sy(t)}));
    g.appendChild(h('text', {x: MARGIN.left - 5, y: sy(t) + 4, 'text-anchor': 'end', text: num(t, 4)}));
  }
  g.appendChild(h('text.label', {x: MARGIN.left + plotW / 2, y: height - 6, 'text-anchor': 'middle', text: xLabel}));
  g.appendChild(h('text.label', {x: 12, y: MARGIN.top + plotH / 2, 'text-anchor': 'middle',
    transform: `rotate(-90 12 ${MARGIN.top + plotH / 2})`, text: yLabel}));
  return g;
}

function drawSeries(s, color, sx, sy) {
  const g = h('g.series', {'data-series': s.name});
  const band = (s.band || []).filter(([x, lo, hi]) => isNum(x) && isNum(lo) && isNum(hi));
  if (band.length) {
    const upper = band.map(([x, , hi]) => `${sx(x)},${sy(hi)}`);
    const lower = band.slice().reverse().map(([x, lo]) => `${sx(x)},${sy(lo)}`);
    g.appendChild(h('path.band', {d: `M${upper.join('L')}L${lower.join('L')}Z`, fill: color}));
  }
  const points = (s.points || []).filter(([x, y]) => isNum(x) && isNum(y));
  if (s.kind === 'points') {
    for (const [x, y, se, extra] of points) {
      const mark = h('g.point', {}, h('title', {text: (extra && extra.label) || `${num(x)}: ${num(y)}`}));
      if (isNum(se)) mark.appendChild(h('line', {x1: sx(x), x2: sx(x), y1: sy(y - se), y2: sy(y + se), stroke: color}));
      mark.appendChild(h('circle', {cx: sx(x), cy: sy(y), r: 4, fill: (extra && extra.fill) || color, stroke: color}));
      g.appendChild(extra && extra.href ? h('a', {svg: true, href: extra.href}, mark) : mark);
    }
  } else if (points.length) {
    let d = `M${sx(points[0][0])},${sy(points[0][1])}`;
    for (let i = 1; i < points.length; i++) {
      const [x, y] = points[i];
      d += s.kind === 'step' ? `H${sx(x)}V${sy(y)}` : `L${sx(x)},${sy(y)}`;
    }
    g.appendChild(h('path.line', {d, stroke: color, 'stroke-dasharray': s.dash || null}));
  }
  return g;
}

function legend(series, width) {
  const named = series.filter((s) => s.name);
  const g = h('g.legend');
  let x = width - MARGIN.right;
  for (let i = named.length - 1; i >= 0; i--) {
    const s = named[i];
    const color = s.color || COLORS[series.indexOf(s) % COLORS.length];
    const label = h('text', {x, y: 13, 'text-anchor': 'end', text: s.name});
    // Text width is estimated (11px type, about 6.5px a character), with room to spare before the swatch.
    x -= s.name.length * 6.5 + 6;
    g.appendChild(label);
    g.appendChild(h('rect', {x: x - 10, y: 5, width: 10, height: 10, fill: color, opacity: s.band ? 0.5 : 1}));
    x -= 24;
  }
  return g;
}
