// Reserve storm: POST /v1/sales/{id}/reservations as fast as VUS clients can, each
// request a different admitted shopper (TOKENS_FILE from `flashsale token admission`).
// 201 and 409 sold_out are answers, 429/503 are shed load; anything else is an error.
//
//   k6 run -e BASE_URL=… -e SALE_ID=… -e TOKENS_FILE=/tmp/shoppers.txt -e VUS=50 \
//          -e DURATION=30s loadtests/k6/reserve-storm.js
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

import { BASE_URL, SALE_ID, summaryOutputs } from './lib/common.js';
import { loadShoppers, nextShopper, stormOptions, unexpectedResponses } from './lib/storm.js';

const shoppers = loadShoppers();
const shed = new Counter('shed_responses');

export const options = stormOptions(shoppers.length, 'reserve', 'reserve');
options.thresholds['shed_responses{step:reserve}'] = ['count>=0'];

export function reserve() {
  const s = nextShopper(shoppers);
  const res = http.post(`${BASE_URL}/v1/sales/${SALE_ID}/reservations`, '{"quantity":1}', {
    headers: {
      Authorization: `Bearer ${s.shopper}`,
      'X-Admission-Token': s.admission,
      'Content-Type': 'application/json',
    },
    tags: { step: 'reserve', name: 'POST /v1/sales/{id}/reservations' },
  });
  if (res.status === 429 || res.status === 503) shed.add(1, { step: 'reserve' });
  // Bodies are discarded: a 409 here can only be sold_out (fresh shoppers, live sale).
  const ok = [201, 409, 429, 503].includes(res.status);
  unexpectedResponses.add(!ok, { step: 'reserve' });
  check(res, { 'reserve: 201 or 409 sold_out': () => ok });
}

export function handleSummary(data) {
  return summaryOutputs(data, ['reserve']);
}
