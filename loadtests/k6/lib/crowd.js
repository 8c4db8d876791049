// A crowd far larger than k6 can hold as virtual users (k6/launch-100k.js): every
// shopper is a few numbers in the memory of the VU that owns it, not a VU.
//
// - The shoppers' guest tokens are minted before k6 starts and read once into a
//   SharedArray (TOKENS_FILE: one token per line, or `<shopper token> <anything>`).
// - Each shopper has an arrival time drawn from the launch's shape (`arrivalAt`): a
//   share before the start (it pre-queues), most in the spike after it, with a density
//   falling over the spike, the rest in a tail.
// - Shopper i belongs to one VU of the `line` scenario: the VU that ran the scenario's
//   iteration number (i mod LINE_VUS) owns the slice {i, i + LINE_VUS, …} (`claim`), so
//   every slice has exactly one owner without any state shared between VUs.
// - The owner keeps its shoppers' next actions in a heap ordered by when they are due:
//   a join at the shopper's arrival time, a poll `poll_after_ms` after the ticket's
//   last answer (or `Retry-After` after a shed one), and for the admitted the buy path:
//   reserve, think, pay, read the order until its confirmation is sent. Each iteration
//   of the scenario (an arrival-rate tick) runs whatever of its VU's heap is due.
//
// The schedule is open: when an action is due depends on the arrival curve and the
// server's answers, never on how long the answers took (a VU waits for its next due
// action within an iteration, up to a budget, so few iterations are needed). How late each action ran
// against its due time (`line_lateness`) says whether the generator kept up; when it
// grows, the crowd is being served slower than it arrives, as a closed model would.
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

import { SALE_ID } from './common.js';
import { proofFor } from './proof.js';
import {
  actFrom, admittedErrors, holdsPlaced, json, newKey, ordersPlaced, problemCode, request,
  shedResponses, shoppersAdmitted, shoppersArrived, shoppersSoldOut,
  ticketsJoined, unexpectedResponses,
} from './shopper.js';

/** Answers the line served (join 200/201, poll 200), by step. */
const lineServed = new Counter('line_served');
/** How late an action of the schedule ran, against when it was due (ms). */
const lineLateness = new Trend('line_lateness', true);
/** Slices of shoppers claimed by the line's VUs: LINE_VUS when every shopper has an owner. */
const lineSlices = new Counter('line_slices');
/** Joins sent again after a shed answer or no answer. */
const joinsRetried = new Counter('joins_retried');
/** Shoppers who left without an answer to act on: `closed`, `expired`, an error, 20 shed joins. */
const shoppersLeft = new Counter('shoppers_left');
/** Shoppers still in line (or buying) when the run's deadline came. */
const shoppersWaitingAtEnd = new Counter('shoppers_waiting_at_end');
/** Shoppers whose arrival came after the run's deadline (the generator fell behind). */
const joinsNotSent = new Counter('joins_not_sent');
const holdsAbandoned = new Counter('holds_abandoned');
const confirmationsSent = new Counter('confirmations_sent');
const timeToAdmission = new Trend('time_to_admission', true);

/** How often each VU writes its served/shed counts per step (`crowd-rate` lines). */
const BUCKET_MS = 5000;
/** The most times a shopper sends a join again after it was shed or not answered. */
const MAX_JOIN_TRIES = 20;

/**
 * Arrival offsets (ms from the first arrival) of `shoppers` shoppers: `prequeueShare`
 * evenly over `prequeueSecs` (before the start), `spikeShare` over `spikeSecs` after
 * it with a density falling linearly to 0 (half of them in the first 30%), the rest
 * evenly over `tailSecs`. Returns a function of the shopper's index.
 */
export function arrivalSchedule({ shoppers, prequeueSecs, spikeSecs, tailSecs, prequeueShare, spikeShare }) {
  const n1 = Math.round(shoppers * prequeueShare);
  const n2 = Math.round(shoppers * spikeShare);
  const n3 = Math.max(shoppers - n1 - n2, 0);
  return (i) => {
    if (i < n1) return (i / n1) * prequeueSecs * 1000;
    if (i < n1 + n2) {
      const u = (i - n1) / n2;
      return (prequeueSecs + spikeSecs * (1 - Math.sqrt(1 - u))) * 1000;
    }
    return (prequeueSecs + spikeSecs + ((i - n1 - n2) / Math.max(n3, 1)) * tailSecs) * 1000;
  };
}

/** The shopper's synthetic client address: `perNetwork` neighbours in each 10.a.b.0/24. */
export function crowdAddress(i, perNetwork) {
  const net = Math.floor(i / perNetwork);
  return `10.${(net >> 8) & 255}.${net & 255}.${10 + (i % perNetwork)}`;
}

// ------------------------------------------------------------------ the VU's heap

/** A binary min-heap of actions by `due` (ms since epoch). */
class Schedule {
  constructor() {
    this.items = [];
  }

  push(item) {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (a[up].due <= a[i].due) break;
      [a[up], a[i]] = [a[i], a[up]];
      i = up;
    }
  }

  peek() {
    return this.items[0];
  }

  pop() {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l].due < a[m].due) m = l;
        if (r < a.length && a[r].due < a[m].due) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }

  get size() {
    return this.items.length;
  }
}

