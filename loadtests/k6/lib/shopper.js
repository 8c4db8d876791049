// The shopper of a launch rehearsal, as API.md describes the flow: session → join the
// line → poll at `poll_after_ms` until admitted → reserve one unit → think → pay
// (mostly tok_ok; some declined first, then a new key; some abandon the hold) → read
// the order until its confirmation is sent. CANCEL_SHARE (0) of the buyers instead
// cancel the order after a short think (CANCEL_THINK_MS, 1000): one POST cancel with an
// Idempotency-Key, sent again once with the same key after a 5xx or no answer.
//
// Every request carries a `step` tag (session, join, poll, reserve, checkout,
// confirmation) and a fixed `name`, so per-step latency is `http_req_duration{step:…}`
// and 20,000 shoppers do not make 20,000 URL series.
//
// Errors are counted as k6 users expect, but only for answers the contract does not
// promise: `409 sold_out` at reserve, `402 payment_declined` for tok_declined, and the
// polite `429`/`503` + Retry-After (counted as shed, then honoured) are answers, not
// errors.
//
// With several API processes (BASE_URL a comma-separated list) a shopper's requests go
// round-robin over them, and a request that gets no answer or a 5xx from one is sent
// again at once to the next, unchanged (same body, same Idempotency-Key): a load
// balancer's retry, made safe by the idempotency contract.
//
// CHAOS=1 (the chaos rehearsal) adds what a storefront does when the system lost state
// under it, instead of counting those answers as errors: a ticket that is gone
// (`404 not_in_queue` after Redis restarted empty) is rejoined; a checkout whose first
// attempt died with its process (`409 request_in_progress`, `409 reservation_not_held`
// while it is being finished) is retried with the same key; a hold that is gone
// (`410 reservation_expired`, `404 reservation_not_found`) is reserved again once.
// Every answer that is not a plain success is then logged as one console line,
// `chaos-req <epoch ms> <step> <status> <code> <api index> <kind>`, which the runner
// (loadtests/lib/chaos.py) attributes to the fault windows.
//
// CLIENT_IP_HEADER (the server's FLASHSALE_CLIENT_IP_HEADER): a journey that called
// `actFrom(address)` sends its address in that header on every request, as a trusted
// load balancer would append it (the bot-farm rehearsal, k6/bots.js: many synthetic
// addresses over one loopback connection).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

import { BASE_URLS, SALE_ID, envFloat, envInt } from './common.js';
import { proofFor } from './proof.js';

/** Unexpected answers to admitted shoppers (reserve, checkout, confirmation). */
export const admittedErrors = new Rate('admitted_errors');
/** Unexpected answers at any step. */
export const unexpectedResponses = new Rate('unexpected_responses');
/** 429 and 503 answers (shed load), by step. */
export const shedResponses = new Counter('shed_responses');
/** Requests that got no answer (timeout, connection refused or reset), by step. */
export const noAnswer = new Counter('no_answer');
/** Shoppers who left still shed: at the deadline before admission, after MAX_ATTEMPTS after it. */
const shedOut = new Counter('shoppers_shed_out');
/** Requests sent again to the next API process after no answer or a 5xx, by step. */
export const failovers = new Counter('failovers');
/** CHAOS=1: tickets rejoined after `404 not_in_queue`. */
const rejoins = new Counter('rejoins');
/** CHAOS=1: holds found gone at checkout (410, 404), then reserved again once. */
const holdsLost = new Counter('holds_lost');

