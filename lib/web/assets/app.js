// kpsd's status page. Read-only; talks only to /api/ on the server that sent it. Every value
// from a job is put into the page as text (textContent, setAttribute), never as HTML, so a
// server id like <img src=x onerror=...> shows as those characters and runs nothing.
'use strict';

const STATES = ['succeeded', 'failed', 'cancelled', 'delivered', 'running', 'retrying', 'queued'];
const UNFINISHED = ['queued', 'running', 'retrying', 'delivered'];
const REFRESH_MS = 3000;
const SVG = 'http://www.w3.org/2000/svg';

// el('td', {class: 'num'}, 'text', childNode ...): strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const pct = (x) => (100 * (x || 0)).toFixed(1) + ' %';
function when(ms) {
  return ms ? new Date(ms).toISOString().slice(0, 19).replace('T', ' ') : '–';
}
function seconds(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = ms / 1000;
  return s < 120 ? s.toFixed(1) + ' s' : (s / 60).toFixed(1) + ' min';
}

async function api(path) {
  const res = await fetch(path, {cache: 'no-store'});
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// A bar of segments, one per state, widths by count.
function progressBar(states, total, id) {
  const bar = el('div', {class: 'bar', role: 'img', id});
  const done = (states.succeeded || 0) + (states.failed || 0) + (states.cancelled || 0);
  bar.setAttribute('aria-label', `${done} of ${total} finished`);
  bar.dataset.done = done;
  bar.dataset.total = total;
  for (const s of STATES) {
    const n = states[s] || 0;
    if (!n || !total) continue;
    const seg = el('span', {class: 's-' + s, title: `${s}: ${fmt(n)}`});
    seg.style.width = (100 * n / total) + '%';
    bar.append(seg);
  }
  return bar;
}

function legend() {
  return el('div', {class: 'legend'},
    ...STATES.map((s) => el('span', {}, el('i', {class: 's-' + s}), s)));
}

function tile(label, value, id) {
  return el('div', {class: 'tile'}, el('div', {class: 'label'}, label),
    el('div', {class: 'value', id}, value));
}

// Jobs finished per minute (stacked bars) and the share of 429 answers (line), oldest left.
function historyChart(history) {
  const minutes = history.slice(-180);
  const W = 900, H = 180, left = 64, right = 64, top = 10, bottom = 24;
  const plotW = W - left - right, plotH = H - top - bottom;
  const step = plotW / Math.max(1, minutes.length);
  const maxDone = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed + m.cancelled));
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', id: 'history-chart',
    'aria-label': 'jobs finished per minute and share of 429 answers, last 3 hours'});
  root.append(svg('line', {x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH,
    stroke: '#b0bec5'}));
  const axis = (y, text, x, anchor) => {
    const t = svg('text', {x, y, 'font-size': 11, fill: '#66788a', 'text-anchor': anchor});
    t.textContent = text;
    root.append(t);
  };
  axis(top + 10, fmt(maxDone) + '/min', left - 4, 'end');
  axis(top + plotH, '0', left - 4, 'end');
  axis(top + 10, '100 % 429', left + plotW + 4, 'start');
  axis(H - 6, '−3 h', left, 'start');
  axis(H - 6, 'now', left + plotW, 'end');
  let line = '';
  minutes.forEach((m, i) => {
    const x = left + i * step;
    let y = top + plotH;
    for (const [key, color] of [['succeeded', '#2e7d32'], ['failed', '#c62828'],
                                ['cancelled', '#6d4c41']]) {
      const h = plotH * m[key] / maxDone;
      if (h > 0) {
        y -= h;
        root.append(svg('rect', {x: x + 0.5, y, width: Math.max(1, step - 1), height: h,
          fill: color}));
      }
    }
    const share = m.answers ? m.throttled / m.answers : 0;
    line += `${i ? 'L' : 'M'}${(x + step / 2).toFixed(1)},${(top + plotH - plotH * share).toFixed(1)}`;
  });
  if (line) root.append(svg('path', {d: line, fill: 'none', stroke: '#ef6c00', 'stroke-width': 1.5}));
  return el('div', {class: 'chart'}, root,
    el('div', {class: 'legend'}, el('span', {}, el('i', {class: 's-succeeded'}), 'succeeded / min'),
      el('span', {}, el('i', {class: 's-failed'}), 'failed / min'),
      el('span', {}, el('i', {class: 's-retrying'}), '429 share of answers')));
}

