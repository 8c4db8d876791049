// The launch of launch.js, plus an operator who slows the payment provider down for a
// window in the middle of the sale and then restores it: checkout latency rises, the
// admission controller should admit fewer shoppers, and nothing may be lost.
//
// Env: everything of launch.js, plus OPERATOR_TOKEN, SLOW_AT (seconds after the
// scenarios start, default PREQUEUE_SECS + 10), SLOW_FOR (30), SLOW_P50_MS (250),
// SLOW_P99_MS (1200).
import http from 'k6/http';
import { check, sleep } from 'k6';

import { BASE_URL, envInt } from './lib/common.js';
import { PREQUEUE_SECS, options as launchOptions } from './launch.js';

export { setup, shopper, handleSummary } from './launch.js';

const SLOW_AT = envInt('SLOW_AT', PREQUEUE_SECS + 10);
const SLOW_FOR = envInt('SLOW_FOR', 30);

export const options = {
  ...launchOptions,
  scenarios: {
    ...launchOptions.scenarios,
    payment_slowdown: {
      executor: 'per-vu-iterations',
      exec: 'slowdown',
      vus: 1,
      iterations: 1,
      startTime: `${SLOW_AT}s`,
      maxDuration: `${SLOW_FOR + 30}s`,
    },
  },
  thresholds: {
    ...launchOptions.thresholds,
    'http_req_duration{step:ops}': ['max>=0'],
  },
};

function simulator(method, body) {
  return http.request(method, `${BASE_URL}/v1/ops/payment-simulator`, body ? JSON.stringify(body) : null, {
    headers: { Authorization: `Bearer ${__ENV.OPERATOR_TOKEN}`, 'Content-Type': 'application/json' },
    tags: { step: 'ops', name: '/v1/ops/payment-simulator' },
  });
}

export function slowdown() {
  const before = simulator('GET');
  check(before, { 'ops: simulator settings read': (r) => r.status === 200 });
  const normal = before.status === 200 ? before.json() : { latency_ms: { p50: 5, p99: 20 }, failure_rate: 0 };
  const slow = {
    latency_ms: { p50: envInt('SLOW_P50_MS', 250), p99: envInt('SLOW_P99_MS', 1200) },
    failure_rate: normal.failure_rate,
  };
  console.log(`payment simulator slowed to ${JSON.stringify(slow.latency_ms)} for ${SLOW_FOR}s`);
  check(simulator('PUT', slow), { 'ops: simulator slowed': (r) => r.status === 200 });
  sleep(SLOW_FOR);
  check(simulator('PUT', { latency_ms: normal.latency_ms, failure_rate: normal.failure_rate }), {
    'ops: simulator restored': (r) => r.status === 200,
  });
  console.log(`payment simulator restored to ${JSON.stringify(normal.latency_ms)}`);
}
