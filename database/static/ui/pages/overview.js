// Run overview: counts by status and stage, compute by role, the discovery curve, fitness as points,
// and the calibration of each rung.

import * as api from '../api.js';
import {badge, h, isNum, link, num, section, seconds, table} from '../dom.js';
import {chart, COLORS} from '../plot.js';

const KINDS = ['research', 'engineer', 'train', 'evaluate', 'analyse'];
const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed'];

async function stageCounts() {
  // One count per (stage, status): twenty tiny answers instead of every job document.
  const cells = await Promise.all(KINDS.flatMap((kind) => JOB_STATUSES.map(async (status) => {
    const page = await api.get(`/jobs?kind=${kind}&status=${status}&limit=1`);
    return [kind, status, page.count];
  })));
  const counts = Object.fromEntries(KINDS.map((k) => [k, {}]));
  for (const [kind, status, count] of cells) counts[kind][status] = count;
  return counts;
}

async function load() {
  const [stats, experiments, stages, calibrations] = await Promise.all([
    api.get('/stats'), api.all('/experiments', 500), stageCounts(), api.maybe('/calibrations')]);
  // Programs are the bulk of the documents and are not shown here.
  const light = experiments.map(({program, ...rest}) => rest);
  return {stats, experiments: light, stages, calibrations: calibrations || {}};
}

const cost = (e, key) => (isNum((e.costs || {})[key]) ? e.costs[key] : 0);
const sum = (values) => values.reduce((a, b) => a + (isNum(b) ? b : 0), 0);

// The costs are stored per experiment, not per role; each role's share is read from the artefact it
// wrote (the check report's seconds, the trainer's cpu_s and gpu_s), and the rest of the totals is the
// evaluator's, together with repairs and retries whose artefacts were replaced.
export function computeByRole(experiments) {
  const total = {cpu: sum(experiments.map((e) => cost(e, 'cpu_seconds'))), gpu: sum(experiments.map((e) => cost(e, 'gpu_seconds'))),
    tokens: sum(experiments.map((e) => cost(e, 'llm_tokens')))};
  const engineer = {cpu: sum(experiments.map((e) => (e.check || {}).seconds)), gpu: 0};
  const trainer = {cpu: sum(experiments.map((e) => (e.train || {}).cpu_s)), gpu: sum(experiments.map((e) => (e.train || {}).gpu_s))};
  const rest = {cpu: Math.max(0, total.cpu - engineer.cpu - trainer.cpu), gpu: Math.max(0, total.gpu - trainer.gpu)};
  return [
    {role: 'researcher, engineer (debugger), analyst: LLM', cpu: null, gpu: null, tokens: total.tokens},
    {role: 'engineer: checks', ...engineer, tokens: null},
    {role: 'trainer', ...trainer, tokens: null},
    {role: 'evaluator, repairs and retries', ...rest, tokens: null},
    {role: 'total', ...total},
  ];
}

// Experiments beating the baseline beyond noise, against the compute spent so far (experiment order).
export function discovery(experiments) {
  let spent = 0;
  let beaten = 0;
  const points = [[0, 0]];
  for (const e of [...experiments].sort((a, b) => a.index - b.index)) {
    spent += cost(e, 'gpu_seconds') + cost(e, 'cpu_seconds');
    beaten += e.beats_baseline ? 1 : 0;
    points.push([spent / 3600, beaten]);
  }
  return points;
}

function cards(stats, experiments) {
  const card = (label, value) => h('div.card', {}, h('div.muted', {text: label}), h('div.value', {text: value}));
  const jobs = stats.jobs || {};
  return h('div.cards', {},
    card('experiments', num(stats.experiments)), card('in the pool', num(stats.pool_size)),
    card('beat the baseline', num(experiments.filter((e) => e.beats_baseline).length)),
    card('jobs queued / running', `${jobs.queued ?? 0} / ${jobs.running ?? 0}`),
    card('jobs failed', num(jobs.failed ?? 0)), card('insights (cognition)', num(stats.cognition_entries ?? 0)));
}

