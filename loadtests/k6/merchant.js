// A merchant during a launch: while the shoppers of launch.js buy (smaller crowd by
// default), the merchant creates new sales, edits them with If-Match (and sees 412 on
// a stale version), changes stock, pages its listing, and watches the launch's /stats
// and orders every second, as the dashboard does.
//
// Env: everything of launch.js (`loadtests/run merchant` uses 500 SHOPPERS), MERCHANT_TOKEN
// (required), EDITORS (2 VUs editing), EDIT_PAUSE_MS (1000).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';

import { BASE_URL, SALE_ID, envInt, summaryOutputs } from './lib/common.js';
import { STEPS } from './lib/shopper.js';
import { DURATION_SECS, options as launchOptions } from './launch.js';

export { setup, shopper } from './launch.js';

const merchantErrors = new Rate('merchant_errors');
const MERCHANT_STEPS = ['admin_create', 'admin_edit', 'admin_read', 'admin_watch'];
const watchSecs = Math.max(DURATION_SECS - 10, 10);

export const options = {
  ...launchOptions,
  scenarios: {
    ...launchOptions.scenarios,
    merchant_edits: {
      executor: 'constant-vus',
      exec: 'edit',
      vus: envInt('EDITORS', 2),
      duration: `${watchSecs}s`,
      startTime: '1s',
    },
    merchant_watch: {
      executor: 'constant-arrival-rate',
      exec: 'watch',
      rate: 1,
      timeUnit: '1s',
      duration: `${watchSecs}s`,
      preAllocatedVUs: 2,
      maxVUs: 4,
    },
  },
  thresholds: {
    ...launchOptions.thresholds,
    merchant_errors: ['rate<0.001'],
    ...Object.fromEntries(MERCHANT_STEPS.map((s) => [`http_req_duration{step:${s}}`, ['p(95)<1000']])),
    ...Object.fromEntries(MERCHANT_STEPS.map((s) => [`http_reqs{step:${s}}`, ['count>=0']])),
  },
};

function admin(method, path, body, step, extraHeaders = {}) {
  return http.request(method, `${BASE_URL}${path}`, body === null ? null : JSON.stringify(body), {
    headers: { Authorization: `Bearer ${__ENV.MERCHANT_TOKEN}`, 'Content-Type': 'application/json', ...extraHeaders },
    tags: { step, name: `${method} ${path.replace(/[0-9a-f-]{36}/g, '{id}').replace(/\?.*$/, '')}` },
  });
}

function expect(res, step, statuses) {
  const ok = statuses.includes(res.status);
  merchantErrors.add(!ok, { step });
  check(res, { [`${step}: ${statuses.join('/')}`]: () => ok });
  return ok;
}

/** One merchant editing round: create a sale for next week, edit it, stock, list. */
export function edit() {
  const start = new Date(Date.now() + 7 * 86400 * 1000);
  const end = new Date(start.getTime() + 2 * 3600 * 1000);
  const created = admin('POST', '/v1/admin/sales', {
    name: `Rehearsal follow-up ${__VU}-${__ITER}`,
    sku: `RH-${__VU}-${__ITER}`,
    description: 'Created by loadtests/k6/merchant.js during a launch.',
    price: { amount_minor: 4900, currency: 'EUR' },
    stock: { total: 100 },
    per_user_limit: 2,
    hold_ttl_seconds: 300,
    starts_at: start.toISOString(),
    ends_at: end.toISOString(),
  }, 'admin_create');
  if (!expect(created, 'admin_create', [201])) return;
  const id = created.json('id');
  const got = admin('GET', `/v1/admin/sales/${id}`, null, 'admin_read');
  if (!expect(got, 'admin_read', [200])) return;
  const etag = got.headers.Etag;
  const patched = admin('PATCH', `/v1/admin/sales/${id}`, { description: 'Edited during the launch.' }, 'admin_edit', { 'If-Match': etag });
  expect(patched, 'admin_edit', [200]);
  // The same, stale version again: exactly one concurrent editor wins.
  const stale = admin('PATCH', `/v1/admin/sales/${id}`, { description: 'A stale edit.' }, 'admin_edit', { 'If-Match': etag });
  expect(stale, 'admin_edit', [412]);
  expect(admin('POST', `/v1/admin/sales/${id}/stock`, { delta: 25 }, 'admin_edit'), 'admin_edit', [200]);
  expect(admin('GET', '/v1/admin/sales?limit=20', null, 'admin_read'), 'admin_read', [200]);
  expect(admin('POST', `/v1/admin/sales/${id}/end`, null, 'admin_edit'), 'admin_edit', [200]);
  sleep(envInt('EDIT_PAUSE_MS', 1000) / 1000);
}

/** The dashboard: the launch's stats and latest orders, every second. */
export function watch() {
  expect(admin('GET', `/v1/admin/sales/${SALE_ID}/stats`, null, 'admin_watch'), 'admin_watch', [200]);
  expect(admin('GET', `/v1/admin/sales/${SALE_ID}/orders?limit=20`, null, 'admin_watch'), 'admin_watch', [200]);
}

export function handleSummary(data) {
  return summaryOutputs(data, [...STEPS, ...MERCHANT_STEPS]);
}
