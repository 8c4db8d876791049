// Settings every rehearsal script shares, the loopback guard, and handleSummary.
//
// Env: BASE_URL (loopback only; a comma-separated list when several API processes
// serve the same system, e.g. the chaos rehearsal), SALE_ID, REPORT_DIR (where the
// summary JSON goes).
import http from 'k6/http';

/**
 * Every API process of the system under test, in the order given: loopback only, never
 * anything else. Shopper journeys spread their requests over all of them and fail over
 * from one to the next (lib/shopper.js); scripts that talk to one process use BASE_URL.
 */
export const BASE_URLS = (__ENV.BASE_URL || 'http://127.0.0.1:8080')
  .split(',')
  .map((url) => url.trim().replace(/\/$/, ''))
  .filter((url) => url !== '');
for (const url of BASE_URLS) {
  if (!/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(url)) {
    throw new Error(`BASE_URL must be loopback addresses only, got ${url}`);
  }
}
if (BASE_URLS.length === 0) throw new Error('BASE_URL is empty');
/** The first API process: admin calls, setup, single-process scripts. */
export const BASE_URL = BASE_URLS[0];
/** The sale under test. */
export const SALE_ID = __ENV.SALE_ID || '';

export function envInt(name, fallback) {
  const raw = __ENV[name];
  const n = raw === undefined || raw === '' ? NaN : parseInt(raw, 10);
  return Number.isFinite(n) ? n : fallback;
}

export function envFloat(name, fallback) {
  const raw = __ENV[name];
  const n = raw === undefined || raw === '' ? NaN : parseFloat(raw);
  return Number.isFinite(n) ? n : fallback;
}

/** "90s", "3m", "120" → seconds. */
export function envSeconds(name, fallback) {
  const raw = __ENV[name];
  if (!raw) return fallback;
  const m = /^(\d+)(s|m|h)?$/.exec(raw.trim());
  if (!m) throw new Error(`${name}: not a duration: ${raw}`);
  return parseInt(m[1], 10) * ({ s: 1, m: 60, h: 3600 }[m[2] || 's']);
}

/** Trend columns of the summary (p50 is `med`). */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'];

/** Moves the sale's start to `secs` from now (the merchant's PATCH with If-Match). */
export function startSaleIn(merchantToken, secs) {
  const headers = { Authorization: `Bearer ${merchantToken}`, 'Content-Type': 'application/json' };
  const url = `${BASE_URL}/v1/admin/sales/${SALE_ID}`;
  const got = http.get(url, { headers, tags: { step: 'admin', name: 'GET /v1/admin/sales/{id}' } });
  if (got.status !== 200) throw new Error(`GET sale: ${got.status} ${got.body}`);
  const startsAt = new Date(Date.now() + secs * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const res = http.patch(url, JSON.stringify({ starts_at: startsAt }), {
    headers: { ...headers, 'If-Match': got.headers.Etag || got.headers.ETag },
    tags: { step: 'admin', name: 'PATCH /v1/admin/sales/{id}' },
  });
  if (res.status !== 200) throw new Error(`PATCH starts_at: ${res.status} ${res.body}`);
  return startsAt;
}

function fmt(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '-';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : `${ms.toFixed(1)}ms`;
}

/** A short text summary: per step latency, counters, thresholds crossed. */
export function textSummary(data, steps) {
  const m = data.metrics;
  const lines = [];
  lines.push('step            reqs     p50       p95       p99       max     shed');
  for (const step of steps) {
    const d = m[`http_req_duration{step:${step}}`];
    if (!d) continue;
    const reqs = (m[`http_reqs{step:${step}}`] || { values: { count: 0 } }).values.count;
    const shed = (m[`shed_responses{step:${step}}`] || { values: { count: 0 } }).values.count;
    const v = d.values;
    lines.push(`${step.padEnd(14)} ${String(reqs).padStart(6)}  ${fmt(v.med).padStart(8)}  ${fmt(v['p(95)']).padStart(8)}  ${fmt(v['p(99)']).padStart(8)}  ${fmt(v.max).padStart(8)}  ${String(shed).padStart(6)}`);
  }
  const counters = Object.keys(m).filter((k) => m[k].type === 'counter' && !k.includes('{') && !k.startsWith('data_') && k !== 'iterations').sort();
  lines.push(counters.map((k) => `${k}=${m[k].values.count}`).join('  '));
  for (const k of ['admitted_errors', 'unexpected_responses', 'http_req_failed', 'checks']) {
    if (m[k]) lines.push(`${k}: ${(m[k].values.rate * 100).toFixed(3)}%`);
  }
  const crossed = [];
  for (const [name, metric] of Object.entries(m)) {
    for (const [expr, result] of Object.entries(metric.thresholds || {})) {
      if (!result.ok) crossed.push(`${name} ${expr}`);
    }
  }
  lines.push(crossed.length ? `THRESHOLDS CROSSED: ${crossed.join('; ')}` : 'thresholds: all passed');
  return `${lines.join('\n')}\n`;
}

/** handleSummary body: the full summary as JSON in REPORT_DIR, the short text on stdout. */
export function summaryOutputs(data, steps) {
  const dir = __ENV.REPORT_DIR || '.';
  return {
    [`${dir}/k6-summary.json`]: JSON.stringify(data, null, 1),
    stdout: textSummary(data, steps),
  };
}

/**
 * The arrival of a launch as a `ramping-arrival-rate` scenario: a share of the shoppers
 * arrives during the `prequeueSecs` before the start and pre-queues, most arrive in the
 * first `spikeSecs` after it, the rest trickle in over `tailSecs`. The stages integrate
 * to about `shoppers` arrivals. Every shopper is a VU for its whole journey (it waits in
 * line), so all VUs are allocated up front.
 */
export function launchScenario({ shoppers, prequeueSecs, spikeSecs, tailSecs, prequeueShare, spikeShare, durationSecs, exec }) {
  const tailShare = Math.max(0, 1 - prequeueShare - spikeShare);
  const r1 = (shoppers * prequeueShare) / prequeueSecs;
  const rt = (2 * shoppers * tailShare) / tailSecs;
  const r2 = Math.max(1, (shoppers * spikeShare - (r1 + rt) / 2) / spikeSecs);
  const round = (x) => Math.max(0, Math.round(x));
  const stages = [
    { duration: `${prequeueSecs}s`, target: round(r1) },
    { duration: '1s', target: round(r2) },
    { duration: `${Math.max(spikeSecs - 1, 1)}s`, target: round(r2) },
    { duration: '1s', target: round(rt) },
    { duration: `${tailSecs}s`, target: 0 },
  ];
  const arrivalSecs = prequeueSecs + 1 + Math.max(spikeSecs - 1, 1) + 1 + tailSecs;
  return {
    executor: 'ramping-arrival-rate',
    exec,
    startRate: round(r1),
    timeUnit: '1s',
    preAllocatedVUs: shoppers,
    maxVUs: shoppers,
    stages,
    gracefulStop: `${Math.max(durationSecs - arrivalSecs, 10)}s`,
    tags: { scenario_kind: 'shoppers' },
  };
}
