// The dashboard's orders of one sale (API.md v1 "Merchant admin" and v1.1 "after the
// purchase"): the latest orders, paged with the cursor, and a refund per confirmed order
// with or without returning its units to stock.
//
// The list is refreshed by re-reading only its first page on a modest interval (and at
// once after a refund): a sale with thousands of orders costs one small page per tick,
// not the whole list. New orders go on top; rows already shown are updated in place.
//
// A refund is an intent: this order, restock or not. Its Idempotency-Key is made when
// the intent is first sent and kept until an answer settles it, so a retry after a
// network error or a 5xx repeats the same refund rather than asking for a second one;
// changing the checkbox is a new intent with a new key.

import * as fmt from './format.js';
import { newKey } from './api.js';
import { explain } from './messages.js';

const $ = (id) => document.getElementById(id);
/** Orders per page (and per refresh). */
const PAGE = 10;
/** How often the first page is re-read while the sale is open. */
const REFRESH_EVERY_MS = 15_000;

const STATUS_LABEL = { confirmed: 'Confirmed', cancelled: 'Cancelled', refunded: 'Refunded' };

/** What the page gives this module: its API call and announcer. */
let page = null;
let saleId = null;
let cursor = null;
let timer = 0;
/** The sale's SKU, naming the items of an order that lists no lines (a one-variant sale). */
let saleSku = '';
/** order id → { key, restock }: the refund intent not yet settled by an answer. */
const intents = new Map();

/** Wires the buttons; `ctx` is `{ call, announce }`. */
export function initOrders(ctx) {
  page = ctx;
  $('orders-more').addEventListener('click', () => loadMore());
  $('orders-refresh').addEventListener('click', () => refresh());
  $('order-rows').addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-refund]');
    if (button) refund(button.dataset.refund);
  });
  document.addEventListener('visibilitychange', () => {
    if (saleId && !document.hidden) refresh();
  });
}

/** Shows the orders of sale `sale` (its first page) and keeps them fresh. */
export async function openOrders(sale) {
  stopOrders();
  saleId = sale.id;
  saleSku = sale.sku || '';
  cursor = null;
  intents.clear();
  $('order-rows').replaceChildren();
  $('orders-more').hidden = true;
  $('orders-empty').hidden = true;
  $('orders-error').hidden = true;
  await refresh();
}

/** Stops refreshing (the page left the sale). */
export function stopOrders() {
  clearTimeout(timer);
  timer = 0;
  saleId = null;
}

function fail(e) {
  const ex = explain(e, 'merchant');
  const el = $('orders-error');
  el.textContent = `${ex.title} ${e.detail || ''}`.trim();
  el.hidden = false;
}

function schedule() {
  clearTimeout(timer);
  if (saleId) timer = setTimeout(refresh, REFRESH_EVERY_MS);
}

/** Re-reads the first page: new orders on top, shown ones updated in place. */
async function refresh() {
  const id = saleId;
  if (!id) return;
  clearTimeout(timer);
  // A tab in the background reads nothing; it catches up when shown again.
  if (document.hidden && $('order-rows').children.length) return schedule();
  try {
    const { data } = await page.call('GET', `/v1/admin/sales/${id}/orders?limit=${PAGE}`);
    if (saleId !== id) return;
    $('orders-error').hidden = true;
    const body = $('order-rows');
    const known = data.items.some((o) => rowOf(o.order_id));
    if (!known || !body.children.length) {
      // Nothing in common with what is shown (more new orders than a page, or the
      // first read): start over from this page.
      body.replaceChildren(...data.items.map(row));
      cursor = data.next_cursor;
    } else {
      const fresh = [];
      for (const o of data.items) {
        const tr = rowOf(o.order_id);
        if (tr) paint(tr, o);
        else fresh.push(row(o));
      }
      body.prepend(...fresh);
    }
    $('orders-more').hidden = !cursor;
    $('orders-empty').hidden = body.children.length > 0;
    $('orders-when').textContent = `· ${fmt.timeOfDay(new Date().toISOString())}`;
  } catch (e) {
    if (saleId === id) fail(e);
  }
  if (saleId === id) schedule();
}

