// One experiment: what it tried, how its program differs from its parent's, whether it passed its checks,
// how it trained against the baseline, what it scored, what it cost, and why it failed when it did.

import * as api from '../api.js';
import {badge, h, isNum, link, num, pm, section, seconds, table, when} from '../dom.js';
import {diffStats, lineDiff, renderDiff} from '../diff.js';
import {chart} from '../plot.js';

async function load(arg) {
  const e = await api.get(`/experiments/${encodeURIComponent(arg)}`);
  const [parent, baseline, jobs] = await Promise.all([
    isNum(e.parent) ? api.maybe(`/experiments/${e.parent}`) : null,
    e.is_baseline ? null : api.maybe(`/baseline?fidelity=${encodeURIComponent(e.fidelity)}`),
    api.get(`/jobs?experiment=${e.index}&limit=1000`)]);
  return {e, parent, baseline, jobs: jobs.data};
}

// Stays across polls: the veto form (a person may be typing a reason when the data changes).
function mount(main, arg, refresh) {
  const live = h('div');
  const reason = h('input', {id: 'veto-reason', placeholder: 'why this experiment must not count', size: 50});
  const message = h('span.message', {id: 'veto-message'});
  const veto = async (event) => {
    event.preventDefault();
    message.textContent = 'sending…';
    try {
      await api.post(`/experiments/${encodeURIComponent(arg)}/veto`, {reason: reason.value, actor: api.actor() || null});
      message.textContent = 'vetoed';
      reason.value = '';
      refresh();
    } catch (err) {
      message.textContent = err.status === 401 ? 'the token is missing or wrong (field at the top)' : err.message;
    }
  };
  const form = h('form', {id: 'veto-form', onsubmit: veto}, 'Reason: ', reason, ' ',
    h('button', {type: 'submit', id: 'veto-button', text: 'Veto'}), message);
  main.append(live, section('Veto: take this experiment out of the pool, never a parent (needs the token)', form));
  return live;
}

function header(e) {
  const refs = (e.references || []).map((r) => [link(r), ' ']);
  return h('div', {},
    h('h1', {}, `#${e.index} ${e.name} `, badge(e.status)),
    h('p', {},
      `rung ${e.fidelity} · origin ${e.is_baseline ? 'baseline' : e.origin || '?'} · parent `,
      isNum(e.parent) ? link(e.parent) : 'none',
      isNum(e.promoted_from) ? [' · promoted from ', link(e.promoted_from)] : null,
      refs.length ? [' · references ', refs] : null,
      ` · created ${when(e.created_at)} · updated ${when(e.updated_at)}`));
}

function problems(e) {
  const out = [];
  if (e.failure) {
    out.push(h('section.error', {id: 'failure'}, h('h2', {text: `Failed at ${e.failure.stage}`}),
      h('div.pre', {text: e.failure.reason})));
  }
  if (e.veto) {
    const at = isNum(e.veto.at) ? when(e.veto.at) : e.veto.at;
    out.push(h('section.error', {id: 'veto'}, h('h2', {text: `Vetoed by ${e.veto.by || '?'} (${at || '?'})`}),
      h('div.pre', {text: e.veto.reason})));
  }
  if (e.quarantine) {
    out.push(section('Quarantined: a result too good to believe, re-run before it counts',
      h('pre', {text: JSON.stringify(e.quarantine, null, 2)})));
  }
  return out;
}

function fitness(e) {
  const parts = e.fitness_parts || {};
  const evidence = Object.entries(e.evidence || {}).filter(([, v]) => v);
  return section('Fitness',
    h('p', {}, h('strong', {text: `fitness ${num(e.fitness)}`}),
      ` = parts: loss ${num(parts.loss, 3)}, benchmark ${num(parts.benchmark, 3)}, judge ${num(parts.judge, 3)}`,
      isNum(parts.baseline) ? [' against baseline ', link(parts.baseline)] : null,
      ` · beats the baseline beyond noise: ${e.beats_baseline ? 'yes' : 'no'}`),
    evidence.length ? table([
      {title: 'evidence', cell: ([k]) => k}, {title: 'difference (better is +)', cell: ([, v]) => num(v.difference)},
      {title: 'SE', cell: ([, v]) => num(v.se, 3)}, {title: 'z', cell: ([, v]) => num(v.z, 3)},
      {title: 'baseline', cell: ([, v]) => num(v.reference)}], evidence) : null);
}