function setAlerts(o) {
  const box = document.getElementById('alerts');
  box.replaceChildren();
  if (o.blocked) {
    box.append(el('div', {class: 'alert bad', id: 'blocked'},
      `Calls paused (${o.blocked.cause || 'blocked'}) for ${seconds(o.blocked.for_ms)}: ${o.blocked.reason}`));
  }
  if (o.store && !o.store.writable) {
    box.append(el('div', {class: 'alert bad'},
      `Job store cannot be written: ${o.store.problem}; ${fmt(o.store.outcomes_waiting)} outcomes wait`));
  }
  if (o.store && o.store.read_problem) {
    box.append(el('div', {class: 'alert bad'}, `Job counts unavailable: ${o.store.read_problem}`));
  }
  if (o.paused) box.append(el('div', {class: 'alert warn'}, 'Paused: kpsctl resume to continue'));
  for (const b of o.paused_batches || []) {
    const name = b.name === null ? '' : ` (${b.name})`;
    const why = b.detail || (b.reason === 'canary' ? 'canary running: its first jobs run, the others wait'
      : 'paused by the operator');
    box.append(el('div', {class: b.reason === 'failures' ? 'alert bad' : 'alert warn',
      id: 'paused-batch-' + b.id},
    `Batch ${b.id}${name} paused (${b.reason}): ${why}` +
      (why.includes('kpsctl resume') ? '' : `. kpsctl resume --batch ${b.id} to go on`)));
  }
  if (o.quota && o.quota.holding) {
    box.append(el('div', {class: 'alert warn'},
      'The gateway refuses every call (quota window used up): waiting for it to turn'));
  }
}

async function renderOverview(view) {
  const o = await api('/api/overview');
  setAlerts(o);
  document.getElementById('version').textContent = 'kpsd ' + o.version;
  const s = o.states;
  const unfinished = UNFINISHED.reduce((a, k) => a + (s[k] || 0), 0);
  const nodes = [
    el('h2', {}, 'All jobs'),
    progressBar(s, o.total, 'overall-progress'),
    legend(),
    el('div', {class: 'tiles', style: null},
      tile('total', fmt(o.total), 'count-total'),
      ...STATES.map((k) => tile(k, fmt(s[k] || 0), 'count-' + k)),
      tile('unfinished', fmt(unfinished), 'count-unfinished'),
      tile('in flight', fmt(o.in_flight), 'in-flight'),
      tile('calls started / s', fmt(Math.round(o.send_rate_per_second)), 'send-rate'),
      tile('pace', o.rate_per_second > 0 ? fmt(Math.round(o.rate_per_second)) + '/s' :
        'not paced', 'pace'),
      tile('429s (last minute)', pct(o.throttled_share), 'throttled-share'),
      tile('oldest queued', seconds(o.oldest_queued_ms), 'oldest-queued')),
    el('h2', {}, 'Finished per minute and throttling'),
    historyChart(o.history),
    el('h2', {}, 'Batches'),
  ];
  const rows = o.batches.map((b) => {
    const done = (b.states.succeeded || 0) + (b.states.failed || 0) + (b.states.cancelled || 0);
    return el('tr', {'data-batch': b.id},
      el('td', {class: 'num'}, b.id),
      el('td', {}, b.name === null ? '–' : b.name),
      el('td', {class: 'mono'}, when(b.created_at)),
      el('td', {}, progressBar(b.states, b.total, 'batch-progress-' + b.id)),
      el('td', {class: 'num'}, `${fmt(done)} / ${fmt(b.total)}`),
      el('td', {class: 'num'}, fmt(b.states.failed || 0)),
      el('td', {class: b.paused ? 'paused' : ''}, b.paused ? 'paused: ' + b.paused : ''),
      el('td', {}, el('a', {href: `#/failures?batch=${b.id}`}, 'failures')));
  });
  nodes.push(rows.length ?
    el('table', {id: 'batches'}, el('thead', {}, el('tr', {}, el('th', {}, 'id'), el('th', {}, 'name'),
      el('th', {}, 'created (UTC)'), el('th', {}, 'progress'), el('th', {}, 'finished'),
      el('th', {}, 'failed'), el('th', {}, 'brakes'), el('th', {}, ''))), el('tbody', {}, ...rows)) :
    el('p', {class: 'muted'}, 'No batches yet: kpsctl enqueue makes one.'));
  view.replaceChildren(...nodes);
}

// The failures view pages with ?after=; `pages` remembers where earlier pages began.
let failurePages = [0];

function reasonOf(j) {
  const parts = [];
  if (j.task_error_code || j.task_error_msg) {
    parts.push(['task', j.task_error_code, j.task_error_msg].filter(Boolean).join(' '));
  }
  return parts.join('; ');
}

