// The merchant dashboard: sign in with a merchant token, list sales, pause / resume /
// end, change stock, and a live view of one sale refreshed every second from
// GET /v1/admin/sales/{id}/stats. Routes live in the URL hash (#/, #/new,
// #/sales/<id>, #/sales/<id>/edit, #/webhooks) so a refresh keeps the place. The panels
// of their own live beside it: merchant-editor.js (create / edit), merchant-variants.js,
// merchant-report.js, merchant-orders.js (orders and refunds), merchant-webhooks.js.

import { api, loadJson, saveJson } from './api.js';
import { explain } from './messages.js';
import * as fmt from './format.js';
import { TimeChart } from './chart.js';
import { initVariants, renderVariants, updateVariantStock } from './merchant-variants.js';
import { initReport, loadReport } from './merchant-report.js';
import { initEditor, openEditor } from './merchant-editor.js';
import { initOrders, openOrders, stopOrders } from './merchant-orders.js';
import { initWebhooks, openWebhooks, stopWebhooks } from './merchant-webhooks.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'flashsale.merchantToken';
const STATS_EVERY_MS = 1000;

let token = loadJson(TOKEN_KEY);
let route = { name: 'list' };
let statsTimer = 0;
let cursor = null;
/** The sale being watched, with its ETag. */
let current = { sale: null, etag: null };
/** Samples per sale, kept while the page is open (switching sales keeps each history). */
const history = new Map();
let charts = null;

// ------------------------------------------------------------------ helpers

function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  setTimeout(() => {
    a.textContent = text;
  }, 60);
}

async function call(method, path, opts = {}) {
  try {
    return await api(method, path, { token, ...opts });
  } catch (e) {
    if (e.code === 'unauthorized' || e.code === 'forbidden') {
      signOut(explain(e, 'merchant').title + ' ' + explain(e, 'merchant').hint);
    }
    throw e;
  }
}

function showError(el, err) {
  const e = explain(err, 'merchant');
  el.textContent = [e.title, err.detail, e.hint]
    .filter(Boolean)
    .join(' ');
  el.hidden = false;
}

function merchantIdOf(jwt) {
  try {
    const payload = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.sub || '';
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------ routing

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, '');
  if (h === 'new') return { name: 'editor', id: null };
  if (h === 'webhooks') return { name: 'webhooks' };
  let m = h.match(/^sales\/([0-9a-f-]{36})\/edit$/i);
  if (m) return { name: 'editor', id: m[1] };
  m = h.match(/^sales\/([0-9a-f-]{36})$/i);
  if (m) return { name: 'detail', id: m[1] };
  return { name: 'list' };
}

function show(name) {
  for (const s of document.querySelectorAll('[data-route]')) s.hidden = s.dataset.route !== name;
}