// ------------------------------------------------------------------ the owner

/**
 * The line of one VU: its slices of the crowd and their next actions. `plan`:
 * { baseUrl, tokens (SharedArray of shopper tokens), vus (slices), arrival (index → ms
 * after the first arrival), perNetwork, thinkMs, abandonShare, clientIpHeader,
 * confirmTimeoutMs }.
 */
export class Owner {
  constructor(plan) {
    this.plan = plan;
    this.schedule = new Schedule();
    this.bucket = null;
    this.currentAddress = null;
  }

  /** Takes slice `slice` (shoppers slice, slice + vus, …), their joins due at arrival. */
  claim(slice, t0) {
    lineSlices.add(1);
    for (let i = slice; i < this.plan.tokens.length; i += this.plan.vus) {
      this.schedule.push({ due: t0 + this.plan.arrival(i), i, kind: 'join', tries: 0 });
    }
  }

  /**
   * Runs this VU's actions as they fall due, for at most `budgetMs`: an action due
   * within the budget is waited for here, so a VU is a small event loop and the
   * scenario's iterations only wake it. None runs after `deadline`: shoppers still in
   * line then are counted as waiting at the end.
   */
  runDue(deadline, budgetMs) {
    if (Date.now() >= deadline) {
      while (this.schedule.size) {
        const left = this.schedule.pop();
        (left.kind === 'join' && left.tries === 0 ? joinsNotSent : shoppersWaitingAtEnd).add(1);
      }
      this.flushBucket(true);
      return;
    }
    const until = Math.min(Date.now() + budgetMs, deadline);
    for (;;) {
      const next = this.schedule.peek();
      let now = Date.now();
      if (!next || now >= until || next.due >= until) break;
      if (next.due > now) {
        sleep((next.due - now) / 1000);
        now = Date.now();
      }
      this.schedule.pop();
      lineLateness.add(now - next.due, { kind: next.kind });
      this.act(next, deadline);
    }
    this.flushBucket(false);
  }

  act(s, deadline) {
    // Every shopper from an address of its own: neither the per-address caps nor the
    // door's rise per address and per /24 see a crowd, only shoppers.
    this.currentAddress = this.plan.clientIpHeader ? crowdAddress(s.i, this.plan.perNetwork) : null;
    actFrom(this.currentAddress);
    switch (s.kind) {
      case 'join':
        return this.join(s);
      case 'poll':
        return this.poll(s);
      default:
        return this.buy(s, deadline);
    }
  }

  later(s, kind, ms) {
    s.kind = kind;
    s.due = Date.now() + Math.max(ms, 0);
    this.schedule.push(s);
  }

  /** One line request: counted as served, shed (then `Retry-After` ms) or unexpected. */
  line(step, method, path, headers, ok) {
    const res = http.request(method, path, null, {
      headers: this.currentAddress ? { ...headers, [this.plan.clientIpHeader]: this.currentAddress } : headers,
      tags: { step, name: step === 'join' ? 'POST /v1/sales/{id}/queue' : step === 'poll' ? 'GET /v1/sales/{id}/queue/me' : 'POST /v1/sales/{id}/challenge' },
      timeout: '15s',
    });
    const shed = res.status === 429 || res.status === 503;
    if (shed) {
      shedResponses.add(1, { step, status: String(res.status) });
      this.count(step, 'shed');
    } else {
      const good = ok(res);
      unexpectedResponses.add(!good, { step });
      if (good && step !== 'challenge') {
        lineServed.add(1, { step });
        this.count(step, 'served');
      }
    }
    const after = shed ? parseFloat(res.headers['Retry-After'] || '1') * 1000 : 0;
    return { res, shed, after };
  }

  auth(s) {
    return { Authorization: `Bearer ${this.plan.tokens[s.i]}` };
  }

