// The sale page: product, countdown, Buy → waiting room → reserve → checkout →
// confirmation. Everything a shopper needs to come back to (the guest session, the
// reservation, the order) lives in localStorage, so a refresh or a second tab resumes
// at the same place; the server stays the source of truth and is asked on every resume.

import { api, serverNow, newKey, loadJson, saveJson } from './api.js';
import * as fmt from './format.js';
import {
  $, saleId, view, hooks, TRANSIENT, deadlines, deadlineFired, SESSION_KEY, STATE_KEY, RECENT_KEY,
  local, updateLocal, session, dropSession, showView, schedule, stopPolling, announce, clearNotice,
  showProblem, showMessage, withRetries, setBusy,
} from './page.js';
import { ticket, join, rejoin, leave, pollTicket, showExpired } from './line.js';
import { cartBody, showShortLines, linesText, linesTotal, renderOrderLines, refreshCart } from './cart.js';

/** The public sale (GET /v1/sales/{id}). */
export let sale = null;

// ------------------------------------------------------------------ the sale itself

const STATUS_LABEL = {
  scheduled: 'Coming soon',
  live: 'On sale now',
  paused: 'Paused',
  sold_out: 'Sold out',
  ended: 'Ended',
};

export async function loadSale({ fresh = false } = {}) {
  // `fresh` revalidates with the server (a 304 when nothing changed) right after this
  // shopper changed the stock; otherwise the HTTP cache may answer.
  const { data } = await api('GET', `/v1/sales/${encodeURIComponent(saleId)}`, {
    cache: fresh ? 'no-cache' : 'default',
  });
  sale = data;
  renderSale();
  return data;
}

function renderSale() {
  document.querySelector('.product').setAttribute('aria-busy', 'false');
  document.title = `${sale.name} — flashsale`;
  $('sale-name').textContent = sale.name;
  $('sale-description').textContent = sale.description;
  $('sale-price').textContent = fmt.money(sale.price);
  $('sale-available').textContent = fmt.count(sale.stock.available);
  $('sale-total').textContent = `of ${fmt.count(sale.stock.total)}`;
  const share = sale.stock.total ? sale.stock.available / sale.stock.total : 0;
  $('sale-stockbar').style.width = `${(share * 100).toFixed(1)}%`;
  $('sale-limit').textContent = `up to ${sale.per_user_limit}`;
  renderVariantStock();
  const badge = $('sale-status');
  badge.textContent = STATUS_LABEL[sale.status] || sale.status;
  badge.dataset.status = sale.status;
  renderWhen();
  if (view === 'start' || view === null) renderStart();
  if (view === 'admitted') refreshCart();
}

/** Each variant's price and what is left, on the product (a sale of several variants). */
function renderVariantStock() {
  const list = $('sale-variants');
  const variants = Array.isArray(sale.variants) && sale.variants.length > 1 ? sale.variants : null;
  list.hidden = !variants;
  if (!variants) return;
  list.replaceChildren(
    ...variants.map((v) => {
      const li = document.createElement('li');
      li.dataset.variant = v.variant_id;
      li.dataset.soldOut = v.stock.available > 0 ? 'false' : 'true';
      const left = v.stock.available > 0 ? `${fmt.count(v.stock.available)} left` : 'sold out';
      li.textContent = `${v.name || v.sku} — ${fmt.money(v.price)} — ${left}`;
      return li;
    }),
  );
}

function renderWhen() {
  if (!sale) return;
  const el = $('sale-when');
  const starts = Date.parse(sale.starts_at);
  switch (sale.status) {
    case 'scheduled':
      el.textContent = `Opens ${fmt.when(sale.starts_at)} — in ${fmt.clock(starts - serverNow())}`;
      break;
    case 'live':
      el.textContent = `Open until ${fmt.when(sale.ends_at)}`;
      break;
    case 'paused':
      el.textContent = 'The merchant paused the sale for a moment.';
      break;
    case 'sold_out':
      el.textContent = 'Every unit is sold or held by shoppers checking out.';
      break;
    default:
      el.textContent = `Ended ${fmt.when(sale.ends_at)}`;
  }
}

