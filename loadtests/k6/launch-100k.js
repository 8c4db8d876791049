// A 100,000-shopper launch on one box (`loadtests/run launch-100k`, issue #19 point 3):
// SHOPPERS shoppers in the line of one sale, most arriving in the first SPIKE_SECS
// after its start, without a VU per shopper (lib/crowd.js).
//
// - The shoppers' guest sessions are minted before k6 starts (`flashsale token
//   admission <sale> --count N`, first column: a shopper token signed as POST
//   /v1/sessions signs it; the admission column is thrown away) and read once into a
//   SharedArray from TOKENS_FILE.
// - One open-model scenario, `line`: a `constant-arrival-rate` of LINE_TICKS
//   iterations a second over LINE_VUS VUs. The first LINE_VUS iterations each claim a
//   slice of the crowd for their VU; every iteration then runs what falls due in its
//   VU's slices over the next LOOP_MS (10 s), each action an asynchronous request sent
//   at its time (up to VU_IN_FLIGHT at once per VU), so no shopper waits for another's
//   answer: joins at the shoppers' arrival times (door challenge solved, then join),
//   polls at the `poll_after_ms` each ticket names (or Retry-After when shed), and for
//   the admitted reserve → think → pay → read the order. A join that is shed is sent
//   again after Retry-After with a growing jittered backoff.
// - Every request carries the shopper's own synthetic address in CLIENT_IP_HEADER
//   (10.a.b.c, CROWD_PER_NETWORK per /24), so the door's per-address and per-/24
//   rise never throttles the crowd, as the bot rehearsal's crowd (k6/bots.js).
//
//   k6 run -e BASE_URL=http://127.0.0.1:18280 -e SALE_ID=<uuid> -e MERCHANT_TOKEN=<jwt> \
//          -e TOKENS_FILE=/abs/shoppers.txt -e CLIENT_IP_HEADER=x-forwarded-for \
//          loadtests/k6/launch-100k.js
//
// Env: SHOPPERS (at most the lines of TOKENS_FILE), DURATION (300s), PREQUEUE_SECS (10),
// PREQUEUE_SHARE (0.2), SPIKE_SECS (10), SPIKE_SHARE (0.7), TAIL_SECS (20),
// LINE_VUS (300), VU_IN_FLIGHT (32), LINE_TICKS (LINE_VUS / 2), CROWD_PER_NETWORK (4), THINK_MS (500),
// ABANDON_SHARE (0.05), CONFIRM_TIMEOUT_MS (30000), STRICT_LATENCY (0).
import { SharedArray } from 'k6/data';

import { BASE_URL, envFloat, envInt, envSeconds, startSaleIn, summaryOutputs, SUMMARY_TREND_STATS } from './lib/common.js';
import { Owner, arrivalSchedule, sliceOf } from './lib/crowd.js';
import { STEPS, latencyLimits, shopperThresholds } from './lib/shopper.js';

const tokens = new SharedArray('crowd', () => {
  const path = __ENV.TOKENS_FILE;
  if (!path) throw new Error('TOKENS_FILE is required (loadtests/run launch-100k mints it)');
  const all = open(path).split('\n').filter((line) => line.trim() !== '').map((line) => line.trim().split(' ')[0]);
  const want = envInt('SHOPPERS', all.length);
  return all.slice(0, Math.min(want, all.length));
});

const DURATION_SECS = envSeconds('DURATION', 300);
const PREQUEUE_SECS = envInt('PREQUEUE_SECS', 10);
const SPIKE_SECS = envInt('SPIKE_SECS', 10);
const TAIL_SECS = envInt('TAIL_SECS', 20);
const PREQUEUE_SHARE = envFloat('PREQUEUE_SHARE', 0.2);
const SPIKE_SHARE = envFloat('SPIKE_SHARE', 0.7);
const LINE_VUS = Math.max(1, envInt('LINE_VUS', 300));
/** The most requests one VU has in flight: its shoppers act side by side. */
const VU_IN_FLIGHT = Math.max(1, envInt('VU_IN_FLIGHT', 32));
/** Iterations a second: each VU is woken about every 2 s when its loop has returned. */
const LINE_TICKS = Math.max(1, envInt('LINE_TICKS', Math.ceil(LINE_VUS / 2)));
/**
 * How long one iteration may run its VU's due actions: it waits for those due within
 * it, so a VU returns only when its next action is further off than the next wake-up.
 */
