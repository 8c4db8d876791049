// Chaos rehearsal: the shoppers of a launch against several API processes (BASE_URL a
// comma-separated list) while loadtests/lib/chaos.py kills processes and restarts the
// stores under them. Arrivals do not stop after the spike: a steady stream keeps the
// buy path busy through every fault window.
//
//   k6 run -e CHAOS=1 -e BASE_URL=http://127.0.0.1:18380,http://127.0.0.1:18381 \
//          -e SALE_ID=<uuid> -e MERCHANT_TOKEN=<jwt> -e SHOPPERS=2000 -e DURATION=200s \
//          loadtests/k6/chaos.js
//
// Env: everything lib/shopper.js reads (CHAOS=1 for its lost-state handling and the
// per-request log the runner reads; loadtests/run chaos sets it), SHOPPERS
// (2000), DURATION (total bound, 200s), PREQUEUE_SECS (10), PREQUEUE_SHARE (0.1),
// SPIKE_SECS (5), SPIKE_SHARE (0.2), TAIL_SECS (seconds at the end without new
// arrivals, so the last shoppers can finish: 30), CHAOS_MAX_ERROR_RATE (0.02: the
// share of answers to admitted shoppers that may be errors even after failover and
// retries; a fault costs some, the run shows how many).
import { envFloat, envInt, envSeconds, startSaleIn, summaryOutputs, SUMMARY_TREND_STATS } from './lib/common.js';
import { STEPS, latencyLimits, shopperJourney, shopperThresholds } from './lib/shopper.js';
import { DEFAULT_LATENCY } from './launch.js';

export const SHOPPERS = envInt('SHOPPERS', 2000);
export const DURATION_SECS = envSeconds('DURATION', 200);
export const PREQUEUE_SECS = envInt('PREQUEUE_SECS', 10);

/**
 * Arrivals as a `ramping-arrival-rate` scenario: PREQUEUE_SHARE before the start,
 * SPIKE_SHARE in the first SPIKE_SECS after it, the rest at a steady rate until TAIL_SECS
 * before the end. All VUs are allocated up front (a shopper is a VU for its journey).
 */
function chaosArrivals() {
  const spikeSecs = envInt('SPIKE_SECS', 5);
  const tailSecs = envInt('TAIL_SECS', 30);
  const steadySecs = Math.max(DURATION_SECS - PREQUEUE_SECS - spikeSecs - tailSecs, 5);
  const preShare = envFloat('PREQUEUE_SHARE', 0.1);
  const spikeShare = envFloat('SPIKE_SHARE', 0.2);
  const rate = (share, secs) => Math.max(1, Math.round((SHOPPERS * share) / secs));
  const r1 = rate(preShare, PREQUEUE_SECS);
  const r2 = rate(spikeShare, spikeSecs);
  const r3 = rate(Math.max(0, 1 - preShare - spikeShare), steadySecs);
  return {
    executor: 'ramping-arrival-rate',
    exec: 'shopper',
    startRate: r1,
    timeUnit: '1s',
    preAllocatedVUs: SHOPPERS,
    maxVUs: SHOPPERS,
    stages: [
      { duration: `${PREQUEUE_SECS}s`, target: r1 },
      { duration: '1s', target: r2 },
      { duration: `${Math.max(spikeSecs - 1, 1)}s`, target: r2 },
      { duration: '1s', target: r3 },
      { duration: `${Math.max(steadySecs - 1, 1)}s`, target: r3 },
    ],
    gracefulStop: `${tailSecs}s`,
    tags: { scenario_kind: 'shoppers' },
  };
}

// Latency is not judged under chaos; the error rates are, loosely (see the header).
const maxErrors = envFloat('CHAOS_MAX_ERROR_RATE', 0.02);
const thresholds = shopperThresholds(false, latencyLimits(DEFAULT_LATENCY));
thresholds.admitted_errors = [`rate<${maxErrors}`];
thresholds.unexpected_responses = [`rate<${maxErrors}`];
for (const step of STEPS) thresholds[`failovers{step:${step}}`] = ['count>=0'];

export const options = {
  scenarios: { shoppers: chaosArrivals() },
  thresholds,
  summaryTrendStats: SUMMARY_TREND_STATS,
  noConnectionReuse: false,
  setupTimeout: '60s',
};

/** Starts the sale PREQUEUE_SECS from now, so the first arrivals pre-queue. */
export function setup() {
  const startedAt = Date.now();
  const startsAt = __ENV.MERCHANT_TOKEN ? startSaleIn(__ENV.MERCHANT_TOKEN, PREQUEUE_SECS) : null;
  console.log(`chaos-setup ${startedAt} ${startsAt}`);
  return { deadline: startedAt + (DURATION_SECS - 5) * 1000, startsAt };
}

export function shopper(data) {
  shopperJourney(data.deadline);
}

export function handleSummary(data) {
  return summaryOutputs(data, STEPS);
}
