// The sale page's part in the line: joining through the door (proof of work), the
// ticket it polls, leaving and rejoining, the pre-queue and the published draw.

import { api, serverNow } from './api.js';
import * as fmt from './format.js';
import {
  $, saleId, deadlines, lastAnnounce, local, updateLocal, session, ensureSession, dropSession,
  showView, schedule, stopPolling, announce, clearNotice, showProblem, setBusy, markDrawReady,
} from './page.js';
import { sale, loadSale, renderStart, refreshSale, tick } from './storefront.js';
import { showAdmitted } from './cart.js';

/** The last ticket seen. */
export let ticket = null;
let drawShown = false;

/**
 * Joins the line; when the sale asks for a proof of work (403 proof_required or
 * proof_invalid), takes a challenge, solves it in a Web Worker while the button shows
 * the progress, and joins with `X-Join-Proof` (API.md v1.1, "the line").
 */
async function joinThroughDoor(token, button) {
  const path = `/v1/sales/${saleId}/queue`;
  try {
    return await api('POST', path, { token, body: joinBody(), headers: placeHeader() });
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
      return await api('POST', path, { token, body: joinBody(), headers: { ...placeHeader(), 'X-Join-Proof': proof } });
    } catch (e) {
      // A challenge that expired while solving: one more, then give up.
      if (e.code !== 'proof_invalid' || attempt >= 2) throw e;
    }
  }
}

/** The join's body: the access code the shopper typed, if any (API.md v1.1, "access codes"). */
function joinBody() {
  const code = $('access-code').value.trim();
  return code ? { access_code: code } : undefined;
}

/** Solves a challenge in a Web Worker; `progress(share)` gets the expected share done. */
function solveProof(challenge, progress) {
  return new Promise((resolve, reject) => {
    // The worker's fingerprinted name, through the page's import map.
    const url = import.meta.resolve ? import.meta.resolve('./proof-worker.js') : '/static/js/proof-worker.js';
    const worker = new Worker(url);
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

export async function join() {
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
    if (e.code.startsWith('access_code_')) {
      // An invitation-only sale (or a code that did not work): ask for the code.
      $('code-field').hidden = false;
      showProblem(e);
      $('access-code').focus();
    } else if (e.code === 'sale_closed') {
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

export async function rejoin() {
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

export async function leave() {
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

export async function pollTicket() {
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
export function placeHeader() {
  const token = local().place_token;
  return token ? { 'X-Place-Token': token } : {};
}

export async function handleTicket(t, { focus = false } = {}) {
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
  showDrawOnce(t);
}

/** Shows the revealed draw once (for shoppers the draw placed). */
export function showDrawOnce(t) {
  if (!drawShown && local().prequeued) showDraw(t);
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
  markDrawReady();
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

export function showExpired(kind) {
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
