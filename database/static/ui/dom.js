// Small DOM and formatting helpers. Everything shown comes from candidate programs and LLM text, which
// are untrusted: nodes are built with textContent only, never from HTML strings.

const SVG_NS = 'http://www.w3.org/2000/svg';
const SVG_TAGS = new Set(['svg', 'g', 'line', 'path', 'circle', 'rect', 'text', 'title', 'clipPath', 'a']);

// h('tag.class', {attr: value, onclick: fn}, child, ...): children may be nodes, strings, numbers,
// null (skipped) or arrays of those.
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const svg = SVG_TAGS.has(tag) && (tag !== 'a' || (attrs && attrs.svg));
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  if (classes.length) el.setAttribute('class', classes.join(' '));
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false || key === 'svg') continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'value' && !svg) el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function isNum(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

// Significant digits suited to the size of the number: losses, fractions, parameter counts alike.
export function num(value, digits = 4) {
  if (!isNum(value)) return value === null || value === undefined ? '–' : String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e6 || size < 1e-3)) return value.toExponential(2);
  // Beyond the digits asked for, a rounded whole number reads better than exponent notation.
  if (Number.isInteger(value) || size >= 10 ** digits) return Math.round(value).toLocaleString('en-US');
  return value.toPrecision(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

// "mean ± se (n=3)" for a {mean, se, n} record, else the plain value.
export function pm(stats, value, digits = 4) {
  if (stats && isNum(stats.mean)) {
    if (isNum(stats.se) && (stats.n || 0) > 1) return `${num(stats.mean, digits)} ± ${num(stats.se, 2)} (n=${stats.n})`;
    return num(stats.mean, digits);
  }
  return num(value, digits);
}

export function seconds(value) {
  if (!isNum(value)) return '–';
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${(value / 60).toFixed(1)} min`;
  return `${(value / 3600).toFixed(2)} h`;
}

export function when(epochSeconds) {
  if (!isNum(epochSeconds)) return '–';
  return new Date(epochSeconds * 1000).toLocaleString();
}

export function badge(status) {
  return h(`span.badge.s-${status || 'unknown'}`, {text: status || '?'});
}

export function link(index, label) {
  return h('a', {href: `#/experiment/${index}`, 'data-index': index}, label ?? `#${index}`);
}

export function section(title, ...children) {
  return h('section', {}, h('h2', {text: title}), ...children);
}

// A table from column specs {title, cell(row) -> node|text}; rowAttrs(row) gives each row's attributes.
export function table(columns, rows, {rowAttrs = () => ({}), ...attrs} = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {text: c.title})))),
    h('tbody', {}, rows.map((row) => h('tr', rowAttrs(row), columns.map((c) => h('td', {}, c.cell(row)))))));
}
