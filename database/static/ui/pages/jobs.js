// The job queue: who holds which lease and until when, attempts, and the errors of failed attempts.

import * as api from '../api.js';
import {badge, h, isNum, link, section, table, when} from '../dom.js';

const ORDER = {running: 0, queued: 1, failed: 2, succeeded: 3};
const FILTERS = ['active', 'all', 'queued', 'running', 'failed', 'succeeded'];
let filter = 'all';

async function load() {
  return api.all('/jobs', 1000);
}

export function leaseText(job, now = Date.now() / 1000) {
  if (job.status !== 'running' || !isNum(job.lease_expires_at)) return '–';
  const left = job.lease_expires_at - now;
  return left >= 0 ? `expires in ${Math.round(left)} s` : `expired ${Math.round(-left)} s ago (to be re-queued)`;
}

function workers(jobs) {
  const held = new Map();
  for (const j of jobs.filter((j) => j.status === 'running')) held.set(j.worker, [...(held.get(j.worker) || []), j]);
  if (!held.size) return h('p.muted', {text: 'No worker holds a lease.'});
  return table([
    {title: 'worker', cell: ([w]) => w},
    {title: 'holds', cell: ([, js]) => js.map((j) => [`${j.kind} of `, isNum(j.experiment) ? link(j.experiment) : '–', ' '])},
    {title: 'lease', cell: ([, js]) => js.map((j) => leaseText(j)).join('; ')},
  ], [...held.entries()], {id: 'workers'});
}

function shown(jobs) {
  const keep = filter === 'all' ? () => true : filter === 'active' ? (j) => j.status === 'queued' || j.status === 'running'
    : (j) => j.status === filter;
  return jobs.filter(keep).sort((a, b) => (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9) || a.created_at - b.created_at);
}

function jobTable(jobs) {
  const rows = shown(jobs);
  if (!rows.length) return h('p.muted', {text: 'No job matches.'});
  return table([
    {title: 'job', cell: (j) => h('code', {title: j.id, text: j.id.slice(0, 8)})},
    {title: 'stage', cell: (j) => j.kind},
    {title: 'experiment', cell: (j) => (isNum(j.experiment) ? link(j.experiment) : '–')},
    {title: 'status', cell: (j) => badge(j.status)},
    {title: 'worker', cell: (j) => j.worker || '–'},
    {title: 'lease', cell: (j) => leaseText(j)},
    {title: 'attempts', cell: (j) => `${j.attempts} / ${j.max_attempts}`},
    {title: 'rung', cell: (j) => (j.payload || {}).fidelity || ''},
    {title: 'created', cell: (j) => when(j.created_at)},
    {title: 'errors', cell: (j) => h('span.pre', {text: (j.errors || []).map((x) => `attempt ${x.attempt}: ${x.reason}`).join('\n') || j.error || ''})},
  ], rows, {id: 'jobs-table', rowAttrs: (j) => ({'data-job': j.id, 'data-status': j.status})});
}

function render(jobs) {
  const holder = h('div');
  const select = h('select', {id: 'job-filter', onchange: () => {
    filter = select.value;
    holder.replaceChildren(jobTable(jobs));
  }}, FILTERS.map((f) => h('option', {value: f, selected: f === filter, text: f})));
  holder.append(jobTable(jobs));
  const counts = Object.keys(ORDER).map((s) => `${jobs.filter((j) => j.status === s).length} ${s}`).join(' · ');
  return h('div', {},
    h('h1', {text: `Job queue (${jobs.length})`}), h('p', {text: counts}),
    section('Leases held', workers(jobs)),
    section('Jobs', h('p', {}, 'show ', select), holder));
}

export default {load, render};
