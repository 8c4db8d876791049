// The dashboard's webhook endpoints (API.md v1.1 "Webhooks"): register one for chosen
// event types, delete one, rotate its secret, and each endpoint's recent deliveries.
//
// A secret (`whsec_…`) is in exactly one answer — the registration's or the rotation's —
// so it is shown once, in the secret box, with a copy button, and never kept: the box is
// emptied when dismissed or when the page leaves the route.

import * as fmt from './format.js';
import { explain } from './messages.js';

const $ = (id) => document.getElementById(id);
/** Deliveries shown per endpoint (the newest). */
const RECENT = 10;
/** How often the delivery logs are re-read while the route is open. */
const REFRESH_EVERY_MS = 10_000;

const EVENT_LABEL = {
  'order.placed': 'Order placed',
  'order.cancelled': 'Order cancelled',
  'order.refunded': 'Order refunded',
  'sale.started': 'Sale started',
  'sale.sold_out': 'Sale sold out',
  'sale.ended': 'Sale ended',
};

/** What the page gives this module: its API call and announcer. */
let page = null;
let open = false;
let timer = 0;

/** Wires the form and the list; `ctx` is `{ call, announce }`. */
export function initWebhooks(ctx) {
  page = ctx;
  $('wh-form').addEventListener('submit', register);
  $('wh-secret-copy').addEventListener('click', copySecret);
  $('wh-secret-done').addEventListener('click', hideSecret);
  $('wh-list').addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-action]');
    const li = ev.target.closest('li[data-webhook]');
    if (button && li) act(li, button.dataset.action);
  });
}

/** Shows the endpoints and their deliveries, refreshed while the route is open. */
export async function openWebhooks() {
  open = true;
  hideSecret();
  $('wh-error').hidden = true;
  await loadList();
}

/** Stops refreshing and forgets any secret on screen (the page left the route). */
export function stopWebhooks() {
  open = false;
  clearTimeout(timer);
  timer = 0;
  hideSecret();
}

function problem(e) {
  const ex = explain(e, 'merchant');
  return `${ex.title} ${e.detail || ''}`.trim();
}

function schedule() {
  clearTimeout(timer);
  if (open) timer = setTimeout(refreshDeliveries, REFRESH_EVERY_MS);
}

async function loadList() {
  $('wh-list-error').hidden = true;
  try {
    const { data } = await page.call('GET', '/v1/admin/webhooks');
    if (!open) return;
    const list = $('wh-list');
    const items = data.items.map((w) => list.querySelector(`li[data-webhook="${w.id}"]`) || endpointItem(w));
    list.replaceChildren(...items);
    $('wh-empty').hidden = items.length > 0;
  } catch (e) {
    const el = $('wh-list-error');
    el.textContent = problem(e);
    el.hidden = false;
  }
  await refreshDeliveries();
}

async function refreshDeliveries() {
  clearTimeout(timer);
  if (!open) return;
  const items = [...$('wh-list').querySelectorAll('li[data-webhook]')];
  await Promise.all(items.map(loadDeliveries));
  schedule();
}

function endpointItem(w) {
  const li = document.createElement('li');
  li.dataset.webhook = w.id;
  li.className = 'card endpoint';
  const head = document.createElement('div');
  head.className = 'endpoint-head';
  const url = document.createElement('code');
  url.className = 'url';
  url.textContent = w.url;
  const events = document.createElement('span');
  events.className = 'muted';
  events.textContent = w.events.map((e) => EVENT_LABEL[e] || e).join(' · ');
  head.append(url, events);
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.innerHTML = `<button type="button" data-action="refresh">Refresh deliveries</button>
    <button type="button" data-action="rotate">Rotate secret</button>
    <button type="button" class="danger" data-action="delete">Delete</button>
    <span data-role="confirm" hidden><span>Delete this endpoint and its pending deliveries?</span>
      <button type="button" class="danger" data-action="delete-yes">Yes, delete it</button>
      <button type="button" data-action="delete-no">Keep it</button></span>`;
  for (const b of actions.querySelectorAll('button')) b.setAttribute('aria-label', `${b.textContent} — ${w.url}`);
  const err = document.createElement('p');
  err.className = 'field-error';
  err.setAttribute('role', 'alert');
  err.hidden = true;
  const table = document.createElement('table');
  table.className = 'variants-table deliveries';
  table.innerHTML = `<caption>Recent deliveries</caption>
    <thead><tr><th scope="col">Event</th><th scope="col" class="num">Attempts</th><th scope="col">Last status</th><th scope="col">Next attempt</th><th scope="col">Delivered</th></tr></thead>
    <tbody></tbody>`;
  const none = document.createElement('p');
  none.className = 'muted';
  none.dataset.role = 'none';
  none.textContent = 'No deliveries yet.';
  none.hidden = true;
  li.append(head, actions, err, table, none);
  return li;
}

/** A time as its time of day when today (deliveries are seconds apart), else date and time. */
function moment(iso) {
  if (!iso) return '—';
  return new Date(iso).toDateString() === new Date().toDateString() ? fmt.timeOfDay(iso) : fmt.when(iso);
}