function rememberRecent() {
  const recent = (loadJson(RECENT_KEY) || []).filter((r) => r.id !== saleId);
  recent.unshift({ id: saleId, name: sale.name, starts_at: sale.starts_at });
  saveJson(RECENT_KEY, recent.slice(0, 8));
}

// ------------------------------------------------------------------ start

export function renderStart() {
  if (!sale) return;
  if (sale.status === 'ended') {
    showView('ended');
    return;
  }
  showView('start');
  const buy = $('buy');
  const hint = $('start-hint');
  buy.disabled = false;
  switch (sale.status) {
    case 'scheduled':
      buy.textContent = 'Join the line';
      hint.textContent = `The line opens ${fmt.when(sale.starts_at)}. Join now: everyone who joins before then gets a place drawn fairly at random, so there's no need to rush.`;
      break;
    case 'sold_out':
      buy.textContent = 'Sold out';
      buy.disabled = true;
      hint.textContent = 'Every unit is sold or held. Held units that are not paid for come back — check again in a few minutes.';
      break;
    case 'paused':
      buy.textContent = 'Join the line';
      hint.textContent = 'The sale is paused. You can join the line now; it moves again when the sale resumes.';
      break;
    default:
      buy.textContent = 'Buy now';
      hint.textContent = "You'll get a place in a fair line; we let shoppers in as fast as checkout can serve them.";
  }
}

// ------------------------------------------------------------------ reserve

async function reserve(ev) {
  ev.preventDefault();
  if (!ticket || !ticket.admission_token) return pollTicket();
  const btn = $('reserve');
  const body = cartBody();
  if (!body) {
    showMessage('Pick what you want first.', 'Choose a quantity for at least one option, then reserve.', 'empty_cart');
    return;
  }
  const key = newKey();
  setBusy(btn, true, 'Reserving…');
  clearNotice();
  try {
    const s = session();
    const { data } = await withRetries(() =>
      api('POST', `/v1/sales/${saleId}/reservations`, {
        token: s.token,
        body,
        headers: { 'X-Admission-Token': ticket.admission_token, 'Idempotency-Key': key },
      }),
      { codes: TRANSIENT, tries: 4 },
    );
    updateLocal({ reservation: data });
    showCheckout(data);
    refreshSale(true);
  } catch (e) {
    if (e.code === 'sold_out' && showShortLines(e)) {
      refreshSale(true);
    } else if (e.code === 'sold_out') {
      stopPolling();
      refreshSale();
      if (showView('sold_out', { focus: true })) announce('Sold out.');
    } else if (e.code === 'not_admitted') {
      await pollTicket();
      if (view === 'admitted') showProblem(e);
    } else if (e.code === 'sale_not_live') {
      await pollTicket();
      if (view === 'admitted') showProblem(e);
    } else if (e.code === 'per_user_limit_exceeded' || e.code === 'invalid_quantity') {
      showProblem(e);
      $('quantity').focus();
    } else {
      showProblem(e);
    }
  } finally {
    setBusy(btn, false);
  }
}

// ------------------------------------------------------------------ checkout

function showCheckout(r) {
  stopPolling();
  deadlines.hold = Date.parse(r.expires_at);
  deadlineFired.hold = false;
  const lines = linesText(r.lines);
  const total = lines ? linesTotal(r.lines) : null;
  const price = total ? fmt.money(total) : sale ? fmt.money(sale.price, r.quantity) : '';
  $('co-summary').textContent = `${lines || `${r.quantity} × ${sale ? sale.name : 'item'}`} — ${price}`;
  const changed = showView('checkout', { focus: true });
  tick();
  if (changed) {
    announce(`Reserved. You have ${fmt.clockWords(deadlines.hold - serverNow())} to pay.`, { force: true });
    $('card').focus();
  }
}

function cardError(text) {
  const el = $('card-error');
  el.textContent = text;
  el.hidden = !text;
  $('card').setAttribute('aria-invalid', text ? 'true' : 'false');
}

