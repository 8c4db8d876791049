// The sale page: product, countdown, Buy → waiting room → reserve → checkout →
// confirmation. Everything a shopper needs to come back to (the guest session, the
// reservation, the order) lives in localStorage, so a refresh or a second tab resumes
// at the same place; the server stays the source of truth and is asked on every resume.

import { api, serverNow, newKey, loadJson, saveJson } from './api.js';
import { explain } from './messages.js';
import * as fmt from './format.js';

const $ = (id) => document.getElementById(id);
const saleId = decodeURIComponent(location.pathname.split('/')[2] || '');
const SESSION_KEY = 'flashsale.session';
const STATE_KEY = `flashsale.sale.${saleId}`;
const RECENT_KEY = 'flashsale.recent';

/** The public sale (GET /v1/sales/{id}). */
let sale = null;
/** The last ticket seen. */
let ticket = null;
/** The view on screen. */
let view = null;
/** Answers after which the same request may simply be sent again (same idempotency key). */
const TRANSIENT = ['network_error', 'overloaded', 'rate_limited', 'request_timeout', 'dependency_unavailable'];
/** Deadlines the 1-second tick counts down to (ms, server clock). */
const deadlines = { admission: 0, hold: 0 };
/** The one pending poll (ticket, order, or a retry). */
let pollTimer = 0;
let lastAnnounce = { at: 0, text: '' };
let retryTimer = 0;
let deadlineFired = { admission: false, hold: false, start: false, saleStart: false };
let drawShown = false;
/** The revealed draw is on the page (shown with the waiting and admitted views). */
let drawReady = false;

// ------------------------------------------------------------------ local state

function local() {
  return loadJson(STATE_KEY) || {};
}

function updateLocal(patch) {
  const next = { ...local(), ...patch };
  for (const k of Object.keys(next)) if (next[k] === null || next[k] === undefined) delete next[k];
  saveJson(STATE_KEY, Object.keys(next).length ? next : null);
}

function session() {
  const s = loadJson(SESSION_KEY);
  if (!s || !s.token) return null;
  if (Date.parse(s.expires_at) - serverNow() < 60_000) return null;
  return s;
}

async function ensureSession() {
  const existing = session();
  if (existing) return existing;
  const { data } = await api('POST', '/v1/sessions');
  saveJson(SESSION_KEY, data);
  return data;
}

function dropSession() {
  saveJson(SESSION_KEY, null);
}

// ------------------------------------------------------------------ view plumbing

function showView(name, { focus = false } = {}) {
  const changed = view !== name;
  view = name;
  for (const el of document.querySelectorAll('[data-view]')) el.hidden = el.dataset.view !== name;
  document.body.dataset.screen = name;
  // The draw check belongs to shoppers the draw placed, while they wait or are let in.
  $('q-draw').hidden = !(drawReady && (name === 'waiting' || name === 'admitted'));
  if (changed && focus) {
    const title = document.querySelector(`[data-view="${name}"] .view-title`);
    if (title) {
      title.tabIndex = -1;
      title.focus({ preventScroll: false });
    }
  }
  return changed;
}

function schedule(fn, ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(fn, Math.max(0, ms));
}

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = 0;
}

function announce(text, { force = false } = {}) {
  const now = Date.now();
  if (!force && text === lastAnnounce.text) return;
  lastAnnounce = { at: now, text };
  const el = $('announcer');
  el.textContent = '';
  setTimeout(() => {
    el.textContent = text;
  }, 60);
}

function clearNotice() {
  clearInterval(retryTimer);
  $('notice').hidden = true;
  $('notice-actions').replaceChildren();
}

/**
 * Shows a human message for an API error with its next step. `retry` is called after
 * Retry-After when the next step is to try again by ourselves.
 */
function showProblem(err, retry) {
  const e = explain(err, 'shopper');
  clearNotice();
  $('notice-title').textContent = e.title;
  $('notice-hint').textContent =
    e.next === 'retry' && !retry ? `Please try again in ${Math.max(1, e.retryAfter || 1)} s.` : e.hint;
  $('notice').dataset.code = err.code;
  const actions = $('notice-actions');
  if (e.next === 'retry' && retry) {
    let left = Math.max(1, e.retryAfter || 1);
    const status = document.createElement('span');
    status.className = 'retrying';
    const paint = () => {
      status.textContent = `Trying again in ${left} s…`;
    };
    paint();
    actions.append(status);
    retryTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(retryTimer);
        status.textContent = 'Trying again…';
        retry();
      } else paint();
    }, 1000);
  } else if (e.next === 'rejoin') {
    actions.append(button('Rejoin the line', rejoin, 'primary'));
  } else if (e.next === 'reload') {
    actions.append(button('Reload', () => location.reload()));
  }
  $('notice').hidden = false;
}