function deliveryRow(d) {
  const tr = document.createElement('tr');
  tr.dataset.state = d.delivered_at ? 'delivered' : d.next_attempt_at ? 'retrying' : 'failed';
  const cells = [
    EVENT_LABEL[d.event_type] || d.event_type,
    String(d.attempts),
    d.last_status === null || d.last_status === undefined ? (d.attempts ? 'no answer' : '—') : String(d.last_status),
    d.next_attempt_at ? moment(d.next_attempt_at) : '—',
    d.delivered_at ? moment(d.delivered_at) : tr.dataset.state === 'failed' ? 'failed' : 'not yet',
  ];
  cells.forEach((text, i) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (i === 0) td.title = d.webhook_id;
    if (i === 1) td.className = 'num';
    tr.append(td);
  });
  return tr;
}

async function loadDeliveries(li) {
  const id = li.dataset.webhook;
  try {
    const { data } = await page.call('GET', `/v1/admin/webhooks/${id}/deliveries?limit=${RECENT}`);
    li.querySelector('tbody').replaceChildren(...data.items.map(deliveryRow));
    li.querySelector('[data-role="none"]').hidden = data.items.length > 0;
  } catch (e) {
    if (e.code === 'webhook_not_found') {
      li.remove();
      $('wh-empty').hidden = $('wh-list').children.length > 0;
      return;
    }
    showItemError(li, e);
  }
}

function showItemError(li, e) {
  const err = li.querySelector('.field-error');
  err.textContent = problem(e);
  err.hidden = false;
}

async function act(li, action) {
  const id = li.dataset.webhook;
  const url = li.querySelector('.url').textContent;
  const confirm = li.querySelector('[data-role="confirm"]');
  const del = li.querySelector('[data-action="delete"]');
  li.querySelector('.field-error').hidden = true;
  if (action === 'refresh') return loadDeliveries(li);
  if (action === 'delete') {
    del.hidden = true;
    confirm.hidden = false;
    confirm.querySelector('[data-action="delete-no"]').focus();
    return;
  }
  if (action === 'delete-no') {
    confirm.hidden = true;
    del.hidden = false;
    del.focus();
    return;
  }
  if (action === 'delete-yes') {
    try {
      await page.call('DELETE', `/v1/admin/webhooks/${id}`);
      li.remove();
      $('wh-empty').hidden = $('wh-list').children.length > 0;
      page.announce(`Endpoint ${url} deleted.`);
    } catch (e) {
      showItemError(li, e);
    }
    return;
  }
  if (action === 'rotate') {
    const button = li.querySelector('[data-action="rotate"]');
    button.disabled = true;
    try {
      const { data } = await page.call('POST', `/v1/admin/webhooks/${id}/rotate-secret`);
      showSecret(`New signing secret of ${url}`, data.secret, 'The previous secret keeps signing beside it for 24 hours, so you can switch your receiver over.');
    } catch (e) {
      showItemError(li, e);
    } finally {
      button.disabled = false;
    }
  }
}

async function register(ev) {
  ev.preventDefault();
  const err = $('wh-error');
  err.hidden = true;
  const input = $('wh-url');
  input.removeAttribute('aria-invalid');
  const events = [...document.querySelectorAll('#wh-events input:checked')].map((c) => c.value);
  const url = input.value.trim();
  if (!url || !events.length) {
    err.textContent = !url ? 'Enter the URL your receiver listens on.' : 'Choose at least one event.';
    err.hidden = false;
    if (!url) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
    return;
  }
  const button = $('wh-submit');
  button.disabled = true;
  try {
    const { data } = await page.call('POST', '/v1/admin/webhooks', { body: { url, events } });
    input.value = '';
    showSecret(`Signing secret of ${data.url}`, data.secret, 'Deliveries start with the next event of the types you chose.');
    await loadList();
  } catch (e) {
    err.textContent = problem(e);
    err.hidden = false;
    if (e.code === 'invalid_field' && /^url/.test(e.detail || '')) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  } finally {
    button.disabled = false;
  }
}

function showSecret(title, secret, note) {
  $('wh-secret-title').textContent = title;
  $('wh-secret-value').value = secret;
  $('wh-secret-hint').textContent = `${note} Copy puts it on the clipboard; you can also select it and press Ctrl+C (⌘C).`;
  $('wh-secret').hidden = false;
  $('wh-secret-value').focus();
  $('wh-secret-value').select();
  page.announce(`${title} is shown once: copy it now.`);
}

function hideSecret() {
  $('wh-secret-value').value = '';
  $('wh-secret').hidden = true;
}

async function copySecret() {
  const input = $('wh-secret-value');
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    page.announce('Secret copied.');
    $('wh-secret-copy').textContent = 'Copied';
    setTimeout(() => {
      $('wh-secret-copy').textContent = 'Copy';
    }, 2000);
  } catch {
    // No clipboard access (an insecure origin, or a refused permission): it is selected.
    page.announce('Secret selected: press Ctrl+C to copy it.');
  }
}
