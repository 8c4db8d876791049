// Join storm: POST /v1/sales/{id}/queue as fast as VUS clients can, each request a
// different shopper (the shopper tokens of TOKENS_FILE, first column), so the
// per-shopper rate limit never answers. 201 is the answer; 503 queue_full counts as
// shed, anything else is an error.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

import { BASE_URL, SALE_ID, summaryOutputs } from './lib/common.js';
import { loadShoppers, nextShopper, stormOptions, unexpectedResponses } from './lib/storm.js';

const shoppers = loadShoppers();
const shed = new Counter('shed_responses');

export const options = stormOptions(shoppers.length, 'join', 'join');
options.thresholds['shed_responses{step:join}'] = ['count>=0'];

export function join() {
  const s = nextShopper(shoppers);
  const res = http.post(`${BASE_URL}/v1/sales/${SALE_ID}/queue`, null, {
    headers: { Authorization: `Bearer ${s.shopper}` },
    tags: { step: 'join', name: 'POST /v1/sales/{id}/queue' },
  });
  if (res.status === 429 || res.status === 503) shed.add(1, { step: 'join' });
  const ok = res.status === 201 || res.status === 200 || res.status === 429 || res.status === 503;
  unexpectedResponses.add(!ok, { step: 'join' });
  check(res, { 'join: 201': (r) => r.status === 201 });
}

export function handleSummary(data) {
  return summaryOutputs(data, ['join']);
}