async function pay(ev) {
  ev.preventDefault();
  const r = local().reservation;
  if (!r) return resume();
  const card = $('card').value.trim();
  cardError('');
  clearNotice();
  if (!card) {
    cardError('Enter a card token, for example tok_ok.');
    $('card').focus();
    return;
  }
  const btn = $('pay');
  // One key per payment attempt: a retry of this attempt (network, in progress) reuses
  // it and is never charged twice; the next press is a new attempt.
  const key = newKey();
  setBusy(btn, true, 'Paying…');
  $('pay-form').setAttribute('aria-busy', 'true');
  announce('Processing your payment…');
  try {
    const s = session();
    const { data } = await withRetries(
      () =>
        api('POST', `/v1/reservations/${r.reservation_id}/checkout`, {
          token: s.token,
          body: { payment_token: card },
          headers: { 'Idempotency-Key': key },
        }),
      { codes: [...TRANSIENT, 'request_in_progress'], tries: 10, waitMs: 1000 },
    );
    setBusy(btn, false);
    $('pay-form').removeAttribute('aria-busy');
    updateLocal({ order_id: data.order_id, reservation: null });
    showOrder(data.order_id, data);
    refreshSale(true);
  } catch (e) {
    setBusy(btn, false);
    $('pay-form').removeAttribute('aria-busy');
    await checkoutFailed(e, r);
  }
}

async function checkoutFailed(e, r) {
  const left = () => fmt.clock(deadlines.hold - serverNow());
  switch (e.code) {
    case 'payment_declined':
      showMessage('Your card was declined.', `Try another card — your units stay reserved for ${left()}.`, e.code);
      $('card').select();
      $('card').focus();
      break;
    case 'payment_unavailable': {
      const wait = Math.max(1, e.retryAfter || 2);
      showMessage(
        "The payment provider isn't answering.",
        `You were not charged and your units are still reserved (${left()} left). Try again in ${wait} s.`,
        e.code,
      );
      // Hold the button for Retry-After, counting down on it.
      const btn = $('pay');
      let remaining = wait;
      btn.disabled = true;
      btn.textContent = `Try again in ${remaining} s`;
      const timer = setInterval(() => {
        remaining -= 1;
        if (remaining > 0) {
          btn.textContent = `Try again in ${remaining} s`;
          return;
        }
        clearInterval(timer);
        btn.textContent = 'Pay';
        btn.disabled = false;
      }, 1000);
      break;
    }
    case 'reservation_expired':
      updateLocal({ reservation: null });
      showExpired('hold');
      break;
    case 'reservation_not_held':
    case 'reservation_not_found':
      await checkReservation(r);
      break;
    case 'unit_unavailable':
      updateLocal({ reservation: null });
      showProblem(e);
      showExpired('gone');
      break;
    case 'invalid_field':
      cardError(e.detail.replace(/^payment_token:\s*/, 'The card token ') || 'Check the card token.');
      $('card').focus();
      break;
    case 'unauthorized':
      dropSession();
      updateLocal({ reservation: null });
      showProblem(e);
      renderStart();
      break;
    default:
      showProblem(e);
  }
}

async function release() {
  const r = local().reservation;
  const s = session();
  if (r && s) {
    try {
      await api('DELETE', `/v1/reservations/${r.reservation_id}`, { token: s.token });
    } catch (e) {
      if (e.code !== 'reservation_not_found' && e.code !== 'reservation_not_held') {
        showProblem(e);
        return;
      }
    }
  }
  updateLocal({ reservation: null });
  clearNotice();
  announce('Your units were given back.');
  await pollTicket();
}

/** Finds out what became of a stored reservation and shows that. */
async function checkReservation(r) {
  const s = session();
  if (!s) {
    updateLocal({ reservation: null });
    renderStart();
    return;
  }
  try {
    const { data } = await api('GET', `/v1/reservations/${r.reservation_id}`, { token: s.token });
    updateLocal({ reservation: data });
    if (data.status === 'held' && Date.parse(data.expires_at) > serverNow()) {
      showCheckout(data);
    } else if (data.status === 'checked_out') {
      const order = await findOrder(s, data.reservation_id);
      updateLocal({ reservation: null, order_id: order ? order.order_id : null });
      if (order) showOrder(order.order_id, order);
      else pollTicket();
    } else if (data.status === 'released') {
      updateLocal({ reservation: null });
      await pollTicket();
    } else {
      updateLocal({ reservation: null });
      showExpired('hold');
    }
  } catch (e) {
    if (e.code === 'reservation_not_found') {
      updateLocal({ reservation: null });
      showExpired('gone');
    } else if (e.code === 'unauthorized') {
      dropSession();
      updateLocal({ reservation: null });
      renderStart();
    } else {
      showProblem(e, () => checkReservation(r));
    }
  }
}

