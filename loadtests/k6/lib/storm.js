// Raw throughput of one endpoint: pre-minted shoppers (one per request, so no request
// is refused by the per-shopper limit or rate limit) from a file of
// "<shopper token> <admission token>" lines made by
// `flashsale token admission <sale> --count N`, read once into a SharedArray.
//
// Bounded twice: at most one request per line (`shared-iterations`), and DURATION.
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';

import { envInt, envSeconds } from './common.js';

export const unexpectedResponses = new Rate('unexpected_responses');

/** The shoppers of TOKENS_FILE (path relative to the script or absolute). */
export function loadShoppers() {
  return new SharedArray('shoppers', () => {
    const path = __ENV.TOKENS_FILE;
    if (!path) throw new Error('TOKENS_FILE is required');
    return open(path)
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const [shopper, admission] = line.trim().split(' ');
        return { shopper, admission };
      });
  });
}

/** The one scenario of a storm: VUS clients share min(REQUESTS, lines) requests. */
export function stormOptions(count, step, exec_) {
  return {
    scenarios: {
      storm: {
        executor: 'shared-iterations',
        exec: exec_,
        vus: envInt('VUS', 50),
        iterations: Math.min(envInt('REQUESTS', count), count),
        maxDuration: `${envSeconds('DURATION', 30)}s`,
      },
    },
    thresholds: {
      unexpected_responses: ['rate<0.001'],
      [`http_req_duration{step:${step}}`]: ['max>=0'],
      [`http_reqs{step:${step}}`]: ['count>=0'],
    },
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
    discardResponseBodies: true,
  };
}

/** The shopper of this iteration: each line once. */
export function nextShopper(shoppers) {
  return shoppers[exec.scenario.iterationInTest % shoppers.length];
}
