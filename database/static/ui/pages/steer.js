// Steering: pause and resume the run, submit a hand-written program, and the record of every action.
// Writes send the token typed at the top of the page.

import * as api from '../api.js';
import {h, link, section, table} from '../dom.js';

const FIDELITIES = ['', 'synthetic', 'smoke', 'explore', 'verify'];

async function load() {
  const [control, actions] = await Promise.all([api.maybe('/control'), api.maybe('/actions')]);
  return {control, actions};
}

function explain(err) {
  return err.status === 401 ? 'the token is missing or wrong (field at the top)' : err.message;
}

function controlForm(refresh) {
  const reason = h('input', {id: 'control-reason', placeholder: 'reason (optional)', size: 40});
  const message = h('span.message', {id: 'control-message'});
  const act = (what) => async () => {
    message.textContent = 'sending…';
    try {
      await api.post(`/control/${what}`, {actor: api.actor() || null, reason: reason.value || null});
      message.textContent = what === 'pause' ? 'paused' : 'resumed';
      refresh();
    } catch (err) {
      message.textContent = explain(err);
    }
  };
  return section('Pause and resume',
    h('p.muted', {text: 'While paused, workers finish or hand back their current job and lease nothing new.'}),
    h('div', {}, reason, ' ', h('button', {id: 'pause', type: 'button', onclick: act('pause'), text: 'Pause'}), ' ',
      h('button', {id: 'resume', type: 'button', onclick: act('resume'), text: 'Resume'}), message));
}

function submitForm(refresh) {
  const field = (label, input) => h('label', {}, label, input);
  const name = h('input', {id: 'submit-name', placeholder: 'default: human-<hash of the program>'});
  const parent = h('input', {id: 'submit-parent', type: 'number', min: 1, placeholder: 'index of the parent (optional)'});
  const fidelity = h('select', {id: 'submit-fidelity'}, FIDELITIES.map((f) => h('option', {value: f, text: f || "the parent's, else the run's first rung"})));
  const motivation = h('textarea', {id: 'submit-motivation', rows: 3, style: 'height:4em'});
  const program = h('textarea', {id: 'submit-program', spellcheck: 'false', placeholder: 'class DeltaNet(nn.Module): ...'});
  const file = h('input', {type: 'file', accept: '.py,text/x-python,text/plain', onchange: async () => {
    if (file.files[0]) program.value = await file.files[0].text();
  }});
  const message = h('div.message', {id: 'submit-message'});
  const submit = async (event) => {
    event.preventDefault();
    const body = {program: program.value, name: name.value.trim() || null, motivation: motivation.value || null,
      parent: parent.value ? Number(parent.value) : null, actor: api.actor() || null};
    if (fidelity.value) body.fidelity = fidelity.value;
    message.textContent = 'sending…';
    try {
      const made = await api.post('/programs', body);
      message.replaceChildren('Submitted as ', link(made.index, `#${made.index} ${made.name}`),
        ': it is checked, trained, evaluated and analysed like any other candidate.');
      refresh();
    } catch (err) {
      message.textContent = explain(err);
    }
  };
  return section('Submit a program',
    h('form.stack', {id: 'submit-form', onsubmit: submit},
      field('Program (a file defining class DeltaNet(nn.Module)) ', file), program,
      field('Name', name), field('Parent', parent), field('Rung', fidelity), field('Motivation', motivation),
      h('button', {type: 'submit', id: 'submit-button', text: 'Submit'}), message));
}

function mount(main, arg, refresh) {
  const live = h('div');
  main.append(h('h1', {text: 'Steering'}), live, controlForm(refresh), submitForm(refresh));
  return live;
}

function render({control, actions}) {
  if (control === null && actions === null) {
    return h('p.error', {text: 'This API has no steering endpoints (/control, /actions).'});
  }
  const state = control ? h('p', {id: 'control-state'}, h('strong', {text: control.paused ? 'The run is paused' : 'The run is running'}),
    control.since ? ` since ${control.since}` : '', control.by ? ` (by ${control.by}` : '',
    control.by ? (control.reason ? `: ${control.reason})` : ')') : '') : null;
  const log = (actions || []).length ? table([
    {title: 'when', cell: (a) => a.at}, {title: 'who', cell: (a) => a.by}, {title: 'action', cell: (a) => a.action},
    {title: 'experiment', cell: (a) => (a.target ? link(a.target) : '–')},
    {title: 'detail', cell: (a) => h('code', {text: JSON.stringify(a.detail || {})})},
  ], actions, {id: 'actions', rowAttrs: (a) => ({'data-action': a.action})}) : h('p.muted', {text: 'No steering action yet.'});
  return h('div', {}, state, section('Actions, newest first', log));
}

export default {load, mount, render};
