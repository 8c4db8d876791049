// A scalper's bot, for the bot-farm rehearsal (k6/bots.js): one guest session per bot,
// as many bots per address as the farm runs. Each bot solves the door's challenge at
// whatever difficulty the server asks of its address (as fast as this k6 can hash),
// joins, polls fast (FARM_POLL_MS, not the ticket's `poll_after_ms`; a `429` is waited
// out as Retry-After says, as any client must to be served), and once admitted reserves
// and pays at once: no thinking, no declined cards, no abandoned holds.
//
// It counts in the same counters as the honest shopper (lib/shopper.js); k6's
// `scenario` tag splits every figure of the rehearsal between crowd and farm.
import { sleep } from 'k6';

import { SALE_ID } from './common.js';
import { proofFor } from './proof.js';
import {
  holdsPlaced, json, newKey, ordersPlaced, prequeueOrders, prequeueTickets, problemCode, request,
  sessionsCreated, shoppersAdmitted, shoppersArrived, shoppersSoldOut, ticketsJoined,
} from './shopper.js';

/**
 * One bot, bounded by `deadline` (ms since epoch), polling every `pollMs`: returns its
 * outcome (`bought`, `sold_out`, `closed`, `gave_up`, `shed`, `error`).
 */
export function botJourney(deadline, pollMs) {
  const journey = { requests: 0, deadline, next: __VU };
  shoppersArrived.add(1);
  let res = request(journey, 'session', 'POST', '/v1/sessions', null, {}, (r) => r.status === 201);
  const session = res && res.status === 201 ? json(res) : null;
  if (!session) return res && (res.status === 429 || res.status === 503) ? 'shed' : 'error';
  sessionsCreated.add(1);
  const auth = { Authorization: `Bearer ${session.token}` };

  res = request(journey, 'challenge', 'POST', `/v1/sales/${SALE_ID}/challenge`, null, auth,
    (r) => r.status === 201);
  const issued = res && res.status === 201 ? json(res) : null;
  if (!issued) return res && (res.status === 429 || res.status === 503) ? 'shed' : 'error';
  res = request(journey, 'join', 'POST', `/v1/sales/${SALE_ID}/queue`, null,
    { ...auth, 'X-Join-Proof': proofFor(issued) },
    (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sale_closed'));
  if (!res || res.status === 409) return 'closed';
  let ticket = json(res);
  if (!ticket || (res.status !== 201 && res.status !== 200)) return 'error';
  if (res.status === 201) ticketsJoined.add(1);
  const prequeued = res.status === 201 && ticket.state === 'prequeue';
  if (prequeued) prequeueTickets.add(1);

  while (ticket.state === 'prequeue' || ticket.state === 'waiting') {
    if (Date.now() + pollMs > deadline) return 'gave_up';
    sleep(pollMs / 1000);
    res = request(journey, 'poll', 'GET', `/v1/sales/${SALE_ID}/queue/me`, null, auth, (r) => r.status === 200);
    const next = res && res.status === 200 ? json(res) : null;
    if (!next) return res && (res.status === 429 || res.status === 503) ? 'gave_up' : 'error';
    ticket = next;
  }
  if (ticket.state === 'sold_out') {
    shoppersSoldOut.add(1);
    return 'sold_out';
  }
  if (ticket.state !== 'admitted' || !ticket.admission_token) return ticket.state;
  shoppersAdmitted.add(1);

  res = request(journey, 'reserve', 'POST', `/v1/sales/${SALE_ID}/reservations`, JSON.stringify({ quantity: 1 }),
    {
      ...auth,
      'Content-Type': 'application/json',
      'X-Admission-Token': ticket.admission_token,
      'Idempotency-Key': newKey(),
    },
    (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sold_out'));
  if (!res || (res.status !== 201 && res.status !== 200)) {
    if (res && res.status === 409) {
      shoppersSoldOut.add(1);
      return 'sold_out';
    }
    return 'error';
  }
  holdsPlaced.add(1);
  const hold = json(res);
  res = request(journey, 'checkout', 'POST', `/v1/reservations/${hold.reservation_id}/checkout`,
    JSON.stringify({ payment_token: 'tok_ok' }),
    { ...auth, 'Content-Type': 'application/json', 'Idempotency-Key': newKey() },
    (r) => r.status === 201);
  if (!res || res.status !== 201) return 'error';
  ordersPlaced.add(1);
  if (prequeued) prequeueOrders.add(1);
  return 'bought';
}