async function navigate() {
  clearTimeout(statsTimer);
  statsTimer = 0;
  stopOrders();
  stopWebhooks();
  if (!token) {
    show('signin');
    $('account').hidden = true;
    return;
  }
  $('account').hidden = false;
  $('merchant-id').textContent = `Merchant ${merchantIdOf(token).slice(0, 8)}…`;
  route = parseRoute();
  show(route.name);
  if (route.name === 'list') await loadList(true);
  if (route.name === 'editor') await openEditor(route.id);
  if (route.name === 'detail') await openDetail(route.id);
  if (route.name === 'webhooks') await openWebhooks();
  const heading = document.querySelector(`[data-route="${route.name}"] h1`);
  if (heading && document.activeElement === document.body) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

// ------------------------------------------------------------------ sign in / out

function signOut(message) {
  token = null;
  saveJson(TOKEN_KEY, null);
  clearTimeout(statsTimer);
  stopOrders();
  stopWebhooks();
  show('signin');
  $('account').hidden = true;
  const err = $('token-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('token').setAttribute('aria-invalid', message ? 'true' : 'false');
}

async function signIn(ev) {
  ev.preventDefault();
  const value = $('token').value.trim().replace(/^Bearer\s+/i, '');
  if (value.split('.').length !== 3) {
    signOut('That does not look like a token (three dot-separated parts).');
    $('token').focus();
    return;
  }
  token = value;
  try {
    await api('GET', '/v1/admin/sales?limit=1', { token });
  } catch (e) {
    const ex = explain(e, 'merchant');
    signOut(`${ex.title} ${ex.hint}`);
    $('token').focus();
    return;
  }
  saveJson(TOKEN_KEY, token);
  $('token').value = '';
  $('token-error').hidden = true;
  announce('Signed in.');
  if (!location.hash) location.hash = '#/';
  await navigate();
}

// ------------------------------------------------------------------ list

const STATUS_LABEL = {
  scheduled: 'Scheduled',
  live: 'Live',
  paused: 'Paused',
  sold_out: 'Sold out',
  ended: 'Ended',
};

async function loadList(fresh) {
  const list = $('sales');
  $('list-error').hidden = true;
  if (fresh) {
    cursor = null;
    list.replaceChildren();
  }
  const status = $('status-filter').value;
  const q = new URLSearchParams({ limit: '20' });
  if (status) q.set('status', status);
  if (cursor) q.set('cursor', cursor);
  try {
    const { data } = await call('GET', `/v1/admin/sales?${q}`);
    for (const s of data.items) list.append(saleItem(s));
    cursor = data.next_cursor;
    $('more').hidden = !cursor;
    $('sales-empty').hidden = list.children.length > 0;
  } catch (e) {
    if (token) showError($('list-error'), e);
  }
}

function saleItem(s) {
  const li = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = s.name;
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.dataset.status = s.status;
  badge.textContent = STATUS_LABEL[s.status] || s.status;
  name.append(' ', badge);
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `${s.sku} · ${fmt.money(s.price)} · of ${fmt.count(s.stock.total)}: ${fmt.count(s.stock.available)} available, ${fmt.count(s.stock.held)} held, ${fmt.count(s.stock.sold)} sold · ${fmt.when(s.starts_at)} → ${fmt.when(s.ends_at)}`;
  const open = document.createElement('a');
  open.className = 'button open';
  open.href = `#/sales/${s.id}`;
  open.textContent = 'Open';
  open.setAttribute('aria-label', `Open ${s.name}`);
  li.append(name, open, meta);
  return li;
}

// ------------------------------------------------------------------ one sale, live

function buildCharts() {
  const box = $('charts');
  box.replaceChildren();
  const ms = (v) => `${Math.round(v)} ms`;
  charts = {
    stock: new TimeChart(box, {
      id: 'chart-stock',
      title: 'Stock',
      series: [
        { label: 'available', color: '#13734b' },
        { label: 'held', color: '#c77700' },
        { label: 'sold', color: '#1849a9' },
      ],
    }),
    line: new TimeChart(box, { id: 'chart-line', title: 'Line length (waiting)', series: [{ label: 'waiting', color: '#6d3fc0' }] }),
    rate: new TimeChart(box, {
      id: 'chart-rate',
      title: 'Admission rate (per second)',
      series: [{ label: 'rate', color: '#1849a9' }],
      format: (v) => (v >= 100 ? String(Math.round(v)) : (+v.toFixed(1)).toString()),
    }),
    active: new TimeChart(box, { id: 'chart-active', title: 'Active shoppers', series: [{ label: 'active', color: '#0f7c8c' }] }),
    p95: new TimeChart(box, {
      id: 'chart-p95',
      title: 'Checkout p95 vs target',
      series: [
        { label: 'p95', color: '#b42318' },
        { label: 'target', color: '#56606b', dash: true },
      ],
      format: ms,
    }),
    backlog: new TimeChart(box, { id: 'chart-backlog', title: 'Outbox backlog (events)', series: [{ label: 'backlog', color: '#8a5a00' }] }),
  };
}

function renderSaleHead(sale) {
  $('d-name').textContent = sale.name;
  document.title = `${sale.name} — merchant — flashsale`;
  const badge = $('d-status');
  badge.textContent = STATUS_LABEL[sale.status] || sale.status;
  badge.dataset.status = sale.status;
  const several = Array.isArray(sale.variants) && sale.variants.length > 1;
  const what = several
    ? `${sale.variants.length} variants · ${fmt.count(sale.variants.reduce((n, v) => n + v.stock.total, 0))} units`
    : `${sale.sku} · ${fmt.money(sale.price)} · ${fmt.count(sale.stock.total)} units`;
  $('d-meta').textContent = `${what} · up to ${sale.per_user_limit} per shopper · hold ${sale.hold_ttl_seconds} s · ${fmt.when(sale.starts_at)} → ${fmt.when(sale.ends_at)} · admission ${sale.admission.mode}${sale.admission.max_admit_per_second ? ` (${sale.admission.max_admit_per_second}/s)` : ''}`;
  $('d-edit').href = `#/sales/${sale.id}/edit`;
  $('d-store').href = `/sales/${sale.id}`;
  const over = sale.status === 'ended';
  $('d-pause').hidden = over || sale.status === 'paused';
  $('d-resume').hidden = sale.status !== 'paused';
  $('d-end').hidden = over;
  $('d-end-confirm').hidden = true;
  $('d-edit').hidden = over;
  $('stock-form').hidden = over;
  renderVariants(sale);
}

async function openDetail(id) {
  $('d-error').hidden = true;
  $('stock-error').hidden = true;
  if (!charts) buildCharts();
  const samples = history.get(id) || { points: [], reasons: [] };
  history.set(id, samples);
  for (const c of Object.values(charts)) c.reset();
  for (const p of samples.points) pushSample(p, false);
  $('reasons').replaceChildren(...samples.reasons.map(reasonItem));
  try {
    const res = await call('GET', `/v1/admin/sales/${id}`);
    current = { sale: res.data, etag: res.headers.get('ETag') };
    renderSaleHead(res.data);
  } catch (e) {
    showError($('d-error'), e);
    return;
  }
  loadReport(id, ['ended', 'sold_out'].includes(current.sale.status));
  openOrders(current.sale);
  pollStats(id);
}

async function pollStats(id) {
  if (route.name !== 'detail' || route.id !== id) return;
  const started = Date.now();
  try {
    const { data } = await call('GET', `/v1/admin/sales/${id}/stats`);
    if (route.name !== 'detail' || route.id !== id) return;
    $('d-error').hidden = true;
    renderStats(id, data);
  } catch (e) {
    if (!token) return;
    showError($('d-error'), e);
  }
  if (route.name === 'detail' && route.id === id) {
    statsTimer = setTimeout(() => pollStats(id), Math.max(200, STATS_EVERY_MS - (Date.now() - started)));
  }
}

function pushSample(s, render = true) {
  const t = Date.parse(s.at);
  charts.stock.push(t, [s.stock.available, s.stock.held, s.stock.sold]);
  charts.line.push(t, [s.queue.waiting]);
  charts.rate.push(t, [s.admission.rate_per_second]);
  charts.active.push(t, [s.admission.active_shoppers]);
  charts.p95.push(t, [s.signals.checkout_p95_ms, s.target]);
  charts.backlog.push(t, [s.signals.outbox_backlog]);
  if (render) for (const c of Object.values(charts)) c.render();
}

function reasonItem(r) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.dateTime = r.at;
  time.textContent = fmt.timeOfDay(r.at);
  const text = document.createElement('span');
  text.textContent = `${r.reason} — ${+r.rate.toFixed(1)}/s`;
  li.append(time, text);
  return li;
}

function renderStats(id, s) {
  const sale = current.sale && current.sale.id === id ? current.sale : null;
  const target = sale ? sale.admission.checkout_p95_target_ms : null;
  const sample = { ...s, target };
  const store = history.get(id);
  store.points.push(sample);
  const cutoff = Date.parse(s.at) - 5 * 60_000;
  while (store.points.length && Date.parse(store.points[0].at) < cutoff) store.points.shift();
  pushSample(sample);

  $('live-at').textContent = `· ${fmt.timeOfDay(s.at)}`;
  $('t-available').textContent = fmt.count(s.stock.available);
  $('t-held').textContent = fmt.count(s.stock.held);
  $('t-sold').textContent = fmt.count(s.stock.sold);
  $('t-waiting').textContent = fmt.count(s.queue.waiting);
  $('t-rate').textContent = `${+s.admission.rate_per_second.toFixed(1)}/s`;
  $('t-active').textContent = fmt.count(s.admission.active_shoppers);
  const p95 = $('t-p95');
  p95.textContent = `${Math.round(s.signals.checkout_p95_ms)} ms`;
  if (target) {
    const small = document.createElement('small');
    small.textContent = ` / ${target}`;
    p95.append(small);
    p95.classList.toggle('over', s.signals.checkout_p95_ms > target);
  }
  $('t-backlog').textContent = fmt.count(s.signals.outbox_backlog);
  $('t-orders').textContent = fmt.count(s.orders.count);
  $('t-revenue').textContent = fmt.money(s.orders.revenue);
  $('t-prequeue').textContent = fmt.count(s.queue.prequeue);
  $('t-noshow').textContent = `${Math.round(s.admission.no_show_rate * 100)}%`;
  updateVariantStock(s.variants);

  if (sale && sale.status !== s.status) {
    sale.status = s.status;
    renderSaleHead(sale);
  }
  const reason = s.admission.last_change_reason;
  const last = store.reasons[store.reasons.length - 1];
  if (reason && (!last || last.reason !== reason)) {
    const entry = { at: s.at, reason, rate: s.admission.rate_per_second };
    store.reasons.push(entry);
    if (store.reasons.length > 200) store.reasons.shift();
    const list = $('reasons');
    list.append(reasonItem(entry));
    while (list.children.length > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }
}

async function transition(action) {
  const id = route.id;
  $('d-error').hidden = true;
  try {
    const res = await call('POST', `/v1/admin/sales/${id}/${action}`);
    current = { sale: res.data, etag: res.headers.get('ETag') };
    renderSaleHead(res.data);
    announce(`Sale ${{ pause: 'paused', resume: 'resumed', end: 'ended' }[action]}.`);
  } catch (e) {
    showError($('d-error'), e);
  }
}

async function changeStock(ev) {
  ev.preventDefault();
  const input = $('stock-delta');
  const err = $('stock-error');
  err.hidden = true;
  input.removeAttribute('aria-invalid');
  const delta = Number(input.value);
  if (input.value.trim() === '' || !Number.isInteger(delta) || delta === 0) {
    err.textContent = 'Enter a whole number of units, e.g. 100 (or -10 to remove free units).';
    err.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  try {
    const res = await call('POST', `/v1/admin/sales/${route.id}/stock`, { body: { delta } });
    current = { sale: res.data, etag: res.headers.get('ETag') };
    renderSaleHead(res.data);
    input.value = '';
    announce(`Stock changed by ${delta}. ${res.data.stock.available} available.`);
  } catch (e) {
    const ex = explain(e, 'merchant');
    err.textContent = `${ex.title} ${e.detail || ''}`.trim();
    err.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

// ------------------------------------------------------------------ start-up

$('signin-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', () => signOut(''));
$('status-filter').addEventListener('change', () => loadList(true));
$('more').addEventListener('click', () => loadList(false));
$('d-pause').addEventListener('click', () => transition('pause'));
$('d-resume').addEventListener('click', () => transition('resume'));
$('d-end').addEventListener('click', () => {
  $('d-end').hidden = true;
  $('d-end-confirm').hidden = false;
  $('d-end-no').focus();
});
$('d-end-no').addEventListener('click', () => {
  $('d-end-confirm').hidden = true;
  $('d-end').hidden = false;
  $('d-end').focus();
});
$('d-end-yes').addEventListener('click', () => transition('end'));
$('stock-form').addEventListener('submit', changeStock);
initVariants({
  call,
  announce,
  onSale: (res) => {
    current = { sale: res.data, etag: res.headers.get('ETag') };
    renderSaleHead(res.data);
  },
});
initReport({ call, token: () => token });
initEditor({ call, announce, showError });
initOrders({ call, announce });
initWebhooks({ call, announce });
window.addEventListener('hashchange', navigate);
window.addEventListener('resize', () => {
  if (charts && route.name === 'detail') for (const c of Object.values(charts)) c.render();
});

navigate();
