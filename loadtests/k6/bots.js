// Bot-farm rehearsal (`loadtests/run bots`): an honest crowd and a scalper's farm buy
// from one sale through its real door, and the report (lib/bots.py) compares each
// group's share of tickets, admissions and units with its share of addresses.
//
// - The crowd: SHOPPERS shoppers, one session each, each from an address of its own
//   (synthetic, in CLIENT_IP_HEADER: 10.x.y.z, CROWD_PER_NETWORK of them per /24, as
//   neighbours on one street), arriving as a launch does (lib/common.js
//   launchScenario: PREQUEUE_SHARE before the start, most in the spike after it).
// - The farm: FARM_ADDRESSES addresses (198.18.k.7, each in a /24 of its own, so only
//   the per-address counts ever rise) with FARM_SESSIONS_PER_ADDRESS sessions each,
//   all started FARM_AT seconds into the pre-queue as fast as k6 can: every bot
//   solves its challenge at the difficulty the server sets for its address, polls every
//   FARM_POLL_MS, and buys at once when admitted (lib/farm.js).
//
// Every request carries its group's address in CLIENT_IP_HEADER over the one loopback
// connection; the server (FLASHSALE_CLIENT_IP_HEADER) counts its caps and the door's
// difficulty per that address. Every figure is split by k6's `scenario` tag: the
// scenarios are named after the groups (k6 reserves the tag `group` for its own).
//
//   k6 run -e BASE_URL=http://127.0.0.1:18280 -e SALE_ID=<uuid> -e MERCHANT_TOKEN=<jwt> \
//          -e CLIENT_IP_HEADER=x-forwarded-for loadtests/k6/bots.js
//
// Env: SHOPPERS (1000), DURATION (120s), PREQUEUE_SECS (20), PREQUEUE_SHARE (0.5),
// SPIKE_SECS (5), SPIKE_SHARE (0.4), TAIL_SECS (10), CROWD_PER_NETWORK (4),
// FARM_ADDRESSES (5), FARM_SESSIONS_PER_ADDRESS (20), FARM_AT (2), FARM_POLL_MS (250),
// STRICT_LATENCY (0), and lib/shopper.js's THINK_MS, ABANDON_SHARE, DECLINE_SHARE.
import exec from 'k6/execution';

import { envFloat, envInt, envSeconds, launchScenario, startSaleIn, summaryOutputs, SUMMARY_TREND_STATS } from './lib/common.js';
import { botJourney } from './lib/farm.js';
import { STEPS, actFrom, latencyLimits, shopperJourney, shopperThresholds } from './lib/shopper.js';

const SHOPPERS = envInt('SHOPPERS', 1000);
const DURATION_SECS = envSeconds('DURATION', 120);
const PREQUEUE_SECS = envInt('PREQUEUE_SECS', 20);
const CROWD_PER_NETWORK = Math.max(1, envInt('CROWD_PER_NETWORK', 4));
const FARM_ADDRESSES = Math.max(1, Math.min(256, envInt('FARM_ADDRESSES', 5)));
const FARM_SESSIONS_PER_ADDRESS = Math.max(1, envInt('FARM_SESSIONS_PER_ADDRESS', 20));
const FARM_AT = envInt('FARM_AT', 2);
const FARM_POLL_MS = Math.max(50, envInt('FARM_POLL_MS', 250));

/**
 * p95, p99 limits in ms, checked only with STRICT_LATENCY=1: the rehearsal measures
 * shares, and a farm hashing at full speed shares the cores with the server.
 */
const LATENCY = {
  session: [3000, 6000],
  challenge: [1000, 2000],
  join: [3000, 6000],
  poll: [3000, 6000],
  reserve: [1000, 2500],
  checkout: [2000, 4000],
  confirmation: [1000, 2500],
};

/** The groups of the rehearsal: the scenarios' names, so `{scenario:…}` splits by group. */
const GROUPS = ['crowd', 'farm'];
/** The counters and trends the report splits by group. */
const GROUP_COUNTERS = ['shoppers_arrived', 'sessions_created', 'tickets_joined', 'prequeue_tickets',
  'shoppers_admitted', 'holds_placed', 'orders_placed', 'prequeue_orders', 'shoppers_sold_out', 'shed_responses'];
