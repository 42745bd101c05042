// The lineage tree: every experiment under its parent, drawn left to right; each node opens the experiment.

import * as api from '../api.js';
import {h, isNum, num} from '../dom.js';

const ROW = 26;
const COL = 22;
const STATUS_COLORS = {analysed: '#16a34a', failed: '#dc2626', vetoed: '#9ca3af', quarantined: '#d97706'};

async function load() {
  return api.get('/tree');
}

// One row per experiment in depth-first order, indented by depth, as a file tree: an edge runs down from
// the parent and across to the child, so no edge ever crosses a label however wide the tree grows.
export function layout(nodes) {
  const byIndex = new Map(nodes.map((n) => [n.index, n]));
  const children = new Map(nodes.map((n) => [n.index, []]));
  const roots = [];
  for (const n of nodes) {
    if (n.parent !== null && n.parent !== undefined && byIndex.has(n.parent) && n.parent !== n.index) children.get(n.parent).push(n);
    else roots.push(n);
  }
  const placed = new Map();
  const place = (node, depth) => {
    if (placed.has(node.index)) return;  // a loop in bad data stops here
    placed.set(node.index, {node, depth, y: placed.size});
    children.get(node.index).forEach((k) => place(k, depth + 1));
  };
  roots.forEach((r) => place(r, 0));
  // Nodes only reachable through a loop have no root: list them at the top level.
  nodes.filter((n) => !placed.has(n.index)).forEach((n) => place(n, 0));
  const all = [...placed.values()];
  return {placed: all, rows: all.length, depth: Math.max(0, ...all.map((p) => p.depth))};
}

function render(nodes) {
  if (!nodes.length) return h('div', {}, h('h1', {text: 'Lineage'}), h('p', {text: 'No experiment yet.'}));
  const {placed, rows, depth} = layout(nodes);
  const at = new Map(placed.map((p) => [p.node.index, p]));
  const x = (p) => 12 + p.depth * COL;
  const y = (p) => 18 + p.y * ROW;
  const svg = h('svg.tree', {id: 'lineage', width: (depth + 1) * COL + 520, height: rows * ROW + 24});
  for (const p of placed) {
    const parent = at.get(p.node.parent);
    if (!parent || parent === p) continue;
    svg.appendChild(h('path.edge', {d: `M${x(parent)},${y(parent)}V${y(p)}H${x(p)}`}));
  }
  for (const p of placed) {
    const n = p.node;
    const color = STATUS_COLORS[n.status] || '#2563eb';
    const fitness = isNum(n.fitness) ? ` · ${num(n.fitness, 3)}` : '';
    svg.appendChild(h('a', {svg: true, href: `#/experiment/${n.index}`, 'data-index': n.index, class: 'node'},
      h('title', {text: `#${n.index} ${n.name}: ${n.status}, ${n.fidelity}${n.origin ? `, ${n.origin}` : ''}`}),
      n.is_baseline ? h('rect', {x: x(p) - 6, y: y(p) - 6, width: 12, height: 12, fill: color})
        : h('circle', {cx: x(p), cy: y(p), r: 6, fill: color}),
      h('text', {x: x(p) + 10, y: y(p) + 4, text: `#${n.index} ${n.name}${fitness}`})));
  }
  return h('div', {},
    h('h1', {text: `Lineage (${nodes.length} experiments)`}),
    h('p.muted', {text: 'Squares are baselines; green analysed, red failed, grey vetoed, blue in progress. '
      + 'The number after a name is its fitness. Click a node to open the experiment.'}),
    h('section', {style: 'overflow:auto'}, svg));
}

export default {load, render};