async function findOrder(s, reservationId) {
  let cursor = null;
  for (let page = 0; page < 5; page += 1) {
    const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const { data } = await api('GET', `/v1/orders${q}`, { token: s.token });
    const found = data.items.find((o) => o.reservation_id === reservationId);
    if (found) return found;
    if (!data.next_cursor) return null;
    cursor = data.next_cursor;
  }
  return null;
}

// ------------------------------------------------------------------ confirmation

let orderPolls = 0;

async function showOrder(orderId, order) {
  stopPolling();
  if (showView('confirmation', { focus: true })) {
    orderPolls = 0;
    announce('Thank you — your order is confirmed.', { force: true });
  }
  if (!order) {
    const s = session();
    if (!s) return renderStart();
    try {
      order = (await api('GET', `/v1/orders/${orderId}`, { token: s.token })).data;
    } catch (e) {
      if (e.code === 'order_not_found' || e.code === 'unauthorized') {
        updateLocal({ order_id: null });
        showProblem(e);
        return;
      }
      showProblem(e, () => showOrder(orderId));
      return;
    }
  }
  clearNotice();
  $('o-id').textContent = order.order_id;
  $('o-quantity').textContent = String(order.quantity);
  $('o-amount').textContent = fmt.money(order.amount);
  $('o-created').textContent = fmt.when(order.created_at);
  renderOrderLines(order);
  renderCancel(order);
  const line = $('o-confirmation');
  const sent = order.confirmation && order.confirmation.status === 'sent';
  if (sent) {
    if (line.dataset.state !== 'sent') announce('Confirmation sent.');
    line.dataset.state = 'sent';
    $('o-confirmation-text').textContent = order.confirmation.sent_at
      ? `Confirmation sent at ${fmt.timeOfDay(order.confirmation.sent_at)}`
      : 'Confirmation sent';
  } else {
    line.dataset.state = 'pending';
    $('o-confirmation-text').textContent = 'Sending your confirmation…';
    orderPolls += 1;
    // Every second at first, then every 5 s: the worker usually sends it within seconds.
    schedule(() => showOrder(orderId), orderPolls < 30 ? 1000 : 5000);
  }
}

// The order page's Cancel button: shown while `cancellable_until` is in the future
// (API.md v1.1), then the outcome. One key per order page: a retry of the press (a
// network failure) is answered the first answer, never a second cancel.
let cancelKey = null;

function renderCancel(order) {
  const until = order.cancellable_until ? Date.parse(order.cancellable_until) : NaN;
  const open = order.status === 'confirmed' && until > serverNow();
  $('o-cancel-line').hidden = !open;
  if (open) $('o-cancel-until').textContent = `You may cancel until ${fmt.timeOfDay(order.cancellable_until)}.`;
  const closed = $('o-closed');
  closed.hidden = order.status === 'confirmed';
  if (order.status === 'cancelled') {
    closed.textContent = 'Order cancelled — your payment was released and the units went back on sale.';
  } else if (order.status === 'refunded') {
    closed.textContent = 'The shop refunded this order.';
  }
}

async function cancelOrder() {
  const s = session();
  if (!s) return renderStart();
  const orderId = $('o-id').textContent;
  const btn = $('o-cancel');
  cancelKey = cancelKey || newKey();
  setBusy(btn, true, 'Cancelling…');
  try {
    const { data } = await withRetries(
      () =>
        api('POST', `/v1/orders/${orderId}/cancel`, {
          token: s.token,
          headers: { 'Idempotency-Key': cancelKey },
        }),
      { codes: [...TRANSIENT, 'request_in_progress'], tries: 5, waitMs: 1000 },
    );
    setBusy(btn, false);
    renderCancel(data);
    announce('Your order is cancelled.', { force: true });
  } catch (e) {
    setBusy(btn, false);
    if (e.code === 'not_cancellable') {
      $('o-cancel-line').hidden = true;
      showMessage('This order can no longer be cancelled.', e.detail || '', e.code);
    } else {
      showProblem(e, cancelOrder);
    }
  }
}

