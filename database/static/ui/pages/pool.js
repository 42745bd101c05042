// The candidate pool, sortable by any column, with mean ± SE where an experiment was replicated over seeds.

import * as api from '../api.js';
import {h, isNum, link, num, pm} from '../dom.js';

// The sort survives the poll's re-renders and visits to other pages.
let sortKey = 'rank';
let ascending = true;

const stat = (record, key) => {
  const r = record || {};
  const stats = r[`${key}_stats`];
  return {stats, value: stats && isNum(stats.mean) ? stats.mean : r[key]};
};

const COLUMNS = [
  {key: 'rank', title: 'rank', value: (e, i) => i + 1, cell: (e, i) => String(i + 1)},
  {key: 'index', title: '#', value: (e) => e.index, cell: (e) => link(e.index)},
  {key: 'name', title: 'name', value: (e) => e.name, cell: (e) => link(e.index, e.name)},
  {key: 'fidelity', title: 'rung', value: (e) => e.fidelity, cell: (e) => e.fidelity},
  {key: 'origin', title: 'origin', value: (e) => e.origin || '', cell: (e) => (e.is_baseline ? 'baseline' : e.origin || '')},
  {key: 'parent', title: 'parent', value: (e) => e.parent ?? -1, cell: (e) => (e.parent ? link(e.parent) : '–')},
  {key: 'fitness', title: 'fitness', num: true, value: (e) => e.fitness, cell: (e) => num(e.fitness)},
  {key: 'loss_part', title: 'loss part', num: true, value: (e) => (e.fitness_parts || {}).loss,
    cell: (e) => num((e.fitness_parts || {}).loss, 3)},
  {key: 'bench_part', title: 'bench part', num: true, value: (e) => (e.fitness_parts || {}).benchmark,
    cell: (e) => num((e.fitness_parts || {}).benchmark, 3)},
  {key: 'judge_part', title: 'judge', num: true, value: (e) => (e.fitness_parts || {}).judge,
    cell: (e) => num((e.fitness_parts || {}).judge, 3)},
  {key: 'val_loss', title: 'val loss', num: true, value: (e) => stat(e.train, 'val_loss').value,
    cell: (e) => pm(stat(e.train, 'val_loss').stats, stat(e.train, 'val_loss').value)},
  {key: 'benchmark', title: 'benchmark', num: true, value: (e) => stat(e.eval, 'benchmark').value ?? (e.eval || {}).average,
    cell: (e) => pm((e.eval || {}).benchmark_stats, (e.eval || {}).average)},
  {key: 'recall', title: 'recall', num: true, value: (e) => stat(e.eval, 'recall').value,
    cell: (e) => pm(stat(e.eval, 'recall').stats, stat(e.eval, 'recall').value)},
  {key: 'speed', title: 'tokens/s', num: true, value: (e) => stat(e.train, 'tokens_per_s').value,
    cell: (e) => pm(stat(e.train, 'tokens_per_s').stats, stat(e.train, 'tokens_per_s').value, 3)},
  {key: 'beats', title: 'beats baseline', value: (e) => (e.beats_baseline ? 1 : 0), cell: (e) => (e.beats_baseline ? 'yes' : '')},
];

async function load() {
  const pool = await api.get('/candidates?k=1000');
  return pool.map(({program, ...rest}) => rest);
}

function compare(a, b) {
  // Missing values sort last whichever the direction.
  const missA = a === null || a === undefined || (typeof a === 'number' && !Number.isFinite(a));
  const missB = b === null || b === undefined || (typeof b === 'number' && !Number.isFinite(b));
  if (missA || missB) return missA === missB ? 0 : missA ? 1 : -1;
  const order = typeof a === 'string' ? a.localeCompare(b) : a - b;
  return ascending ? order : -order;
}

function draw(container, pool) {
  const column = COLUMNS.find((c) => c.key === sortKey) || COLUMNS[0];
  const rows = pool.map((e, i) => ({e, i}));
  rows.sort((x, y) => compare(column.value(x.e, x.i), column.value(y.e, y.i)) || x.i - y.i);
  const head = h('tr', {}, COLUMNS.map((c) => h(`th${c.num ? '.num' : ''}`, {
    'data-key': c.key, class: c.key === sortKey ? `${c.num ? 'num ' : ''}sorted-${ascending ? 'asc' : 'desc'}` : null,
    title: 'sort by this column', text: c.title,
    onclick: () => {
      ascending = c.key === sortKey ? !ascending : !c.num;  // numbers start best-first (largest)
      sortKey = c.key;
      draw(container, pool);
    }})));
  const body = rows.map(({e, i}) => h('tr', {'data-index': e.index, 'data-rank': i + 1},
    COLUMNS.map((c) => h(`td${c.num ? '.num' : ''}`, {}, c.cell(e, i)))));
  container.replaceChildren(h('table.sortable', {id: 'pool-table'}, h('thead', {}, head), h('tbody', {}, body)));
}

function render(pool) {
  const container = h('div');
  draw(container, pool);
  return h('div', {},
    h('h1', {text: `Candidate pool (${pool.length})`}),
    h('p.muted', {text: 'Ranked by fitness within each rung. Values are mean ± standard error over seeds where the '
      + 'experiment was replicated; fitness counts a difference only beyond its standard error. Click a heading to sort.'}),
    pool.length ? container : h('p', {text: 'The pool is empty: no experiment has been analysed yet.'}));
}

export default {load, render};
