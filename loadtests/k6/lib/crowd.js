// A crowd far larger than k6 can hold as virtual users (k6/launch-100k.js): every
// shopper is a few numbers in the memory of the VU that owns it, not a VU.
//
// - The shoppers' guest tokens are minted before k6 starts and read once into a
//   SharedArray (TOKENS_FILE: one token per line, or `<shopper token> <anything>`).
// - Each shopper has an arrival time drawn from the launch's shape (`arrivalSchedule`): a
//   share before the start (it pre-queues), most in the spike after it, with a density
//   falling over the spike, the rest in a tail.
// - Shopper i belongs to one VU of the `line` scenario: the VU that ran the scenario's
//   iteration number (i mod LINE_VUS) owns the slice {i, i + LINE_VUS, …} (`claim`), so
//   every slice has exactly one owner without any state shared between VUs.
// - The owner keeps its shoppers' next actions in a heap ordered by when they are due:
//   a join at the shopper's arrival time, a poll `poll_after_ms` after the ticket's
//   last answer (or `Retry-After` after a shed one), and for the admitted the buy path:
//   reserve, think, pay, read the order until its confirmation is sent. An iteration of
//   the scenario (an arrival-rate tick) runs its VU's actions as they fall due for a
//   while, each as an asynchronous request (`http.asyncRequest`), so a slow answer to
//   one shopper never delays another's action.
//
// The schedule is open: when an action is due depends on the arrival curve and the
// server's answers, never on how long the answers took (a VU waits for its next due
// action within an iteration, up to a budget, so few iterations are needed). How late
// each action ran against its due time (`line_lateness`) says whether the generator
// kept up; when it grows, the crowd is being served slower than it arrives.
//
// Shed answers (429/503) and no answers are sent again after Retry-After (at least)
// plus a growing jittered backoff; a request with no answer counts in `no_answer`, not
// as an unexpected answer.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

import { SALE_ID } from './common.js';
import { proofFor } from './proof.js';
import {
  admittedErrors, holdsPlaced, json, newKey, noAnswer, ordersPlaced, problemCode, shedResponses,
  shoppersAdmitted, shoppersArrived, shoppersSoldOut, ticketsJoined, unexpectedResponses,
} from './shopper.js';

/** Answers the line served (join 200/201, poll 200), by step. */
const lineServed = new Counter('line_served');
/** How late an action of the schedule ran, against when it was due (ms). */
const lineLateness = new Trend('line_lateness', true);
/** Slices of shoppers claimed by the line's VUs: LINE_VUS when every shopper has an owner. */
const lineSlices = new Counter('line_slices');
/** Joins sent again after a shed answer or no answer. */
const joinsRetried = new Counter('joins_retried');
/** Shoppers who left without an answer to act on: `closed`, `expired`, an error, MAX_TRIES shed tries. */
const shoppersLeft = new Counter('shoppers_left');
/** Shoppers still in line, trying to join or buying when the run's deadline came. */
const shoppersWaitingAtEnd = new Counter('shoppers_waiting_at_end');
/** Shoppers whose arrival came after the run's deadline (the generator fell behind). */
const joinsNotSent = new Counter('joins_not_sent');
const holdsAbandoned = new Counter('holds_abandoned');
const confirmationsSent = new Counter('confirmations_sent');
const timeToAdmission = new Trend('time_to_admission', true);

/** How often each VU writes its served/shed counts per step (`crowd-rate` lines). */
const BUCKET_MS = 5000;
/** The most times a shopper sends a step again after it was shed or not answered. */
const MAX_TRIES = 20;

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

/** The `name` tag of each step, so ids in paths make no new series. */
const NAMES = {
  challenge: 'POST /v1/sales/{id}/challenge',
  join: 'POST /v1/sales/{id}/queue',
  poll: 'GET /v1/sales/{id}/queue/me',
  reserve: 'POST /v1/sales/{id}/reservations',
  checkout: 'POST /v1/reservations/{id}/checkout',
  confirmation: 'GET /v1/orders/{id}',
};
const ADMITTED_STEPS = new Set(['reserve', 'checkout', 'confirmation']);

/**
 * The line of one VU: its slices of the crowd and their next actions. `plan`:
 * { baseUrl, tokens (SharedArray of shopper tokens), vus (slices), arrival (index → ms
 * after the first arrival), perNetwork, thinkMs, abandonShare, clientIpHeader,
 * confirmTimeoutMs, inFlight (most requests one VU has in flight) }.
 */
export class Owner {
  constructor(plan) {
    this.plan = plan;
    this.schedule = new Schedule();
    this.bucket = null;
  }