const LOOP_MS = 10000;
/** The first arrival comes this long after setup, once every VU has claimed its slices. */
const LEAD_MS = Math.max(2000, Math.ceil((LINE_VUS / LINE_TICKS) * 1000) + 1000);

/** p95, p99 limits in ms, checked only with STRICT_LATENCY=1 (the box is shared). */
const LATENCY = {
  session: [1000, 2000],
  challenge: [3000, 6000],
  join: [3000, 6000],
  poll: [3000, 6000],
  reserve: [1000, 2500],
  checkout: [2000, 4000],
  confirmation: [1000, 2500],
};

const plan = {
  baseUrl: BASE_URL,
  tokens,
  vus: LINE_VUS,
  arrival: arrivalSchedule({
    shoppers: tokens.length,
    prequeueSecs: PREQUEUE_SECS,
    spikeSecs: SPIKE_SECS,
    tailSecs: TAIL_SECS,
    prequeueShare: PREQUEUE_SHARE,
    spikeShare: SPIKE_SHARE,
  }),
  perNetwork: Math.max(1, envInt('CROWD_PER_NETWORK', 4)),
  thinkMs: envInt('THINK_MS', 500),
  abandonShare: envFloat('ABANDON_SHARE', 0.05),
  clientIpHeader: (__ENV.CLIENT_IP_HEADER || '').trim(),
  confirmTimeoutMs: envInt('CONFIRM_TIMEOUT_MS', 30000),
  inFlight: VU_IN_FLIGHT,
};

export const options = {
  scenarios: {
    line: {
      executor: 'constant-arrival-rate',
      exec: 'line',
      rate: LINE_TICKS,
      timeUnit: '1s',
      duration: `${DURATION_SECS - 5}s`,
      preAllocatedVUs: LINE_VUS,
      maxVUs: LINE_VUS,
      gracefulStop: `${LOOP_MS / 1000 + 5}s`,
      tags: { scenario_kind: 'crowd' },
    },
  },
  thresholds: {
    ...shopperThresholds(envInt('STRICT_LATENCY', 0) === 1, latencyLimits(LATENCY)),
    'line_served{step:join}': ['count>=0'],
    'line_served{step:poll}': ['count>=0'],
    'line_lateness{kind:join}': ['max>=0'],
    'line_lateness{kind:poll}': ['max>=0'],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  // The few tags the report reads: every sample of a million requests pays for each.
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response', 'error_code'],
  noConnectionReuse: false,
  // k6 keeps `batchPerHost` idle connections per VU (default 6): with VU_IN_FLIGHT
  // requests at once, fewer would close and reopen connections on every answer.
  batch: VU_IN_FLIGHT,
  batchPerHost: VU_IN_FLIGHT,
  setupTimeout: '60s',
};

/** The first arrival LEAD_MS from now; the sale starts PREQUEUE_SECS after it. */
export function setup() {
  const t0 = Date.now() + LEAD_MS;
  const startsAt = __ENV.MERCHANT_TOKEN ? startSaleIn(__ENV.MERCHANT_TOKEN, Math.round(LEAD_MS / 1000) + PREQUEUE_SECS) : null;
  return { t0, startsAt, deadline: Date.now() + (DURATION_SECS - 15) * 1000 };
}

/** This VU's line: created on its first iteration. */
let owner = null;

export async function line(data) {
  if (owner === null) owner = new Owner(plan);
  const slice = sliceOf(LINE_VUS);
  if (slice >= 0) owner.claim(slice, data.t0);
  await owner.runDue(data.deadline, LOOP_MS);
}

export function handleSummary(data) {
  const dir = __ENV.REPORT_DIR || '.';
  const setupData = data.setup_data || {};
  const crowdPlan = {
    shoppers: tokens.length,
    line_vus: LINE_VUS,
    line_ticks: LINE_TICKS,
    vu_in_flight: VU_IN_FLIGHT,
    prequeue_s: PREQUEUE_SECS,
    spike_s: SPIKE_SECS,
    tail_s: TAIL_SECS,
    prequeue_share: PREQUEUE_SHARE,
    spike_share: SPIKE_SHARE,
    per_network: plan.perNetwork,
    duration_s: DURATION_SECS,
    first_arrival_ms: setupData.t0,
    starts_at: setupData.startsAt,
  };
  return { ...summaryOutputs(data, STEPS), [`${dir}/crowd-plan.json`]: JSON.stringify(crowdPlan, null, 1) };
}