const GROUP_TRENDS = ['proof_bits', 'proof_solve_time'];

function groupThresholds() {
  // Declared so the summary carries each group's figures (k6 keeps tagged sub-metrics
  // only for thresholds); none of them can fail.
  const t = {};
  for (const group of GROUPS) {
    for (const name of GROUP_COUNTERS) t[`${name}{scenario:${group}}`] = ['count>=0'];
    for (const name of GROUP_TRENDS) t[`${name}{scenario:${group}}`] = ['max>=0'];
  }
  return t;
}

const crowd = launchScenario({
  shoppers: SHOPPERS,
  prequeueSecs: PREQUEUE_SECS,
  spikeSecs: envInt('SPIKE_SECS', 5),
  tailSecs: envInt('TAIL_SECS', 10),
  prequeueShare: envFloat('PREQUEUE_SHARE', 0.5),
  spikeShare: envFloat('SPIKE_SHARE', 0.4),
  durationSecs: DURATION_SECS,
  exec: 'honest',
});

export const options = {
  scenarios: {
    crowd,
    farm: {
      executor: 'per-vu-iterations',
      exec: 'bot',
      vus: FARM_ADDRESSES * FARM_SESSIONS_PER_ADDRESS,
      iterations: 1,
      startTime: `${FARM_AT}s`,
      maxDuration: `${Math.max(DURATION_SECS - FARM_AT, 10)}s`,
      gracefulStop: '10s',
      tags: { scenario_kind: 'bots' },
    },
  },
  thresholds: {
    ...shopperThresholds(envInt('STRICT_LATENCY', 0) === 1, latencyLimits(LATENCY)),
    ...groupThresholds(),
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  noConnectionReuse: false,
  setupTimeout: '60s',
};

/** Starts the sale PREQUEUE_SECS from now: the farm and the first of the crowd pre-queue. */
export function setup() {
  const startedAt = Date.now();
  const startsAt = __ENV.MERCHANT_TOKEN ? startSaleIn(__ENV.MERCHANT_TOKEN, PREQUEUE_SECS) : null;
  return { deadline: startedAt + (DURATION_SECS - 5) * 1000, startsAt };
}

/** The crowd's `i`-th address: CROWD_PER_NETWORK neighbours in each 10.a.b.0/24. */
function crowdAddress(i) {
  const net = Math.floor(i / CROWD_PER_NETWORK);
  return `10.${(net >> 8) & 255}.${net & 255}.${10 + (i % CROWD_PER_NETWORK)}`;
}

/** The farm's `k`-th address, each in a /24 of its own (the benchmarking range). */
function farmAddress(k) {
  return `198.18.${k}.7`;
}

/** One honest shopper, from an address nobody else uses. */
export function honest(data) {
  actFrom(crowdAddress(exec.scenario.iterationInTest));
  shopperJourney(data.deadline);
}

/** One bot of the farm: bot i is the (i / FARM_ADDRESSES)-th session of its address. */
export function bot(data) {
  actFrom(farmAddress(exec.scenario.iterationInTest % FARM_ADDRESSES));
  botJourney(data.deadline, FARM_POLL_MS);
}

export function handleSummary(data) {
  const dir = __ENV.REPORT_DIR || '.';
  const plan = {
    crowd: { sessions_per_address: 1, per_network: CROWD_PER_NETWORK, shoppers: SHOPPERS },
    farm: {
      addresses: FARM_ADDRESSES,
      sessions_per_address: FARM_SESSIONS_PER_ADDRESS,
      poll_ms: FARM_POLL_MS,
      starts_at_s: FARM_AT,
    },
    prequeue_s: PREQUEUE_SECS,
    duration_s: DURATION_SECS,
  };
  return { ...summaryOutputs(data, STEPS), [`${dir}/bots-plan.json`]: JSON.stringify(plan, null, 1) };
}