  /** Takes slice `slice` (shoppers slice, slice + vus, …), their joins due at arrival. */
  claim(slice, t0) {
    lineSlices.add(1);
    for (let i = slice; i < this.plan.tokens.length; i += this.plan.vus) {
      this.schedule.push({ due: t0 + this.plan.arrival(i), i, kind: 'join', tries: 0 });
    }
  }

  /**
   * Runs this VU's actions as they fall due, for at most `budgetMs`, each as its own
   * asynchronous request (up to `plan.inFlight` at once), so one shopper's slow answer
   * never holds back another's action: a VU is a small event loop that the scenario's
   * iterations only wake. None starts after `deadline`: shoppers still in line then are
   * counted as waiting at the end.
   */
  async runDue(deadline, budgetMs) {
    if (Date.now() >= deadline) {
      while (this.schedule.size) {
        const left = this.schedule.pop();
        (left.kind === 'join' && left.tries === 0 ? joinsNotSent : shoppersWaitingAtEnd).add(1);
      }
      this.flushBucket(true);
      return;
    }
    const until = Math.min(Date.now() + budgetMs, deadline);
    // One wake-up for the loop, called by a timer or by any action that finishes: O(1)
    // a turn, where racing every action in flight would cost O(in flight).
    let running = 0;
    let wake = null;
    const finished = () => {
      running -= 1;
      if (wake) wake();
    };
    for (;;) {
      const now = Date.now();
      if (now >= until) break;
      const next = this.schedule.peek();
      if (next && next.due <= now && running < this.plan.inFlight) {
        this.schedule.pop();
        lineLateness.add(now - next.due, { kind: next.kind });
        running += 1;
        this.act(next).catch((e) => {
          unexpectedResponses.add(true, { step: next.kind });
          console.error(`crowd: ${next.kind} failed: ${e}`);
        }).then(finished);
        continue;
      }
      if (running === 0 && (!next || next.due >= until)) break;
      // Wait for the next action's time, or for an action to finish (it may schedule one).
      const ms = next && running < this.plan.inFlight ? Math.min(next.due, until) - now : until - now;
      let timer;
      await new Promise((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, Math.max(ms, 0));
      });
      clearTimeout(timer);
      wake = null;
      this.flushBucket(false);
    }
    while (running > 0) {
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
    wake = null;
    this.flushBucket(false);
  }

  act(s) {
    switch (s.kind) {
      case 'join':
        return this.join(s);
      case 'poll':
        return this.poll(s);
      case 'reserve':
        return this.reserve(s);
      case 'checkout':
        return this.checkout(s);
      default:
        return this.confirmation(s);
    }
  }

  later(s, kind, ms) {
    s.kind = kind;
    s.due = Date.now() + Math.max(ms, 0);
    this.schedule.push(s);
  }

  /**
   * One request of shopper `s` at `step`, from the shopper's own address: `{ res,
   * again }`, `again` the ms to wait before sending it again (a 429/503 — then at
   * least Retry-After — or no answer), or null when the answer is final. Counted as
   * served (join and poll), shed, no answer, or unexpected (`ok` false).
   */
  async send(s, step, method, path, body, headers, ok) {
    // Every shopper from an address of its own: neither the per-address caps nor the
    // door's rise per address and per /24 see a crowd, only shoppers.
    const h = { Authorization: `Bearer ${this.plan.tokens[s.i]}`, ...headers };
    if (this.plan.clientIpHeader) h[this.plan.clientIpHeader] = crowdAddress(s.i, this.plan.perNetwork);
    const res = await http.asyncRequest(method, `${this.plan.baseUrl}${path}`, body, {
      headers: h,
      tags: { step, name: NAMES[step] },
      timeout: '15s',
    });
    if (res.status === 429 || res.status === 503) {
      shedResponses.add(1, { step, status: String(res.status) });
      this.count(step, 'shed');
      return { res, again: parseFloat(res.headers['Retry-After'] || '1') * 1000 };
    }
    if (res.status === 0) {
      // No answer (the connection closed or timed out): sent again, as a browser does.
      noAnswer.add(1, { step });
      this.count(step, 'no_answer');
      return { res, again: 1000 };
    }
    const good = ok(res);
    unexpectedResponses.add(!good, { step });
    if (ADMITTED_STEPS.has(step)) admittedErrors.add(!good, { step });
    if (good && (step === 'join' || step === 'poll')) {
      lineServed.add(1, { step });
      this.count(step, 'served');
    }
    return { res, again: null };
  }

  /** Sends `s`'s `kind` again after `after` ms plus a growing, jittered backoff. */
  retry(s, kind, after) {
    s.tries += 1;
    if (s.tries >= MAX_TRIES) {
      shoppersLeft.add(1);
      return;
    }
    if (kind === 'join') joinsRetried.add(1);
    const backoff = Math.min(2 ** Math.min(s.tries, 4), 16) * 1000 * Math.random();
    this.later(s, kind, Math.max(after, 200) + backoff);
  }

