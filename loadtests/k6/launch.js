// Launch rehearsal: SHOPPERS shoppers arrive as a spike at a sale's start, a share of
// them before it (they pre-queue and are shuffled at the start); each goes through the
// whole flow of lib/shopper.js.
//
//   k6 run -e BASE_URL=http://127.0.0.1:18280 -e SALE_ID=<uuid> -e MERCHANT_TOKEN=<jwt> \
//          -e SHOPPERS=2000 -e DURATION=180s loadtests/k6/launch.js
//
// Env: SHOPPERS (1000), DURATION (total bound, 180s), PREQUEUE_SECS (10: setup moves
// the sale's start this far ahead, so the first arrivals pre-queue), PREQUEUE_SHARE
// (0.1), SPIKE_SECS (5), SPIKE_SHARE (0.7), TAIL_SECS (20), THINK_MS (500),
// ABANDON_SHARE (0.05), DECLINE_SHARE (0.05), CANCEL_SHARE (0: buyers who cancel),
// CANCEL_THINK_MS (1000), STRICT_LATENCY (1: latency thresholds on),
// LAT_<STEP>=p95,p99 (ms). Without MERCHANT_TOKEN the sale must already be
// scheduled to start PREQUEUE_SECS after k6 starts its scenarios.
import { envFloat, envInt, envSeconds, launchScenario, startSaleIn, summaryOutputs, SUMMARY_TREND_STATS } from './lib/common.js';
import { STEPS, latencyLimits, shopperJourney, shopperThresholds } from './lib/shopper.js';

export const SHOPPERS = envInt('SHOPPERS', 1000);
export const DURATION_SECS = envSeconds('DURATION', 180);
export const PREQUEUE_SECS = envInt('PREQUEUE_SECS', 10);

/**
 * p95, p99 limits in ms on a 2-core machine shared with the load generator. The steps
 * of admitted shoppers are held to the buy path's targets; the line may be slower.
 */
export const DEFAULT_LATENCY = {
  session: [2000, 5000],
  challenge: [500, 1000],
  join: [2000, 5000],
  poll: [2000, 5000],
  reserve: [500, 1500],
  checkout: [1000, 2500],
  confirmation: [500, 1500],
};

export const options = {
  scenarios: {
    shoppers: launchScenario({
      shoppers: SHOPPERS,
      prequeueSecs: PREQUEUE_SECS,
      spikeSecs: envInt('SPIKE_SECS', 5),
      tailSecs: envInt('TAIL_SECS', 20),
      prequeueShare: envFloat('PREQUEUE_SHARE', 0.1),
      spikeShare: envFloat('SPIKE_SHARE', 0.7),
      durationSecs: DURATION_SECS,
      exec: 'shopper',
    }),
  },
  thresholds: shopperThresholds(envInt('STRICT_LATENCY', 1) === 1, latencyLimits(DEFAULT_LATENCY)),
  summaryTrendStats: SUMMARY_TREND_STATS,
  // Loopback only; a shopper's requests reuse its connection like a browser tab.
  noConnectionReuse: false,
  setupTimeout: '60s',
};

/** Starts the sale PREQUEUE_SECS from now, so the first arrivals pre-queue. */
export function setup() {
  const startedAt = Date.now();
  const startsAt = __ENV.MERCHANT_TOKEN ? startSaleIn(__ENV.MERCHANT_TOKEN, PREQUEUE_SECS) : null;
  return { deadline: startedAt + (DURATION_SECS - 5) * 1000, startsAt };
}

export function shopper(data) {
  shopperJourney(data.deadline);
}

export function handleSummary(data) {
  return summaryOutputs(data, STEPS);
}