  /** The door and the join: a fresh challenge, solved, then the join itself. */
  join(s) {
    if (s.tries === 0) {
      shoppersArrived.add(1);
      s.arrived = Date.now();
    }
    const auth = this.auth(s);
    const base = `${this.plan.baseUrl}/v1/sales/${SALE_ID}`;
    const retry = (after) => {
      s.tries += 1;
      if (s.tries >= MAX_JOIN_TRIES) {
        shoppersLeft.add(1);
        return;
      }
      joinsRetried.add(1);
      // Retry-After is the least wait; a crowd backs off with full jitter, growing.
      const backoff = Math.min(2 ** Math.min(s.tries, 4), 16) * 1000 * Math.random();
      this.later(s, 'join', Math.max(after, 200) + backoff);
    };
    let got = this.line('challenge', 'POST', `${base}/challenge`, auth, (r) => r.status === 201);
    const issued = got.res.status === 201 ? json(got.res) : null;
    if (!issued) return got.shed || got.res.status === 0 ? retry(got.after || 1000) : shoppersLeft.add(1);
    const headers = { ...auth, 'X-Join-Proof': proofFor(issued) };
    if (s.placeToken) headers['X-Place-Token'] = s.placeToken;
    got = this.line('join', 'POST', `${base}/queue`, headers,
      (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sale_closed'));
    if (got.shed || got.res.status === 0) return retry(got.after || 1000);
    if (got.res.status === 201) ticketsJoined.add(1);
    this.ticket(s, got.res);
  }

  poll(s) {
    const headers = this.auth(s);
    if (s.placeToken) headers['X-Place-Token'] = s.placeToken;
    const got = this.line('poll', 'GET', `${this.plan.baseUrl}/v1/sales/${SALE_ID}/queue/me`, headers,
      (r) => r.status === 200);
    if (got.shed || got.res.status === 0) return this.later(s, 'poll', got.after || 1000);
    this.ticket(s, got.res);
  }

  /** What a join or poll answer says next: poll again, buy, or leave. */
  ticket(s, res) {
    const ticket = res.status === 200 || res.status === 201 ? json(res) : null;
    if (!ticket) {
      shoppersLeft.add(1);
      return;
    }
    s.placeToken = ticket.place_token || s.placeToken;
    switch (ticket.state) {
      case 'prequeue':
      case 'waiting':
        return this.later(s, 'poll', ticket.poll_after_ms || 1000);
      case 'admitted':
        if (!ticket.admission_token) {
          unexpectedResponses.add(true, { step: 'poll' });
          return undefined;
        }
        shoppersAdmitted.add(1);
        timeToAdmission.add(Date.now() - s.arrived);
        s.admission = ticket.admission_token;
        s.key = newKey();
        s.placeToken = null;
        return this.later(s, 'reserve', 0);
      case 'sold_out':
        shoppersSoldOut.add(1);
        return undefined;
      default:
        shoppersLeft.add(1);
        return undefined;
    }
  }

  /** The admitted: reserve, think, pay, then read the order until it is confirmed. */
  buy(s, deadline) {
    const journey = { requests: 0, deadline, next: 0 };
    const auth = this.auth(s);
    if (s.kind === 'reserve') {
      const res = request(journey, 'reserve', 'POST', `/v1/sales/${SALE_ID}/reservations`, JSON.stringify({ quantity: 1 }),
        { ...auth, 'Content-Type': 'application/json', 'X-Admission-Token': s.admission, 'Idempotency-Key': s.key },
        (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sold_out'));
      if (res && res.status === 409) {
        shoppersSoldOut.add(1);
        return undefined;
      }
      const hold = res && (res.status === 201 || res.status === 200) ? json(res) : null;
      if (!hold) return undefined;
      holdsPlaced.add(1);
      if (Math.random() < this.plan.abandonShare) {
        holdsAbandoned.add(1);
        return undefined;
      }
      s.reservation = hold.reservation_id;
      s.key = newKey();
      return this.later(s, 'checkout', this.plan.thinkMs * (0.5 + Math.random()));
    }
    if (s.kind === 'checkout') {
      const res = request(journey, 'checkout', 'POST', `/v1/reservations/${s.reservation}/checkout`,
        JSON.stringify({ payment_token: 'tok_ok' }),
        { ...auth, 'Content-Type': 'application/json', 'Idempotency-Key': s.key }, (r) => r.status === 201);
      const order = res && res.status === 201 ? json(res) : null;
      if (!order) return undefined;
      ordersPlaced.add(1);
      s.order = order.order_id;
      s.placed = Date.now();
      return this.later(s, 'confirmation', 500);
    }
    // confirmation
    const res = request(journey, 'confirmation', 'GET', `/v1/orders/${s.order}`, null, auth, (r) => r.status === 200);
    const seen = res && res.status === 200 ? json(res) : null;
    if (!seen) return undefined;
    if (seen.confirmation && seen.confirmation.status === 'sent') {
      confirmationsSent.add(1);
      return undefined;
    }
    if (Date.now() - s.placed < this.plan.confirmTimeoutMs) return this.later(s, 'confirmation', 500);
    admittedErrors.add(true, { step: 'confirmation' });
    return undefined;
  }

  /** Counts one answer in this VU's current BUCKET_MS window. */
  count(step, what) {
    const now = Date.now();
    const start = now - (now % BUCKET_MS);
    if (this.bucket && this.bucket.start !== start) this.flushBucket(true);
    if (!this.bucket) this.bucket = { start, counts: {} };
    const key = `${step}_${what}`;
    this.bucket.counts[key] = (this.bucket.counts[key] || 0) + 1;
  }

  /**
   * Writes a finished window as one console line, `crowd-rate <window start ms>
   * <step_what>=<n> …` (lib/crowd.py sums them over the VUs into joins/s and polls/s).
   */
  flushBucket(force) {
    const b = this.bucket;
    if (!b) return;
    if (!force && Date.now() - b.start < BUCKET_MS) return;
    const parts = Object.entries(b.counts).map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`crowd-rate ${b.start} ${parts}`);
    this.bucket = null;
  }
}

/** Whether this iteration number names a slice (the first `vus` iterations do). */
export function sliceOf(vus) {
  const n = exec.scenario.iterationInTest;
  return n < vus ? n : -1;
}
