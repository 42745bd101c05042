// A line diff (longest common subsequence) and its rendering as a unified view with folded context.

import {h} from './dom.js';

// The middle part (after the common head and tail are cut) is compared cell by cell; beyond this many
// cells the diff gives up on alignment and shows the middle as removed then added, to stay fast.
const MAX_CELLS = 4_000_000;
const CONTEXT = 3;

// [{op: ' ' | '-' | '+', text, a: line in old or null, b: line in new or null}]
export function lineDiff(oldText, newText) {
  const a = oldText.split('\n');
  const b = newText.split('\n');
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const midA = a.slice(head, a.length - tail);
  const midB = b.slice(head, b.length - tail);
  const out = [];
  for (let i = 0; i < head; i++) out.push({op: ' ', text: a[i], a: i + 1, b: i + 1});
  for (const step of middle(midA, midB)) {
    out.push({op: step.op, text: step.text, a: step.a === null ? null : step.a + head + 1,
      b: step.b === null ? null : step.b + head + 1});
  }
  for (let i = tail; i > 0; i--) {
    out.push({op: ' ', text: a[a.length - i], a: a.length - i + 1, b: b.length - i + 1});
  }
  return out;
}

function middle(a, b) {
  if ((a.length + 1) * (b.length + 1) > MAX_CELLS) {
    return [...a.map((text, i) => ({op: '-', text, a: i, b: null})), ...b.map((text, j) => ({op: '+', text, a: null, b: j}))];
  }
  // lcs[i][j]: length of the longest common subsequence of a[i:] and b[j:].
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const steps = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) steps.push({op: ' ', text: a[i], a: i++, b: j++});
    // Removals first where either order keeps the alignment, as unified diffs read.
    else if (i < a.length && (j === b.length || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      steps.push({op: '-', text: a[i], a: i++, b: null});
    } else steps.push({op: '+', text: b[j], a: null, b: j++});
  }
  return steps;
}

export function diffStats(lines) {
  return {added: lines.filter((l) => l.op === '+').length, removed: lines.filter((l) => l.op === '-').length};
}

// The diff as rows; runs of unchanged lines longer than twice the context fold into a clickable row.
export function renderDiff(lines) {
  const body = h('tbody');
  const changed = lines.map((l) => l.op !== ' ');
  const near = lines.map((_, i) => changed.slice(Math.max(0, i - CONTEXT), i + CONTEXT + 1).some(Boolean));
  let i = 0;
  while (i < lines.length) {
    if (near[i]) {
      body.appendChild(row(lines[i++]));
      continue;
    }
    const start = i;
    while (i < lines.length && !near[i]) i++;
    const hidden = lines.slice(start, i);
    const fold = h('tr.fold', {}, h('td', {colspan: 3, text: `… ${hidden.length} unchanged lines (click to show)`}));
    fold.addEventListener('click', () => fold.replaceWith(...hidden.map(row)));
    body.appendChild(fold);
  }
  return h('table.diff', {}, body);
}

function row(line) {
  const kind = {' ': 'same', '-': 'del', '+': 'add'}[line.op];
  return h(`tr.${kind}`, {}, h('td.ln', {text: line.a ?? ''}), h('td.ln', {text: line.b ?? ''}),
    h('td.code', {text: `${line.op} ${line.text}`}));
}