/** Shoppers who started a journey (the bot farm's sessions count here too). */
export const shoppersArrived = new Counter('shoppers_arrived');
/** Guest sessions created (`201` from `POST /v1/sessions`). */
export const sessionsCreated = new Counter('sessions_created');
/** Tickets taken (`201` from a join): entries in the line and the pre-queue draw. */
export const ticketsJoined = new Counter('tickets_joined');
/** Tickets taken before the start (state `prequeue`): the entries of the draw. */
export const prequeueTickets = new Counter('prequeue_tickets');
/** Shoppers whose ticket was admitted. */
export const shoppersAdmitted = new Counter('shoppers_admitted');
/** Shoppers told sold out, in line or at reserve. */
export const shoppersSoldOut = new Counter('shoppers_sold_out');
const shoppersClosed = new Counter('shoppers_closed');
const shoppersExpired = new Counter('shoppers_expired');
const shoppersGaveUp = new Counter('shoppers_gave_up');
/** Units held (`201`/`200` from reserve). */
export const holdsPlaced = new Counter('holds_placed');
/** A shopper whose first size was gone and who tried another. */
const variantFallbacks = new Counter('variant_fallbacks');
const holdsAbandoned = new Counter('holds_abandoned');
const paymentsDeclined = new Counter('payments_declined');
/** Orders placed (`201` from checkout): units bought, one per order at quantity 1. */
export const ordersPlaced = new Counter('orders_placed');
/** Orders placed by shoppers whose ticket was drawn (taken before the start). */
export const prequeueOrders = new Counter('prequeue_orders');
/** Cancels answered `200` (the order cancelled), `409 not_cancellable`, or anything else. */
const cancelsOk = new Counter('cancels_ok');
const cancelsRefused = new Counter('cancels_not_cancellable');
const cancelErrors = new Counter('cancel_errors');
const confirmationsSent = new Counter('confirmations_sent');
const confirmationsLate = new Counter('confirmations_late');
const timeToAdmission = new Trend('time_to_admission', true);
const timeToOrder = new Trend('time_to_order', true);
const timeToConfirmation = new Trend('time_to_confirmation', true);

/** The steps of a shopper, in order. */
export const STEPS = ['session', 'challenge', 'join', 'poll', 'reserve', 'checkout', 'confirmation'];
const ADMITTED_STEPS = new Set(['reserve', 'checkout', 'confirmation', 'cancel']);

const NAMES = {
  session: 'POST /v1/sessions',
  challenge: 'POST /v1/sales/{id}/challenge',
  join: 'POST /v1/sales/{id}/queue',
  poll: 'GET /v1/sales/{id}/queue/me',
  reserve: 'POST /v1/sales/{id}/reservations',
  checkout: 'POST /v1/reservations/{id}/checkout',
  confirmation: 'GET /v1/orders/{id}',
  cancel: 'POST /v1/orders/{id}/cancel',
};

const THINK_MS = envInt('THINK_MS', 500);
const ABANDON_SHARE = envFloat('ABANDON_SHARE', 0.05);
/** The sale's variants (loadtests/run passes them for VARIANTS > 1), most popular first. */
const VARIANT_IDS = (__ENV.VARIANT_IDS || '').split(',').filter(Boolean);
const VARIANT_SKEW = envFloat('VARIANT_SKEW', 1.2);
const DECLINE_SHARE = envFloat('DECLINE_SHARE', 0.05);
const CANCEL_SHARE = envFloat('CANCEL_SHARE', 0);
const CANCEL_THINK_MS = envInt('CANCEL_THINK_MS', 1000);
const CONFIRM_TIMEOUT_MS = envInt('CONFIRM_TIMEOUT_MS', 30000);
const MAX_ATTEMPTS = envInt('MAX_ATTEMPTS', 10);
const MAX_BACKOFF_SECS = envInt('MAX_BACKOFF_SECS', 16);
const MAX_REQUESTS_PER_SHOPPER = envInt('MAX_REQUESTS_PER_SHOPPER', 600);
const CHAOS = envInt('CHAOS', 0) === 1;
/** CHAOS=1: how long a checkout is retried while its first attempt is being finished. */
const CHECKOUT_PATIENCE_MS = envInt('CHECKOUT_PATIENCE_MS', 75000);
const FAILOVER = BASE_URLS.length > 1;
const CLIENT_IP_HEADER = (__ENV.CLIENT_IP_HEADER || '').trim();

