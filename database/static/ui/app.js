// The page's frame: hash routes, a poll that keeps the shown page live, the token and name fields,
// and the run's pause state in the header.

import * as api from './api.js';
import {h} from './dom.js';
import experiment from './pages/experiment.js';
import jobs from './pages/jobs.js';
import overview from './pages/overview.js';
import pool from './pages/pool.js';
import steer from './pages/steer.js';
import tree from './pages/tree.js';

const PAGES = {overview, pool, tree, experiment, jobs, steer};
const POLL_MS = 3000;

const main = document.getElementById('main');
let route = null;      // {name, arg, live: the element a page renders into}
let shown = null;      // the JSON of the data on screen: a poll re-renders only when it changes
let timer = null;
let generation = 0;    // bumped on navigation, so that a slow answer for the last page is dropped

function parseHash() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return PAGES[name] ? {name, arg: rest.join('/') || null} : {name: 'overview', arg: null};
}

function navigate() {
  generation += 1;
  clearTimeout(timer);
  route = parseHash();
  shown = null;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.hash === `#/${route.name}`);
  main.replaceChildren();
  main.dataset.page = route.name;
  delete main.dataset.ready;
  const page = PAGES[route.name];
  // mount() builds what must survive polls (forms a person is typing into); render() fills the rest.
  route.live = (page.mount && page.mount(main, route.arg, refreshNow)) || main;
  poll();
}

function refreshNow() {
  generation += 1;  // a poll still in flight must not schedule a second polling loop
  shown = null;
  clearTimeout(timer);
  poll();
}

async function poll() {
  const mine = generation;
  const page = PAGES[route.name];
  const started = performance.now();
  let data = null;
  let error = null;
  try {
    data = await page.load(route.arg);
  } catch (err) {
    error = err;
  }
  await headerState();
  if (mine !== generation) return;
  if (error) {
    // Keep what is on screen when a later poll fails (the API restarting); say so in the banner.
    if (shown === null) route.live.replaceChildren(h('div.error', {text: `Could not load this page: ${error.message}`}));
    banner(`The API did not answer: ${error.message}`);
  } else {
    banner(null);
    const json = JSON.stringify(data);
    if (json !== shown) {
      shown = json;
      try {
        route.live.replaceChildren(page.render(data, route.arg, refreshNow));
      } catch (err) {
        console.error(err);
        route.live.replaceChildren(h('div.error', {text: `This page failed to draw: ${err.message}`}));
      }
    }
  }
  main.dataset.ready = '1';
  document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  // A large run makes a load slow: poll less often rather than keep the API busy.
  const wait = Math.max(POLL_MS, 5 * (performance.now() - started));
  timer = setTimeout(() => (document.hidden ? (timer = setTimeout(poll, POLL_MS)) : poll()), wait);
}

function banner(text) {
  const el = document.getElementById('banner');
  el.hidden = !text;
  el.textContent = text || '';
}

async function headerState() {
  const el = document.getElementById('run-state');
  let control = null;
  try {
    control = await api.maybe('/control');
  } catch (_) { /* the page's own load reports an unreachable API */ }
  if (!control) return el.replaceChildren();
  const text = control.paused ? 'paused' : 'running';
  const why = [control.by && `by ${control.by}`, control.since && `since ${control.since}`, control.reason]
    .filter(Boolean).join(', ');
  el.replaceChildren(h(`span.badge.${control.paused ? 's-queued' : 's-analysed'}`, {text: `run ${text}`, title: why}));
}

function bindField(id, read, write) {
  const input = document.getElementById(id);
  input.value = read();
  input.addEventListener('input', () => write(input.value.trim()));
}

bindField('token', api.token, api.setToken);
bindField('actor', api.actor, api.setActor);
addEventListener('hashchange', navigate);
navigate();