function showMessage(title, hint, code) {
  clearNotice();
  $('notice-title').textContent = title;
  $('notice-hint').textContent = hint;
  $('notice').dataset.code = code || '';
  $('notice').hidden = false;
}

function button(label, onClick, cls = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function setBusy(btn, busy, label) {
  if (busy) {
    btn.dataset.label = btn.dataset.label || btn.textContent;
    btn.textContent = label;
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
  } else {
    if (btn.dataset.label) btn.textContent = btn.dataset.label;
    delete btn.dataset.label;
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

/** Retries a call that failed on the network (same idempotency key, so it is safe). */
async function withRetries(call, { codes = ['network_error'], tries = 3, waitMs = 800 } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (e) {
      if (attempt >= tries || !codes.includes(e.code)) throw e;
      await new Promise((r) => setTimeout(r, (e.retryAfter ? e.retryAfter * 1000 : waitMs)));
    }
  }
}

// ------------------------------------------------------------------ the sale itself

const STATUS_LABEL = {
  scheduled: 'Coming soon',
  live: 'On sale now',
  paused: 'Paused',
  sold_out: 'Sold out',
  ended: 'Ended',
};

async function loadSale({ fresh = false } = {}) {
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
  const badge = $('sale-status');
  badge.textContent = STATUS_LABEL[sale.status] || sale.status;
  badge.dataset.status = sale.status;
  renderWhen();
  if (view === 'start' || view === null) renderStart();
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

function renderStart() {
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

/**
 * Joins the line; when the sale asks for a proof of work (403 proof_required or
 * proof_invalid), takes a challenge, solves it in a Web Worker while the button shows
 * the progress, and joins with `X-Join-Proof` (API.md v1.1, "the line").
 */
async function joinThroughDoor(token, button) {
  const path = `/v1/sales/${saleId}/queue`;
  try {
    return await api('POST', path, { token, headers: placeHeader() });
  } catch (e) {
    if (e.code !== 'proof_required' && e.code !== 'proof_invalid') throw e;
  }
  for (let attempt = 1; ; attempt++) {
    const { data: challenge } = await api('POST', `/v1/sales/${saleId}/challenge`, { token });
    const nonce = await solveProof(challenge, (share) => {
      setBusy(button, true, `Checking you're a person… ${Math.round(share * 100)}%`);
    });
    try {
      const proof = `${challenge.challenge}:${nonce}`;
      return await api('POST', path, { token, headers: { ...placeHeader(), 'X-Join-Proof': proof } });
    } catch (e) {
      // A challenge that expired while solving: one more, then give up.
      if (e.code !== 'proof_invalid' || attempt >= 2) throw e;
    }
  }
}

/** Solves a challenge in a Web Worker; `progress(share)` gets the expected share done. */
function solveProof(challenge, progress) {
  return new Promise((resolve, reject) => {
    const worker = new Worker('/static/js/proof-worker.js');
    const expected = 2 ** challenge.difficulty_bits;
    worker.onmessage = ({ data }) => {
      // The chance a solution was found by now: how far along an average solve is.
      progress(Math.min(0.99, 1 - Math.exp(-data.tried / expected)));
      if (data.nonce !== undefined) {
        worker.terminate();
        resolve(data.nonce);
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(event.message || 'the proof of work could not run'));
    };
    worker.postMessage({ challenge: challenge.challenge, bits: challenge.difficulty_bits });
  });
}

async function join() {
  const buy = $('buy');
  setBusy(buy, true, 'Joining…');
  clearNotice();
  try {
    let s = await ensureSession();
    let res;
    try {
      res = await joinThroughDoor(s.token, buy);
    } catch (e) {
      if (e.code !== 'unauthorized') throw e;
      dropSession();
      s = await ensureSession();
      res = await joinThroughDoor(s.token, buy);
    }
    updateLocal({ initial_ahead: null, prequeued: null });
    handleTicket(res.data, { focus: true });
  } catch (e) {
    if (e.code === 'sale_closed') {
      await loadSale().catch(() => {});
      showView('ended');
    } else if (e.code === 'sale_not_found') {
      showView('notfound');
    } else {
      showProblem(e, join);
    }
  } finally {
    setBusy(buy, false);
  }
}

async function rejoin() {
  clearNotice();
  stopPolling();
  // Rejoining goes to the back: the statement of the old place is dropped.
  updateLocal({ reservation: null, order_id: null, initial_ahead: null, place_token: null });
  const s = session();
  if (s) {
    try {
      await api('DELETE', `/v1/sales/${saleId}/queue/me`, { token: s.token });
    } catch (e) {
      if (e.code !== 'not_in_queue' && e.code !== 'unauthorized') {
        showProblem(e, rejoin);
        return;
      }
    }
  }
  showView('start');
  await join();
}

async function leave() {
  const s = session();
  stopPolling();
  if (s) {
    try {
      await api('DELETE', `/v1/sales/${saleId}/queue/me`, { token: s.token });
    } catch (e) {
      if (e.code !== 'not_in_queue') {
        showProblem(e, leave);
        return;
      }
    }
  }
  updateLocal({ initial_ahead: null, place_token: null });
  clearNotice();
  renderStart();
  announce('You left the line.');
}

// ------------------------------------------------------------------ the line

async function pollTicket() {
  const s = session();
  if (!s) {
    renderStart();
    return;
  }
  try {
    const { data } = await api('GET', `/v1/sales/${saleId}/queue/me`, {
      token: s.token,
      headers: placeHeader(),
    });
    clearNotice();
    await handleTicket(data);
  } catch (e) {
    if (e.code === 'not_in_queue') {
      clearNotice();
      renderStart();
    } else if (e.code === 'unauthorized') {
      dropSession();
      renderStart();
    } else if (e.code === 'sale_not_found') {
      showView('notfound');
    } else {
      // Keep the view as it is (the place is not lost) and say what happens next.
      showProblem(e, pollTicket);
    }
  }
}

/**
 * The signed statement of our place, sent back on polls and joins: if the line's store
 * loses the line, the server puts us back at this place (X-Place-Token).
 */
function placeHeader() {
  const token = local().place_token;
  return token ? { 'X-Place-Token': token } : {};
}

async function handleTicket(t, { focus = false } = {}) {
  ticket = t;
  if (t.place_token && t.place_token !== local().place_token) updateLocal({ place_token: t.place_token });
  switch (t.state) {
    case 'prequeue':
      showPrequeue(t, focus);
      schedule(pollTicket, t.poll_after_ms);
      break;
    case 'waiting':
      showWaiting(t, focus);
      schedule(pollTicket, t.poll_after_ms);
      break;
    case 'admitted':
      showAdmitted(t);
      // Ask again when the turn ends (the ticket then says `expired`).
      schedule(pollTicket, Math.min(t.poll_after_ms, deadlines.admission - serverNow() + 500));
      break;
    case 'sold_out':
      stopPolling();
      refreshSale(true);
      if (showView('sold_out', { focus: true })) announce('Sold out. Every unit has been sold.');
      break;
    case 'closed':
      await loadSale().catch(() => {});
      if (sale && sale.status === 'ended') {
        stopPolling();
        if (showView('ended', { focus: true })) announce('This sale has ended.');
      } else {
        if (showView('closed', { focus: true })) announce('The sale is paused. Your place is kept.');
        schedule(pollTicket, Math.max(t.poll_after_ms, 2000));
      }
      break;
    case 'expired':
      stopPolling();
      showExpired('turn');
      break;
    default:
      schedule(pollTicket, t.poll_after_ms || 2000);
  }
}

async function fetchDraw() {
  try {
    const { data } = await api('GET', `/v1/sales/${saleId}/draw`);
    return data;
  } catch {
    return null;
  }
}

async function showPrequeue(t, focus) {
  const changed = showView('prequeue', { focus });
  updateLocal({ prequeued: true });
  $('pre-opens').textContent = fmt.when(sale.starts_at);
  tick();
  if (changed) announce(`You're in. The line opens ${fmt.when(sale.starts_at)}; your place will be drawn at the start.`);
  const draw = await fetchDraw();
  if (draw && draw.commitment) {
    $('pre-commitment').textContent = draw.commitment;
    $('pre-count').textContent = fmt.count(draw.ticket_count);
    $('pre-draw').hidden = false;
  }
}

function showWaiting(t, focus) {
  const changed = showView('waiting', { focus });
  const st = local();
  let initial = st.initial_ahead;
  if (initial === undefined || initial === null || t.ahead > initial) {
    initial = t.ahead;
    updateLocal({ initial_ahead: initial });
  }
  $('q-position').textContent = `#${fmt.count(t.position)}`;
  $('q-ahead').textContent = fmt.count(t.ahead);
  $('q-wait').textContent = fmt.wait(t.estimated_wait_seconds);
  const done = initial > 0 ? (initial - t.ahead) / initial : 1;
  const pct = Math.round(Math.max(0, Math.min(1, done)) * 100);
  $('q-progress-bar').style.width = `${Math.max(pct, 2)}%`;
  const bar = $('q-progress');
  bar.setAttribute('aria-valuenow', String(pct));
  bar.setAttribute('aria-valuetext', `${fmt.count(t.ahead)} people ahead of you`);
  const words = `You're number ${fmt.count(t.position)} in line, ${fmt.count(t.ahead)} ${t.ahead === 1 ? 'person' : 'people'} ahead. Estimated wait ${fmt.wait(t.estimated_wait_seconds)}.`;
  // Announce on arrival, then at most every 30 s: a live region that talks every
  // second is noise.
  if (changed || Date.now() - lastAnnounce.at > 30_000) announce(words);
  if (!drawShown && st.prequeued) showDraw(t);
}

async function showDraw(t) {
  drawShown = true;
  const draw = await fetchDraw();
  if (!draw || !draw.seed) {
    drawShown = false;
    return;
  }
  $('q-seed').textContent = draw.seed;
  $('q-commitment').textContent = draw.commitment || '';
  $('q-algorithm').textContent = draw.algorithm;
  $('q-count').textContent = fmt.count(draw.ticket_count);
  $('q-ticket').textContent = t.ticket_id;
  drawReady = true;
  $('q-draw').hidden = !(view === 'waiting' || view === 'admitted');
  const ok = await seedMatches(draw.seed, draw.commitment);
  if (ok !== null) {
    $('q-verified').textContent = ok
      ? '✓ Checked in your browser: SHA-256 of this seed is the commitment published before the start.'
      : '✗ This seed does not hash to the published commitment.';
    $('q-verified').hidden = false;
  }
}

/** SHA-256 of the seed's bytes against the commitment; null where the browser can't tell. */
async function seedMatches(seedHex, commitmentHex) {
  if (!globalThis.crypto || !crypto.subtle || !/^([0-9a-f]{2})+$/i.test(seedHex || '')) return null;
  const bytes = new Uint8Array(seedHex.match(/../g).map((h) => parseInt(h, 16)));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  return hex === String(commitmentHex).toLowerCase();
}

function showAdmitted(t) {
  deadlines.admission = Date.parse(t.admission_expires_at);
  deadlineFired.admission = false;
  const select = $('quantity');
  const max = Math.max(1, sale ? sale.per_user_limit : 1);
  if (select.options.length !== max) {
    select.replaceChildren(
      ...Array.from({ length: max }, (_, i) => new Option(String(i + 1), String(i + 1))),
    );
  }
  const changed = showView('admitted', { focus: true });
  tick();
  if (!drawShown && local().prequeued) showDraw(t);
  if (changed) {
    announce(`It's your turn! Reserve within ${fmt.clockWords(deadlines.admission - serverNow())}.`, { force: true });
  }
}

function showExpired(kind) {
  stopPolling();
  const texts = {
    turn: ['Your turn has passed', "You were let in but didn't reserve in time, so your turn went to the next shopper. Rejoin the line to get a new place."],
    hold: ['Your hold expired', "The time to pay ran out, so the units went back on sale. Rejoin the line to try again."],
    gone: ['Your reservation is gone', 'It was released or could not be found. Rejoin the line to try again.'],
  };
  const [title, text] = texts[kind] || texts.turn;
  $('expired-title').textContent = title;
  $('expired-text').textContent = text;
  if (showView('expired', { focus: true })) announce(`${title}. ${text}`);
}

// ------------------------------------------------------------------ reserve

async function reserve(ev) {
  ev.preventDefault();
  if (!ticket || !ticket.admission_token) return pollTicket();
  const btn = $('reserve');
  const quantity = Number($('quantity').value);
  const key = newKey();
  setBusy(btn, true, 'Reserving…');
  clearNotice();
  try {
    const s = session();
    const { data } = await withRetries(() =>
      api('POST', `/v1/sales/${saleId}/reservations`, {
        token: s.token,
        body: { quantity },
        headers: { 'X-Admission-Token': ticket.admission_token, 'Idempotency-Key': key },
      }),
      { codes: TRANSIENT, tries: 4 },
    );
    updateLocal({ reservation: data });
    showCheckout(data);
    refreshSale(true);
  } catch (e) {
    if (e.code === 'sold_out') {
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
  const price = sale ? fmt.money(sale.price, r.quantity) : '';
  $('co-summary').textContent = `${r.quantity} × ${sale ? sale.name : 'item'} — ${price}`;
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

// ------------------------------------------------------------------ clock

function tick() {
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
async function refreshSale(fresh = false) {
  if (saleRefreshing || !sale) return;
  saleRefreshing = true;
  try {
    const before = sale.status;
    await loadSale({ fresh });
  } catch {
    // The page keeps the last data; the next refresh tries again.
  } finally {
    saleRefreshing = false;
  }
}

// ------------------------------------------------------------------ start-up

async function resume() {
  stopPolling();
  const st = local();
  if (st.order_id && session()) return showOrder(st.order_id);
  if (st.reservation && session()) return checkReservation(st.reservation);
  if (session()) return pollTicket();
  renderStart();
}

async function main() {
  $('buy').addEventListener('click', join);
  $('rejoin').addEventListener('click', rejoin);
  $('leave').addEventListener('click', leave);
  $('reserve-form').addEventListener('submit', reserve);
  $('pay-form').addEventListener('submit', pay);
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