async function renderFailures(view, params) {
  const batch = params.get('batch') || '';
  const state = params.get('state') || 'failed';
  const after = Number(params.get('after') || 0);
  const q = new URLSearchParams({state, after: String(after), limit: '50'});
  if (batch) q.set('batch', batch);
  const page = await api('/api/failures?' + q.toString());
  const go = (changes) => {
    const next = new URLSearchParams({batch, state, after: '0', ...changes});
    if (!next.get('batch')) next.delete('batch');
    location.hash = '#/failures?' + next.toString();
  };
  const batchInput = el('input', {id: 'filter-batch', value: batch, placeholder: 'id or name', size: 16});
  batchInput.addEventListener('change', () => { failurePages = [0]; go({batch: batchInput.value}); });
  const stateSelect = el('select', {id: 'filter-state'},
    ...['failed', 'cancelled', 'retrying', 'queued', 'running', 'delivered', 'succeeded', 'any']
      .map((s) => { const o = el('option', {value: s}, s); if (s === state) o.selected = true; return o; }));
  stateSelect.addEventListener('change', () => { failurePages = [0]; go({state: stateSelect.value}); });
  const rows = page.jobs.map((j) => el('tr', {'data-job': j.id},
    el('td', {class: 'num'}, el('a', {href: `#/job/${j.id}`}, j.id)),
    el('td', {class: 'mono server'}, j.server_id),
    el('td', {}, j.state),
    el('td', {class: 'mono error-code'}, j.error_code || ''),
    el('td', {class: 'error-msg'}, j.error_msg || ''),
    el('td', {class: 'num'}, j.attempts),
    el('td', {class: 'mono'}, j.last_request_id || ''),
    el('td', {}, reasonOf(j))));
  const prev = el('button', {id: 'page-prev'}, '← previous');
  prev.disabled = failurePages.length < 2;
  prev.addEventListener('click', () => { failurePages.pop(); go({after: String(failurePages[failurePages.length - 1])}); });
  const next = el('button', {id: 'page-next'}, 'next →');
  next.disabled = page.next_after_id === undefined;
  next.addEventListener('click', () => { failurePages.push(page.next_after_id); go({after: String(page.next_after_id)}); });
  view.replaceChildren(
    el('h2', {}, 'Failures and other jobs by state'),
    el('div', {class: 'filters'},
      el('label', {}, 'batch', batchInput), el('label', {}, 'state', stateSelect)),
    rows.length ?
      el('table', {id: 'failures'}, el('thead', {}, el('tr', {}, ...['job', 'server', 'state', 'error code',
        'message', 'attempts', 'last X-Request-Id', 'task reason'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows)) :
      el('p', {class: 'muted', id: 'no-failures'}, 'No jobs match.'),
    el('div', {class: 'pager'}, prev, next,
      el('span', {class: 'muted'}, `page ${failurePages.length}, 50 jobs a page`)));
}

async function renderJob(view, id) {
  const d = await api('/api/jobs/' + encodeURIComponent(id));
  const j = d.job;
  const field = (k, v) => [el('dt', {}, k), el('dd', {class: 'mono'}, v === null || v === undefined || v === '' ? '–' : v)];
  const attempts = d.attempts.map((a) => el('tr', {},
    el('td', {class: 'num'}, a.n), el('td', {class: 'mono'}, when(a.started_at)),
    el('td', {class: 'num'}, a.http_status === null ? '–' : a.http_status),
    el('td', {class: 'num'}, a.latency_ms === null ? '–' : a.latency_ms + ' ms'),
    el('td', {class: 'mono'}, a.request_id || ''),
    el('td', {class: 'mono'}, a.task_id || ''),
    el('td', {}, [a.delivery_status, a.error_code, a.error_msg].filter(Boolean).join(' '))));
  view.replaceChildren(
    el('h2', {}, `Job ${j.id}`),
    el('dl', {class: 'fields', id: 'job-fields'},
      ...field('server', j.server_id), ...field('state', j.state), ...field('attempts', j.attempts),
      ...field('task', j.task_id), ...field('task status', j.task_status),
      ...field('error', [j.error_code, j.error_msg].filter(Boolean).join(' ')),
      ...field('task reason', reasonOf(j)),
      ...field('auth', j.auth_type ? j.auth_type + ' (redacted)' : 'none (reset form)'),
      ...field('created (UTC)', when(j.created_at)), ...field('updated (UTC)', when(j.updated_at))),
    el('h2', {}, 'Attempts'),
    attempts.length ?
      el('table', {id: 'attempts'}, el('thead', {}, el('tr', {}, ...['n', 'started (UTC)', 'HTTP',
        'latency', 'X-Request-Id', 'task', 'result'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...attempts)) :
      el('p', {class: 'muted'}, 'No attempt yet.'));
}

let timer = null;
let renderedHash = null;

async function render() {
  clearTimeout(timer);
  const view = document.getElementById('view');
  const hash = location.hash || '#/';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  if (hash !== renderedHash && !path.startsWith('/failures')) failurePages = [0];
  document.getElementById('nav-overview').classList.toggle('active', path === '/' || path === '');
  document.getElementById('nav-failures').classList.toggle('active', path.startsWith('/failures'));
  const connection = document.getElementById('connection');
  try {
    if (path.startsWith('/job/')) {
      await renderJob(view, path.slice(5));
    } else if (path.startsWith('/failures')) {
      await renderFailures(view, params);
    } else {
      await renderOverview(view);
    }
    renderedHash = hash;
    connection.textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    connection.textContent = 'not updating: ' + e.message;
  }
  timer = setTimeout(render, REFRESH_MS);
}

window.addEventListener('hashchange', render);
document.addEventListener('DOMContentLoaded', render);