/** This VU's client address (`actFrom`); null: the connection's own (loopback). */
let clientAddress = null;

/**
 * Sends this VU's next requests as coming from `address` (in CLIENT_IP_HEADER, which
 * the server trusts as its load balancer's); null returns to the connection's address.
 */
export function actFrom(address) {
  if (address !== null && !CLIENT_IP_HEADER) throw new Error('actFrom needs CLIENT_IP_HEADER');
  clientAddress = address;
}

// Every answer a 2xx, a contract answer (402, 409) or polite shedding (429, 503):
// http_req_failed then means "something the contract does not describe".
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 402, 409, 429, 503));

/** The problem `code` of an error answer, or undefined. */
export function problemCode(res) {
  try {
    return res.json('code');
  } catch (_) {
    return undefined;
  }
}

/** CHAOS=1: one console line per answer that is not a plain success (see the header). */
function chaosLog(step, res, api, kind) {
  if (!CHAOS) return;
  const status = res === undefined ? 0 : res.status;
  const code = (res !== undefined && status >= 400 && problemCode(res)) || '-';
  console.log(`chaos-req ${Date.now()} ${step} ${status} ${code} ${api} ${kind}`);
}

let keySeq = 0;
/** A fresh idempotency key (visible ASCII, unique per run). */
export function newKey() {
  keySeq += 1;
  return `k6-${__VU}-${__ITER}-${keySeq}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
}

/** Sends one request to the journey's next API process (round-robin); [res, api index]. */
function send(journey, step, method, path, body, headers) {
  const api = journey.next % BASE_URLS.length;
  journey.next += 1;
  journey.requests += 1;
  const res = http.request(method, `${BASE_URLS[api]}${path}`, body, {
    headers: clientAddress === null ? headers : { ...headers, [CLIENT_IP_HEADER]: clientAddress },
    tags: { step, name: NAMES[step] },
    timeout: '15s',
  });
  return [res, api];
}

/**
 * One request of a step, retried politely on 429/503 (after Retry-After) and on network
 * errors. Before admission a shopper keeps retrying shed answers, as a waiting-room page
 * does, until `journey.deadline`; once admitted, at most MAX_ATTEMPTS times. With several
 * API processes, no answer or a 5xx from one is first sent again at once to the next.
 * `ok(res)` says whether the final answer is one the contract promises for this
 * request; anything else counts as an error.
 */
export function request(journey, step, method, path, body, headers, ok) {
  let res;
  let api = 0;
  let shed = false;
  const admitted = ADMITTED_STEPS.has(step);
  for (let attempt = 1; ; attempt++) {
    if (journey.requests >= MAX_REQUESTS_PER_SHOPPER) break;
    if (admitted && attempt > MAX_ATTEMPTS) break;
    if (!admitted && attempt > 1 && Date.now() >= journey.deadline) break;
    [res, api] = send(journey, step, method, path, body, headers);
    if (FAILOVER && (res.status === 0 || res.status >= 500) && journey.requests < MAX_REQUESTS_PER_SHOPPER) {
      failovers.add(1, { step });
      chaosLog(step, res, api, 'failover');
      [res, api] = send(journey, step, method, path, body, headers);
    }
    shed = res.status === 429 || res.status === 503;
    if (shed) {
      shedResponses.add(1, { step, status: String(res.status) });
      chaosLog(step, res, api, 'shed');
      // 503 payment_unavailable at checkout is retried with the same key: safe by the
      // idempotency contract.
      // Retry-After is the least wait; shed again and again, a client backs off
      // exponentially (with full jitter) so a crowd does not retry in lockstep.
      const after = parseFloat(res.headers['Retry-After'] || '1');
      const backoff = Math.min(2 ** (attempt - 1), MAX_BACKOFF_SECS);
      sleep(Math.max(after, 0.2) + Math.random() * backoff);
      continue;
    }
    if (res.status === 0) {
      // Connection error or timeout: an error, retried (every write carries a key).
      noAnswer.add(1, { step });
      chaosLog(step, res, api, 'no_answer');
      record(step, false);
      sleep(0.5);
      continue;
    }
    break;
  }
  if (shed && !admitted) {
    // Shed until the shopper's patience ran out: the polite answer, the shopper leaves.
    shedOut.add(1, { step });
    check(res, { [`${step}: expected answer`]: () => true });
    return res;
  }
  if (shed) shedOut.add(1, { step });
  if (res !== undefined && res.status === 0) return res; // counted in the loop
  const good = res !== undefined && ok(res);
  if (!good) chaosLog(step, res, api, 'error');
  record(step, good);
  check(res, { [`${step}: expected answer`]: () => good });
  return res;
}

function record(step, good) {
  unexpectedResponses.add(!good, { step });
  if (ADMITTED_STEPS.has(step)) admittedErrors.add(!good, { step });
}

/** The answer's JSON body, or null. */
export function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

/**
 * One shopper's whole journey. `deadline` (ms since epoch) bounds it: a shopper still
 * waiting then gives up.
 */
export function shopperJourney(deadline) {
  // `next`: the API process of the next request; shoppers start on different ones.
  const journey = { requests: 0, deadline, next: __VU };
  const arrived = Date.now();
  shoppersArrived.add(1);

  // 1. A guest session.
  let res = request(journey, 'session', 'POST', '/v1/sessions', null, {}, (r) => r.status === 201);
  const session = res && res.status === 201 ? json(res) : null;
  if (!session) return 'error';
  sessionsCreated.add(1);
  const auth = { Authorization: `Bearer ${session.token}` };

  // 2. Join the line and 3. wait in it until admitted.
  const line = waitInLine(journey, auth, deadline);
  if (line.outcome !== 'admitted') return line.outcome;
  shoppersAdmitted.add(1);
  timeToAdmission.add(Date.now() - arrived);

  // 4.–6. Reserve, think, pay. CHAOS=1: a hold lost with Redis state is reserved again once.
  let bought = buy(journey, auth, line.ticket);
  if (bought.outcome === 'hold_lost') {
    holdsLost.add(1);
    bought = buy(journey, auth, line.ticket);
    if (bought.outcome === 'hold_lost') return 'hold_lost';
  }
  if (bought.outcome !== 'bought') return bought.outcome;
  const order = bought.order;
  ordersPlaced.add(1);
  if (line.prequeued) prequeueOrders.add(1);
  const placed = Date.now();
  timeToOrder.add(placed - arrived);
  if (Math.random() < CANCEL_SHARE) return cancelOrder(journey, auth, order);

  // 7. Read the order until the confirmation is sent (bounded).
  while (Date.now() - placed < CONFIRM_TIMEOUT_MS) {
    res = request(journey, 'confirmation', 'GET', `/v1/orders/${order.order_id}`, null, auth, (r) => r.status === 200);
    const seen = res && res.status === 200 ? json(res) : null;
    if (!seen) return 'error';
    if (seen.confirmation && seen.confirmation.status === 'sent') {
      confirmationsSent.add(1);
      timeToConfirmation.add(Date.now() - placed);
      return 'bought';
    }
    sleep(0.5);
  }
  confirmationsLate.add(1);
  return 'confirmation_late';
}

/**
 * A buyer who changes their mind: a short think, then POST cancel with a fresh
 * Idempotency-Key, sent again once with the same key after a 5xx or no answer.
 * `200` and `409 not_cancellable` are answers; anything else is an error.
 */
function cancelOrder(journey, auth, order) {
  sleep((CANCEL_THINK_MS * (0.5 + Math.random())) / 1000);
  const headers = { ...auth, 'Idempotency-Key': newKey() };
  let res;
  for (let attempt = 0; attempt < 2; attempt++) {
    [res] = send(journey, 'cancel', 'POST', `/v1/orders/${order.order_id}/cancel`, null, headers);
    if (res.status === 0) noAnswer.add(1, { step: 'cancel' });
    if (res.status !== 0 && res.status < 500) break;
  }
  const refused = res.status === 409 && problemCode(res) === 'not_cancellable';
  const good = res.status === 200 || refused;
  (res.status === 200 ? cancelsOk : refused ? cancelsRefused : cancelErrors).add(1);
  record('cancel', good);
  check(res, { 'cancel: expected answer': () => good });
  return res.status === 200 ? 'cancelled' : good ? 'bought' : 'error';
}

/** The most times a CHAOS=1 shopper rejoins a line that lost its ticket. */
const MAX_REJOINS = 3;

/**
 * Joins the line (201 first time, 200 on repeat; 409 sale_closed is an answer) and polls
 * at `poll_after_ms` until the line decides: `{ outcome, ticket, prequeued }`, outcome
 * `admitted` or why not; `prequeued` when the ticket was taken before the start.
 */
function waitInLine(journey, auth, deadline) {
  // The ticket's signed statement of its place, sent back on every poll and rejoin: a
  // line that Redis lost gives the place back (API.md v1.1), as the storefront does.
  let placeToken = null;
  const withPlace = (headers) => (placeToken ? { ...headers, 'X-Place-Token': placeToken } : headers);
  for (let joins = 0; ; joins++) {
    // The door: a fresh challenge, solved, for each join (API.md v1.1).
    let res = request(journey, 'challenge', 'POST', `/v1/sales/${SALE_ID}/challenge`, null, auth,
      (r) => r.status === 201);
    const issued = res && res.status === 201 ? json(res) : null;
    if (!issued) return { outcome: res && (res.status === 429 || res.status === 503) ? 'gave_up' : 'error' };
    const proof = withPlace({ ...auth, 'X-Join-Proof': proofFor(issued) });
    res = request(journey, 'join', 'POST', `/v1/sales/${SALE_ID}/queue`, null, proof,
      (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sale_closed'));
    if (!res || res.status === 409) {
      shoppersClosed.add(1);
      return { outcome: 'closed' };
    }
    let ticket = json(res);
    if (!ticket || (res.status !== 200 && res.status !== 201)) return { outcome: 'error' };
    if (res.status === 201) ticketsJoined.add(1);
    const prequeued = joins === 0 && res.status === 201 && ticket.state === 'prequeue';
    if (prequeued) prequeueTickets.add(1);
    placeToken = ticket.place_token || placeToken;
    let lost = false;
    while (ticket.state === 'prequeue' || ticket.state === 'waiting') {
      const wait = Math.max(ticket.poll_after_ms || 1000, 500);
      if (Date.now() + wait > deadline) {
        shoppersGaveUp.add(1);
        return { outcome: 'gave_up' };
      }
      sleep(wait / 1000);
      const ticketGone = (r) => CHAOS && joins < MAX_REJOINS && r.status === 404 && problemCode(r) === 'not_in_queue';
      res = request(journey, 'poll', 'GET', `/v1/sales/${SALE_ID}/queue/me`, null, withPlace(auth),
        (r) => r.status === 200 || ticketGone(r));
      if (res && ticketGone(res)) {
        // The line lost the ticket and no statement brought it back: join again, as the
        // storefront offers (a place lost: counted as lost_state).
        chaosLog('poll', res, -1, 'lost_state');
        rejoins.add(1);
        lost = true;
        break;
      }
      const next = res && res.status === 200 ? json(res) : null;
      if (!next) return { outcome: 'error' };
      ticket = next;
      placeToken = ticket.place_token || placeToken;
    }
    if (lost) continue;
    if (ticket.state === 'sold_out') {
      shoppersSoldOut.add(1);
      return { outcome: 'sold_out' };
    }
    if (ticket.state === 'closed') {
      shoppersClosed.add(1);
      return { outcome: 'closed' };
    }
    if (ticket.state === 'expired') {
      shoppersExpired.add(1);
      return { outcome: 'expired' };
    }
    if (ticket.state !== 'admitted' || !ticket.admission_token) {
      record('poll', false);
      return { outcome: 'error' };
    }
    return { outcome: 'admitted', ticket, prequeued };
  }
}

/**
 * Reserves one unit with the ticket's admission token (409 sold_out is an answer:
 * someone else got the last one; 200 is the first answer replayed to a retry whose
 * first attempt held the unit but lost its answer), thinks, and pays: some abandon the
 * hold, some are declined first and pay with a new key. `{ outcome, order }`; CHAOS=1
 * answers `hold_lost` when the hold is found gone at checkout.
 */
function buy(journey, auth, ticket) {
  let res = reserveOne(journey, auth, ticket);
  if (!res || (res.status !== 201 && res.status !== 200)) {
    if (res && res.status === 409) {
      shoppersSoldOut.add(1);
      return { outcome: 'sold_out' };
    }
    return { outcome: 'error' };
  }
  const hold = json(res);
  holdsPlaced.add(1);

  // Think.
  sleep((THINK_MS * (0.5 + Math.random())) / 1000);

  // Pay: some abandon (the hold expires), some are declined first.
  const roll = Math.random();
  if (roll < ABANDON_SHARE) {
    holdsAbandoned.add(1);
    return { outcome: 'abandoned' };
  }
  const checkoutPath = `/v1/reservations/${hold.reservation_id}/checkout`;
  if (roll < ABANDON_SHARE + DECLINE_SHARE) {
    res = checkout(journey, auth, checkoutPath, 'tok_declined', (r) => r.status === 402 && problemCode(r) === 'payment_declined');
    if (res && holdGone(res)) return { outcome: 'hold_lost' };
    if (!res || res.status !== 402) return { outcome: 'error' };
    paymentsDeclined.add(1);
  }
  res = checkout(journey, auth, checkoutPath, 'tok_ok', (r) => r.status === 201);
  if (res && holdGone(res)) return { outcome: 'hold_lost' };
  const order = res && res.status === 201 ? json(res) : null;
  if (!order) return { outcome: 'error' };
  return { outcome: 'bought', order };
}

/**
 * Holds one unit: `{ quantity: 1 }` on a one-variant sale; with VARIANT_IDS (a sale of
 * several sizes) one line of the shopper's favourite size, drawn with a skewed
 * popularity (weight 1/rank^VARIANT_SKEW, so the first sizes sell out first). When that
 * size is gone (409 sold_out, whose `lines` name the short line), the shopper settles
 * for the next popular size it has not found gone, as a shopper does with a size grid,
 * until one is held or every size answered sold out: so the popular sizes sell out
 * first and, with a crowd big enough, every size does by the end.
 */
function reserveOne(journey, auth, ticket) {
  const headers = {
    ...auth,
    'Content-Type': 'application/json',
    'X-Admission-Token': ticket.admission_token,
  };
  const soldOut = (r) => r.status === 409 && problemCode(r) === 'sold_out';
  const ok = (r) => r.status === 201 || r.status === 200 || soldOut(r);
  const path = `/v1/sales/${SALE_ID}/reservations`;
  if (!VARIANT_IDS.length) {
    return request(journey, 'reserve', 'POST', path, JSON.stringify({ quantity: 1 }), { ...headers, 'Idempotency-Key': newKey() }, ok);
  }
  const gone = new Set();
  let variant = favouriteVariant();
  let res = null;
  while (variant !== null) {
    const body = JSON.stringify({ lines: [{ variant_id: variant, quantity: 1 }] });
    res = request(journey, 'reserve', 'POST', path, body, { ...headers, 'Idempotency-Key': newKey() }, ok);
    if (!res || !soldOut(res)) return res;
    for (const id of shortLines(res, variant)) gone.add(id);
    gone.add(variant);
    variant = VARIANT_IDS.find((id) => !gone.has(id)) || null;
    if (variant !== null) variantFallbacks.add(1);
  }
  return res;
}

/** A shopper's favourite size, by popularity (weights 1/rank^VARIANT_SKEW). */
function favouriteVariant() {
  const weights = VARIANT_IDS.map((id, rank) => [id, 1 / Math.pow(rank + 1, VARIANT_SKEW)]);
  let roll = Math.random() * weights.reduce((sum, [, w]) => sum + w, 0);
  for (const [id, w] of weights) {
    roll -= w;
    if (roll <= 0) return id;
  }
  return weights[weights.length - 1][0];
}

/** The variants a `409 sold_out` names as short (`lines[].variant_id`); `picked` when it names none. */
function shortLines(res, picked) {
  const body = json(res);
  const lines = body && Array.isArray(body.lines) ? body.lines : [];
  const ids = lines.map((l) => l && l.variant_id).filter(Boolean);
  return ids.length ? ids : [picked];
}

/** CHAOS=1: the checkout answer says the hold is gone (lost with Redis state, or expired meanwhile). */
function holdGone(res) {
  if (!CHAOS) return false;
  const code = problemCode(res);
  return (res.status === 410 && code === 'reservation_expired') || (res.status === 404 && code === 'reservation_not_found');
}

/**
 * One checkout with a fresh Idempotency-Key. CHAOS=1: while an earlier attempt with the
 * key is still being finished (its process died: `409 request_in_progress` until the
 * key is taken over, then `409 reservation_not_held` until the reconciler returns the
 * hold), the same request is retried with the same key, up to CHECKOUT_PATIENCE_MS.
 */
function checkout(journey, auth, path, card, ok) {
  const headers = { ...auth, 'Content-Type': 'application/json', 'Idempotency-Key': newKey() };
  const body = JSON.stringify({ payment_token: card });
  const until = Date.now() + CHECKOUT_PATIENCE_MS;
  const pending = (r) => {
    const code = problemCode(r);
    return CHAOS && r.status === 409 && (code === 'request_in_progress' || code === 'reservation_not_held');
  };
  for (;;) {
    const res = request(journey, 'checkout', 'POST', path, body, headers, (r) => ok(r) || holdGone(r) || pending(r));
    if (res && holdGone(res)) {
      chaosLog('checkout', res, -1, 'lost_state');
      return res;
    }
    if (!res || !pending(res)) return res;
    if (Date.now() >= until || journey.requests >= MAX_REQUESTS_PER_SHOPPER) {
      // Still not finished: out of patience, an error after all.
      chaosLog('checkout', res, -1, 'error');
      record('checkout', false);
      return res;
    }
    chaosLog('checkout', res, -1, 'lost_state');
    sleep(2 + Math.random() * 2);
  }
}

/** Thresholds on the shopper metrics; latency limits only when `strict`. */
export function shopperThresholds(strict, latency) {
  const t = {
    admitted_errors: ['rate<0.001'],
    unexpected_responses: ['rate<0.001'],
  };
  for (const step of STEPS) {
    const [p95, p99] = latency[step];
    t[`http_req_duration{step:${step}}`] = strict ? [`p(95)<${p95}`, `p(99)<${p99}`] : ['max>=0'];
    // Declared so the summary carries per-step counts (k6 keeps tagged sub-metrics
    // only for thresholds).
    t[`http_reqs{step:${step}}`] = ['count>=0'];
    t[`shed_responses{step:${step}}`] = ['count>=0'];
  }
  if (CANCEL_SHARE > 0) {
    t['http_req_duration{step:cancel}'] = ['max>=0'];
    t['http_reqs{step:cancel}'] = ['count>=0'];
  }
  return t;
}

/** Latency limits per step, in ms (p95, p99): env LAT_<STEP>=p95,p99 overrides. */
export function latencyLimits(defaults) {
  const out = {};
  for (const step of STEPS) {
    const raw = __ENV[`LAT_${step.toUpperCase()}`];
    out[step] = raw ? raw.split(',').map(Number) : defaults[step];
  }
  return out;
}