function costs(e) {
  const c = e.costs || {};
  const t = e.train || {};
  return section('Cost and size', h('p', {id: 'costs'},
    `LLM tokens ${num(c.llm_tokens ?? 0)} · GPU ${seconds(c.gpu_seconds ?? 0)} · CPU ${seconds(c.cpu_seconds ?? 0)}`,
    t.params ? ` · ${num(t.params)} parameters (${num(t.non_embedding_params)} without embeddings)` : '',
    t.peak_memory_mb ? ` · peak memory ${num(t.peak_memory_mb, 4)} MB` : '',
    t.tokens_per_s ? ` · ${pm(t.tokens_per_s_stats, t.tokens_per_s, 3)} tokens/s on ${t.device || '?'}` : '',
    measured(e.cost)));
}

// What the evaluator measured beside the seed (evaluator.cost): speed, and the decoding state per layer.
function measured(k) {
  if (!k || !isNum(k.speed_vs_seed)) return '';
  const state = isNum(k.state_floats)
    ? ` · decoding state ${num(k.state_floats)} floats/layer (+${num(k.state_floats_per_token, 3)}/token, `
      + `${num(k.state_vs_seed, 3)}× the seed's)`
    : (k.state_reason ? ` · decoding state not measured: ${k.state_reason}` : '');
  return ` · speed ${num(k.speed_vs_seed, 3)}× the seed's${state}`;
}

// The range over seeds at each step of a list of [[step, loss], ...] curves.
export function seedBand(curves) {
  const steps = new Map();
  for (const curve of curves || []) {
    for (const [step, loss] of curve) if (isNum(step) && isNum(loss)) (steps.get(step) || steps.set(step, []).get(step)).push(loss);
  }
  return [...steps.entries()].filter(([, v]) => v.length > 1).sort((a, b) => a[0] - b[0])
    .map(([step, v]) => [step, Math.min(...v), Math.max(...v)]);
}

function losses(e, baseline) {
  const t = e.train || {};
  const b = (baseline && baseline.train) || {};
  if (!t.loss_curve && !t.val_curve) return section('Loss curves', h('p.muted', {text: 'Not trained yet.'}));
  const series = [
    {name: 'train loss', points: t.loss_curve || [], color: '#93c5fd'},
    {name: 'validation', points: t.val_curve || [], band: seedBand(t.val_curves), color: '#1f77b4'},
  ];
  if (b.val_curve) {
    series.push({name: `baseline #${baseline.index} validation (seed band)`, points: b.val_curve, band: seedBand(b.val_curves),
      color: '#d62728', dash: '5 3'});
  }
  const steps = [...(t.val_curve || []), ...(t.loss_curve || [])].map((p) => p[0]).filter(isNum);
  const last = Math.max(...steps, 1);
  // The first steps' loss dwarfs the end differences: the second chart zooms on the second half.
  const zoom = series.filter((s) => s.name !== 'train loss');
  return section('Loss curves',
    h('p.muted', {text: `validation loss ${pm(t.val_loss_stats, t.val_loss)}`
      + (b.val_loss !== undefined ? ` · baseline ${pm(b.val_loss_stats, b.val_loss)}` : ' · no baseline at this rung yet')}),
    h('div.grid2', {},
      chart({series, xLabel: 'step', yLabel: 'loss', title: 'whole run'}),
      chart({series: zoom, xLabel: 'step (second half)', yLabel: 'validation loss', xRange: [last / 2, last],
        title: 'second half, zoomed to show the end differences'})));
}

