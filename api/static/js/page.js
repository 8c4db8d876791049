// The sale page's shell: the shopper's local state (guest session, reservation, order
// in localStorage), the view on screen, the notice area and the helpers every step of
// the page uses (busy buttons, retries of safe calls, the live-region announcer).

import { api, serverNow, loadJson, saveJson } from './api.js';
import { explain } from './messages.js';

export const $ = (id) => document.getElementById(id);
export const saleId = decodeURIComponent(location.pathname.split('/')[2] || '');
export const SESSION_KEY = 'flashsale.session';
export const STATE_KEY = `flashsale.sale.${saleId}`;
export const RECENT_KEY = 'flashsale.recent';

/** The view on screen. */
export let view = null;
/** Steps of the page the notice area offers (set by the page at start-up). */
export const hooks = { rejoin: () => location.reload() };
/** Answers after which the same request may simply be sent again (same idempotency key). */
export const TRANSIENT = ['network_error', 'overloaded', 'rate_limited', 'request_timeout', 'dependency_unavailable'];
/** Deadlines the 1-second tick counts down to (ms, server clock). */
export const deadlines = { admission: 0, hold: 0 };
/** The one pending poll (ticket, order, or a retry). */
let pollTimer = 0;
export let lastAnnounce = { at: 0, text: '' };
let retryTimer = 0;
export const deadlineFired = { admission: false, hold: false, start: false, saleStart: false };
/** The revealed draw is on the page (shown with the waiting and admitted views). */
let drawReady = false;

/** The revealed draw arrived: show it with the waiting and admitted views. */
export function markDrawReady() {
  drawReady = true;
  $('q-draw').hidden = !(view === 'waiting' || view === 'admitted');
}

// ------------------------------------------------------------------ local state

export function local() {
  return loadJson(STATE_KEY) || {};
}

export function updateLocal(patch) {
  const next = { ...local(), ...patch };
  for (const k of Object.keys(next)) if (next[k] === null || next[k] === undefined) delete next[k];
  saveJson(STATE_KEY, Object.keys(next).length ? next : null);
}

export function session() {
  const s = loadJson(SESSION_KEY);
  if (!s || !s.token) return null;
  if (Date.parse(s.expires_at) - serverNow() < 60_000) return null;
  return s;
}

export async function ensureSession() {
  const existing = session();
  if (existing) return existing;
  const { data } = await api('POST', '/v1/sessions');
  saveJson(SESSION_KEY, data);
  return data;
}

export function dropSession() {
  saveJson(SESSION_KEY, null);
}

// ------------------------------------------------------------------ view plumbing

export function showView(name, { focus = false } = {}) {
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

export function schedule(fn, ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(fn, Math.max(0, ms));
}

export function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = 0;
}

export function announce(text, { force = false } = {}) {
  const now = Date.now();
  if (!force && text === lastAnnounce.text) return;
  lastAnnounce = { at: now, text };
  const el = $('announcer');
  el.textContent = '';
  setTimeout(() => {
    el.textContent = text;
  }, 60);
}

export function clearNotice() {
  clearInterval(retryTimer);
  $('notice').hidden = true;
  $('notice-actions').replaceChildren();
}

/**
 * Shows a human message for an API error with its next step. `retry` is called after
 * Retry-After when the next step is to try again by ourselves.
 */
export function showProblem(err, retry) {
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
    actions.append(button('Rejoin the line', () => hooks.rejoin(), 'primary'));
  } else if (e.next === 'reload') {
    actions.append(button('Reload', () => location.reload()));
  }
  $('notice').hidden = false;
}

export function showMessage(title, hint, code) {
  clearNotice();
  $('notice-title').textContent = title;
  $('notice-hint').textContent = hint;
  $('notice').dataset.code = code || '';
  $('notice').hidden = false;
}

export function button(label, onClick, cls = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

export function setBusy(btn, busy, label) {
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
export async function withRetries(call, { codes = ['network_error'], tries = 3, waitMs = 800 } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (e) {
      if (attempt >= tries || !codes.includes(e.code)) throw e;
      await new Promise((r) => setTimeout(r, (e.retryAfter ? e.retryAfter * 1000 : waitMs)));
    }
  }
}