  /** The door and the join: a fresh challenge, solved, then the join itself. */
  async join(s) {
    if (s.tries === 0 && !s.arrived) {
      shoppersArrived.add(1);
      s.arrived = Date.now();
    }
    const base = `/v1/sales/${SALE_ID}`;
    let got = await this.send(s, 'challenge', 'POST', `${base}/challenge`, null, {}, (r) => r.status === 201);
    if (got.again !== null) return this.retry(s, 'join', got.again);
    const issued = got.res.status === 201 ? json(got.res) : null;
    if (!issued) return shoppersLeft.add(1);
    const headers = { 'X-Join-Proof': proofFor(issued) };
    if (s.placeToken) headers['X-Place-Token'] = s.placeToken;
    got = await this.send(s, 'join', 'POST', `${base}/queue`, null, headers,
      (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sale_closed'));
    if (got.again !== null) return this.retry(s, 'join', got.again);
    if (got.res.status === 201) ticketsJoined.add(1);
    s.tries = 0;
    return this.ticket(s, got.res);
  }

  async poll(s) {
    const headers = s.placeToken ? { 'X-Place-Token': s.placeToken } : {};
    const got = await this.send(s, 'poll', 'GET', `/v1/sales/${SALE_ID}/queue/me`, null, headers, (r) => r.status === 200);
    // A shed poll is asked again after Retry-After: the shopper keeps its place.
    if (got.again !== null) return this.later(s, 'poll', got.again);
    return this.ticket(s, got.res);
  }

  /** What a join or poll answer says next: poll again, buy, or leave. */
  ticket(s, res) {
    const ticket = res.status === 200 || res.status === 201 ? json(res) : null;
    if (!ticket) {
      shoppersLeft.add(1);
      return undefined;
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
        s.tries = 0;
        return this.later(s, 'reserve', 0);
      case 'sold_out':
        shoppersSoldOut.add(1);
        return undefined;
      default:
        shoppersLeft.add(1);
        return undefined;
    }
  }

  /** Holds one unit with the admission (the same Idempotency-Key on every try). */
  async reserve(s) {
    const got = await this.send(s, 'reserve', 'POST', `/v1/sales/${SALE_ID}/reservations`, JSON.stringify({ quantity: 1 }),
      { 'Content-Type': 'application/json', 'X-Admission-Token': s.admission, 'Idempotency-Key': s.key },
      (r) => r.status === 201 || r.status === 200 || (r.status === 409 && problemCode(r) === 'sold_out'));
    if (got.again !== null) return this.retry(s, 'reserve', got.again);
    const res = got.res;
    if (res.status === 409) {
      if (problemCode(res) === 'sold_out') shoppersSoldOut.add(1);
      return undefined;
    }
    const hold = res.status === 201 || res.status === 200 ? json(res) : null;
    if (!hold) return undefined;
    holdsPlaced.add(1);
    if (Math.random() < this.plan.abandonShare) {
      holdsAbandoned.add(1);
      return undefined;
    }
    s.reservation = hold.reservation_id;
    s.key = newKey();
    s.tries = 0;
    // Think, then pay.
    return this.later(s, 'checkout', this.plan.thinkMs * (0.5 + Math.random()));
  }

  async checkout(s) {
    const got = await this.send(s, 'checkout', 'POST', `/v1/reservations/${s.reservation}/checkout`,
      JSON.stringify({ payment_token: 'tok_ok' }),
      { 'Content-Type': 'application/json', 'Idempotency-Key': s.key }, (r) => r.status === 201);
    if (got.again !== null) return this.retry(s, 'checkout', got.again);
    const order = got.res.status === 201 ? json(got.res) : null;
    if (!order) return undefined;
    ordersPlaced.add(1);
    s.order = order.order_id;
    s.placed = Date.now();
    return this.later(s, 'confirmation', 500);
  }

  /** Reads the order until its confirmation is sent (CONFIRM_TIMEOUT_MS at most). */
  async confirmation(s) {
    const got = await this.send(s, 'confirmation', 'GET', `/v1/orders/${s.order}`, null, {}, (r) => r.status === 200);
    const seen = got.again === null && got.res.status === 200 ? json(got.res) : null;
    if (seen && seen.confirmation && seen.confirmation.status === 'sent') {
      confirmationsSent.add(1);
      return undefined;
    }
    if (got.again === null && !seen) return undefined;
    if (Date.now() - s.placed < this.plan.confirmTimeoutMs) return this.later(s, 'confirmation', got.again || 500);
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