function fitnessChart(experiments) {
  const rungs = [...new Set(experiments.map((e) => e.fidelity))];
  const scored = experiments.filter((e) => isNum(e.fitness));
  const label = (e) => {
    const p = e.fitness_parts || {};
    return `#${e.index} ${e.name}: fitness ${num(e.fitness)} (loss ${num(p.loss)}, benchmark ${num(p.benchmark)}, judge ${num(p.judge)})`;
  };
  const series = rungs.map((rung, i) => ({name: rung, kind: 'points', color: COLORS[i % COLORS.length],
    points: scored.filter((e) => e.fidelity === rung).map((e) => [e.index, e.fitness, null,
      {label: label(e), href: `#/experiment/${e.index}`, fill: e.beats_baseline ? COLORS[i % COLORS.length] : '#fff'}])}));
  const xs = experiments.map((e) => e.index);
  series.push({name: 'baseline parity', color: '#9ca3af', dash: '4 3',
    points: [[Math.min(0, ...xs), 0.5], [Math.max(1, ...xs) + 1, 0.5]]});
  return chart({series, xLabel: 'experiment index', yLabel: 'fitness', yRange: [0, 1], xInteger: true,
    title: 'fitness of each scored experiment (filled: beats the baseline beyond noise)'});
}

function calibrationTable(calibrations) {
  const rungs = Object.values(calibrations);
  if (!rungs.length) return h('p.muted', {text: 'No rung is calibrated yet (python -m agent.calibrate).'});
  const rho = (value) => (isNum(value) ? num(value, 3) : '–');
  return table([
    {title: 'rung', cell: (c) => c.fidelity},
    {title: 'seeds', cell: (c) => num(c.seeds)},
    {title: 'ρ vs expected ranking', cell: (c) => rho(c.spearman_expected)},
    {title: 'ρ across seeds', cell: (c) => rho(c.spearman_seeds)},
    {title: 'ρ vs other rungs', cell: (c) => Object.entries(c.spearman_rungs || {}).map(([r, v]) => `${r}: ${rho(v)}`).join(', ') || '–'},
    {title: 'earned its weight', cell: (c) => (c.earned ? 'yes' : 'no')},
    {title: 'programs', cell: (c) => num(Object.keys(c.programs || {}).length)},
    {title: 'source', cell: (c) => (c.shipped ? 'shipped with the project' : 'measured in this run')},
  ], rungs, {id: 'calibrations'});
}

function render({stats, experiments, stages, calibrations}) {
  const statuses = Object.entries(stats.by_status || {});
  const statusTable = table([{title: 'status', cell: ([s]) => badge(s)}, {title: 'experiments', cell: ([, n]) => num(n)}],
    statuses, {id: 'by-status', rowAttrs: ([s]) => ({'data-status': s})});
  const stageTable = table([{title: 'stage', cell: (k) => k}, ...JOB_STATUSES.map((s) => ({title: s, cell: (k) => num(stages[k][s])}))],
    KINDS, {id: 'by-stage', rowAttrs: (k) => ({'data-kind': k})});
  const roles = table([{title: 'role', cell: (r) => r.role}, {title: 'CPU', cell: (r) => (r.cpu === null ? '' : seconds(r.cpu))},
    {title: 'GPU', cell: (r) => (r.gpu === null ? '' : seconds(r.gpu))},
    {title: 'LLM tokens', cell: (r) => (r.tokens === null ? '' : num(r.tokens))}], computeByRole(experiments), {id: 'by-role'});
  const curve = discovery(experiments);
  const best = experiments.filter((e) => isNum(e.fitness) && !e.is_baseline).sort((a, b) => b.fitness - a.fitness)[0];
  return h('div', {},
    h('h1', {text: 'Run overview'}), cards(stats, experiments),
    best ? h('p', {}, 'Best candidate so far: ', link(best.index, `#${best.index} ${best.name}`), ` (fitness ${num(best.fitness)}).`) : null,
    h('div.grid2', {},
      section('Experiments by status', statusTable), section('Jobs by stage', stageTable),
      section('Compute spent by role', roles),
      section('Discovery curve', chart({series: [{name: 'beat the baseline', kind: 'step', points: curve}],
        xLabel: 'compute spent (GPU + CPU hours)', yLabel: 'experiments beating the baseline', xInteger: false,
        yRange: [-0.1, Math.max(1, curve[curve.length - 1][1]) * 1.15]})),
      section('Fitness', fitnessChart(experiments)),
      section('Calibration of each rung', calibrationTable(calibrations))));
}

export default {load, render};