async function loadMore() {
  const id = saleId;
  if (!id || !cursor) return;
  const button = $('orders-more');
  button.disabled = true;
  try {
    const q = new URLSearchParams({ limit: String(PAGE), cursor });
    const { data } = await page.call('GET', `/v1/admin/sales/${id}/orders?${q}`);
    if (saleId !== id) return;
    $('order-rows').append(...data.items.filter((o) => !rowOf(o.order_id)).map(row));
    cursor = data.next_cursor;
    $('orders-more').hidden = !cursor;
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

function rowOf(orderId) {
  return $('order-rows').querySelector(`tr[data-order="${orderId}"]`);
}

function items(o) {
  if (!Array.isArray(o.lines) || !o.lines.length) {
    return saleSku ? `${fmt.count(o.quantity)} × ${saleSku}` : `${fmt.count(o.quantity)} unit${o.quantity === 1 ? '' : 's'}`;
  }
  return o.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', ');
}

/** A table row for order `o`: its figures, and a refund form while it is confirmed. */
function row(o) {
  const tr = document.createElement('tr');
  tr.dataset.order = o.order_id;
  const id = document.createElement('td');
  const code = document.createElement('code');
  code.textContent = o.order_id.slice(0, 8);
  code.title = o.order_id;
  id.append(code);
  const placed = document.createElement('td');
  const time = document.createElement('time');
  time.dateTime = o.created_at;
  time.textContent = fmt.when(o.created_at);
  placed.append(time);
  const status = document.createElement('td');
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.dataset.role = 'status';
  status.append(badge);
  const what = document.createElement('td');
  what.textContent = items(o);
  const amount = document.createElement('td');
  amount.className = 'num';
  amount.textContent = fmt.money(o.amount);
  const action = document.createElement('td');
  action.className = 'refund-cell';
  const box = `restock-${o.order_id}`;
  action.innerHTML = `<span class="refund-form">
      <label class="check"><input type="checkbox" id="${box}" checked> Return units to stock</label>
      <button type="button" data-refund="${o.order_id}">Refund</button>
    </span>
    <span class="refund-outcome" role="status"></span>`;
  action.querySelector('button').setAttribute('aria-label', `Refund order ${o.order_id.slice(0, 8)}`);
  tr.append(id, placed, status, what, amount, action);
  paint(tr, o);
  return tr;
}

/** Updates the parts of a row that change: the status, and whether a refund is offered. */
function paint(tr, o) {
  const badge = tr.querySelector('[data-role="status"]');
  badge.dataset.status = o.status;
  badge.textContent = STATUS_LABEL[o.status] || o.status;
  const form = tr.querySelector('.refund-form');
  const busy = form.querySelector('button').getAttribute('aria-busy') === 'true';
  if (!busy) form.hidden = o.status !== 'confirmed';
}

async function refund(orderId) {
  const tr = rowOf(orderId);
  if (!tr || !saleId) return;
  const id = saleId;
  const button = tr.querySelector('button[data-refund]');
  const restock = tr.querySelector('input[type="checkbox"]').checked;
  const outcome = tr.querySelector('.refund-outcome');
  let intent = intents.get(orderId);
  if (!intent || intent.restock !== restock) {
    intent = { key: newKey(), restock };
    intents.set(orderId, intent);
  }
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  outcome.textContent = 'Refunding…';
  outcome.dataset.state = 'busy';
  try {
    const { data } = await page.call('POST', `/v1/admin/sales/${id}/orders/${orderId}/refund`, {
      body: { restock },
      headers: { 'Idempotency-Key': intent.key },
    });
    intents.delete(orderId);
    button.removeAttribute('aria-busy');
    paint(tr, data);
    const words = `Refunded${restock ? '; the units are back on sale' : '; the units left the sale'}.`;
    outcome.textContent = words;
    outcome.dataset.state = 'ok';
    page.announce(`Order ${orderId.slice(0, 8)}: ${words}`);
  } catch (e) {
    // A network error or a 5xx may have refunded already: keep the key so a retry of
    // this intent replays it. Any other answer settles the intent.
    const unsettled = e.status === 0 || e.status >= 500 || e.status === 429 || e.code === 'request_in_progress';
    if (!unsettled) intents.delete(orderId);
    button.removeAttribute('aria-busy');
    const ex = explain(e, 'merchant');
    outcome.textContent = [ex.title, e.detail, unsettled ? 'Press Refund again to retry the same refund.' : ''].filter(Boolean).join(' ');
    outcome.dataset.state = 'bad';
    page.announce(outcome.textContent);
  } finally {
    button.disabled = false;
  }
  if (saleId === id) refresh();
}