function scores(e, baseline) {
  const ev = e.eval || {};
  const base = (baseline && baseline.eval) || {};
  const tasks = Object.entries(ev.tasks || {});
  if (!tasks.length) return section('Benchmark scores', h('p.muted', {text: 'Not evaluated yet.'}));
  const mean = (task) => (task && task.stats && isNum(task.stats.mean) ? task.stats.mean : task && task.value);
  const rows = tasks.map(([name, task]) => ({name, task, base: (base.tasks || {})[name]}));
  return section('Benchmark scores',
    h('p', {}, `average ${pm(ev.average_stats, ev.average)} · recall ${pm(ev.recall_stats, ev.recall)} · `
      + `benchmark ${pm(ev.benchmark_stats, null)}`, baseline ? ` · baseline average ${num(base.average)}` : ''),
    table([
      {title: 'task', cell: (r) => r.name}, {title: 'metric', cell: (r) => r.task.metric || ''},
      {title: 'this experiment', cell: (r) => pm(r.task.stats, r.task.value)},
      {title: 'baseline', cell: (r) => (r.base ? pm(r.base.stats, r.base.value) : '–')},
      {title: 'difference', cell: (r) => (r.base && isNum(mean(r.task)) && isNum(mean(r.base)) ? num(mean(r.task) - mean(r.base), 3) : '–')},
    ], rows, {id: 'task-scores', rowAttrs: (r) => ({'data-task': r.name})}));
}

function check(e) {
  const c = e.check;
  if (!c) return section('Check report', h('p.muted', {text: 'Not checked yet.'}));
  const lists = ['failed', 'flagged', 'warnings'].filter((k) => (c[k] || []).length)
    .map((k) => h('p', {}, h('strong', {text: `${k}: `}), (c[k] || []).map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('; ')));
  return section('Check report',
    h('p', {}, badge(c.ok ? 'succeeded' : 'failed'), ` ${c.ok ? 'passed' : 'failed'} · ${num(c.params_per_layer)} parameters per layer`
      + ` · ${seconds(c.seconds)}${c.reason ? ` · ${c.reason}` : ''}`),
    lists,
    table([{title: 'check', cell: (k) => k.name}, {title: 'result', cell: (k) => badge(k.ok ? 'succeeded' : 'failed')},
      {title: 'hard', cell: (k) => (k.hard ? 'yes' : 'no')}, {title: 'detail', cell: (k) => h('span.pre', {text: k.detail || ''})}],
    c.checks || [], {id: 'checks'}));
}

const ANALYSIS_PARTS = [['design_evaluation', 'Design'], ['results', 'Results'],
  ['expectation_vs_reality', 'Expectation against reality'], ['explanation', 'Explanation'], ['synthesis', 'Next']];

function analysis(e) {
  const a = e.analysis;
  if (!a) return section('Analysis', h('p.muted', {text: 'Not analysed yet.'}));
  return section('Analysis', h('p', {}, h('strong', {text: a.summary || ''})),
    ANALYSIS_PARTS.filter(([k]) => a[k]).map(([k, title]) => h('p.pre', {}, h('em', {text: `${title}: `}), a[k])),
    isNum(a.judge_score) ? h('p', {text: `LLM judge score ${num(a.judge_score, 3)}`}) : null);
}

function program(e, parent) {
  const full = h('details', {}, h('summary', {text: `the whole program (${e.program.split('\n').length} lines)`}),
    h('pre', {id: 'program', text: e.program}));
  if (!parent || typeof parent.program !== 'string') {
    return section('Program', h('p.muted', {text: 'No parent to compare with.'}), full);
  }
  const lines = lineDiff(parent.program, e.program);
  const {added, removed} = diffStats(lines);
  return section(`Program: changes from its parent #${parent.index} ${parent.name}`,
    h('p', {id: 'diff-stats', text: `${added} lines added, ${removed} removed`}),
    added + removed ? renderDiff(lines) : h('p.muted', {text: 'The same program as its parent.'}), full);
}

function jobList(jobs) {
  return section('Jobs of this experiment', jobs.length ? table([
    {title: 'stage', cell: (j) => j.kind}, {title: 'status', cell: (j) => badge(j.status)},
    {title: 'worker', cell: (j) => j.worker || '–'}, {title: 'attempts', cell: (j) => `${j.attempts} / ${j.max_attempts}`},
    {title: 'updated', cell: (j) => when(j.updated_at)}, {title: 'error', cell: (j) => h('span.pre', {text: j.error || ''})},
  ], jobs, {id: 'experiment-jobs'}) : h('p.muted', {text: 'None.'}));
}

function render({e, parent, baseline, jobs}) {
  return h('div', {'data-index': e.index},
    header(e), problems(e),
    section('Motivation', h('p.pre', {id: 'motivation', text: e.motivation || '(none)'})),
    fitness(e), costs(e),
    losses(e, baseline), scores(e, baseline), check(e), analysis(e), program(e, parent), jobList(jobs));
}

export default {load, mount, render};
