// Join storm: POST /v1/sales/{id}/queue as fast as VUS clients can, each request a
// different shopper (the shopper tokens of TOKENS_FILE, first column), so the
// per-shopper rate limit never answers. 201 is the answer; 503 queue_full counts as
// shed, anything else is an error. Each join first takes a challenge and solves it (the
// rehearsal sale asks for a few bits: loadtests/lib/env.sh), as every shopper must.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

import { BASE_URL, SALE_ID, summaryOutputs } from './lib/common.js';
import { proofFor } from './lib/proof.js';
import { loadShoppers, nextShopper, stormOptions, unexpectedResponses } from './lib/storm.js';

const shoppers = loadShoppers();
const shed = new Counter('shed_responses');

export const options = stormOptions(shoppers.length, 'join', 'join');
options.thresholds['shed_responses{step:join}'] = ['count>=0'];

export function join() {
  const s = nextShopper(shoppers);
  const auth = { Authorization: `Bearer ${s.shopper}` };
  const issued = http.post(`${BASE_URL}/v1/sales/${SALE_ID}/challenge`, null, {
    headers: auth,
    tags: { step: 'challenge', name: 'POST /v1/sales/{id}/challenge' },
    // The storm discards bodies; this one carries the challenge.
    responseType: 'text',
  });
  if (issued.status !== 201) {
    const shedding = issued.status === 429 || issued.status === 503;
    if (shedding) shed.add(1, { step: 'join' });
    unexpectedResponses.add(!shedding, { step: 'join' });
    return;
  }
  const res = http.post(`${BASE_URL}/v1/sales/${SALE_ID}/queue`, null, {
    headers: { ...auth, 'X-Join-Proof': proofFor(issued.json()) },
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