// ------------------------------------------------------------------ clock

export function tick() {
  const now = serverNow();
  if (sale) {
    if (sale.status === 'scheduled') {
      renderWhen();
      if (now >= Date.parse(sale.starts_at) && !deadlineFired.saleStart) {
        deadlineFired.saleStart = true;
        // Past the start: ask the server itself, not the HTTP cache, until it says so.
        refreshSale(true).then(() => {
          if (sale.status === 'scheduled') setTimeout(() => (deadlineFired.saleStart = false), 1000);
        });
      }
    }
  }
  if (view === 'prequeue' && sale) {
    const left = Date.parse(sale.starts_at) - now;
    $('pre-countdown').textContent = left > 0 ? fmt.clock(left) : 'Drawing places…';
    if (left <= -1000 && !deadlineFired.start) {
      deadlineFired.start = true;
      schedule(pollTicket, 0);
    }
  }
  if (view === 'admitted') {
    const left = deadlines.admission - now;
    $('adm-countdown').textContent = fmt.clock(left);
    if (left <= 0 && !deadlineFired.admission) {
      deadlineFired.admission = true;
      schedule(pollTicket, 600);
    }
  }
  if (view === 'checkout') {
    const left = deadlines.hold - now;
    $('hold-countdown').textContent = fmt.clock(left);
    $('hold-countdown').setAttribute('aria-label', fmt.clockWords(left));
    if (left <= 60_000 && left > 59_000) announce('One minute left to pay.');
    if (left <= 0 && !deadlineFired.hold) {
      deadlineFired.hold = true;
      const r = local().reservation;
      // The sweeper returns the units within a moment of the deadline.
      if (r) setTimeout(() => checkReservation(r), 800);
    }
  }
}

let saleRefreshing = false;
export async function refreshSale(fresh = false) {
  if (saleRefreshing || !sale) return;
  saleRefreshing = true;
  try {
    await loadSale({ fresh });
  } catch {
    // The page keeps the last data; the next refresh tries again.
  } finally {
    saleRefreshing = false;
  }
}

// ------------------------------------------------------------------ start-up

export async function resume() {
  stopPolling();
  const st = local();
  if (st.order_id && session()) return showOrder(st.order_id);
  if (st.reservation && session()) return checkReservation(st.reservation);
  if (session()) return pollTicket();
  renderStart();
}

async function main() {
  hooks.rejoin = rejoin;
  $('buy').addEventListener('click', join);
  $('rejoin').addEventListener('click', rejoin);
  $('leave').addEventListener('click', leave);
  $('reserve-form').addEventListener('submit', reserve);
  $('pay-form').addEventListener('submit', pay);
  $('o-cancel').addEventListener('click', cancelOrder);
  $('release').addEventListener('click', release);
  if (!/^[0-9a-f-]{36}$/i.test(saleId)) {
    showView('notfound');
    return;
  }
  for (;;) {
    try {
      await loadSale();
      break;
    } catch (e) {
      if (e.code === 'sale_not_found') {
        showView('notfound');
        $('sale-name').textContent = 'Sale not found';
        document.querySelector('.product').setAttribute('aria-busy', 'false');
        return;
      }
      showProblem(e);
      await new Promise((r) => setTimeout(r, (e.retryAfter || 2) * 1000));
    }
  }
  clearNotice();
  rememberRecent();
  await resume();
  setInterval(tick, 500);
  // The sale data is cacheable (max-age 1 s + ETag): a refresh every 5 s costs the
  // server a 304 at most.
  setInterval(refreshSale, 5000);
  // Another tab of the same shopper moved on (reserved, paid, rejoined): follow it.
  window.addEventListener('storage', (e) => {
    if (e.key === STATE_KEY || e.key === SESSION_KEY) resume();
  });
}

main();
