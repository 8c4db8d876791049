// Shared by the browser tests: Debian's Chromium through playwright-core (no browser
// download), the API client the tests use to arrange sales and crowds, and screenshots.
//
// `./run` starts flashsale and exports BASE_URL and MERCHANT_TOKEN.

import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BASE = process.env.BASE_URL || 'http://127.0.0.1:18090';
export const MERCHANT_TOKEN = process.env.MERCHANT_TOKEN || '';
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * A browser with a fresh profile (its own user-data-dir: own localStorage, so one
 * shopper). Close it with `await b.close()`.
 */
export async function openBrowser({ viewport = DESKTOP, name = 'browser' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `fs-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ARGS,
    headless: true,
    viewport,
    deviceScaleFactor: 1,
    isMobile: viewport.width < 500,
    hasTouch: viewport.width < 500,
    timezoneId: 'UTC',
    locale: 'en-GB',
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    // Chromium logs every non-2xx fetch as "Failed to load resource": those are answers
    // the page handles (402 declined, 404 not in line …), not script errors.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  return {
    context,
    page,
    errors,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot as artifacts/<name>.png. */
export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// ------------------------------------------------------------------ the API

export async function call(method, path, { token, body, headers = {} } = {}) {
  const h = { accept: 'application/json', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(BASE + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  return { status: res.status, data, headers: res.headers };
}

async function must(method, path, opts, ok = [200, 201, 204]) {
  const r = await call(method, path, opts);
  if (!ok.includes(r.status)) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.data)}`);
  return r.data;
}

let serial = 0;

/** Creates a sale (live since a few seconds unless `starts_at` is given). */
export async function createSale(overrides = {}) {
  serial += 1;
  const now = Date.now();
  const body = {
    name: `Trail runner — test ${serial}`,
    sku: `TR-${process.pid}-${serial}`,
    description: 'Launch edition. Breathable mesh, recycled sole.',
    price: { amount_minor: 12900, currency: 'EUR' },
    stock: { total: 50 },
    per_user_limit: 2,
    hold_ttl_seconds: 300,
    starts_at: new Date(now - 5_000).toISOString(),
    ends_at: new Date(now + 3600_000).toISOString(),
    ...overrides,
  };
  return must('POST', '/v1/admin/sales', { token: MERCHANT_TOKEN, body });
}

export async function stats(saleId) {
  return must('GET', `/v1/admin/sales/${saleId}/stats`, { token: MERCHANT_TOKEN });
}

/** Leading zero bits of a digest, first byte's high bit first. */
function zeroBits(bytes) {
  let bits = 0;
  for (const b of bytes) {
    if (b !== 0) return bits + Math.clz32(b) - 24;
    bits += 8;
  }
  return bits;
}

/** A solved `X-Join-Proof` for the shopper's next join (API.md v1.1, "the line"). */
export async function joinProof(saleId, token) {
  const c = await must('POST', `/v1/sales/${saleId}/challenge`, { token });
  for (let n = 0; ; n++) {
    const nonce = n.toString(36);
    const digest = createHash('sha256').update(`${c.challenge}:${nonce}`).digest();
    if (zeroBits(digest) >= c.difficulty_bits) return `${c.challenge}:${nonce}`;
  }
}

/** A guest shopper who joined the line (solving the door's proof): { token, ticket }. */
export async function shopperJoins(saleId) {
  const session = await must('POST', '/v1/sessions', {});
  const headers = { 'x-join-proof': await joinProof(saleId, session.token) };
  const ticket = await must('POST', `/v1/sales/${saleId}/queue`, { token: session.token, headers });
  return { token: session.token, ticket };
}

/** Polls the shopper's ticket until `pred(ticket)` holds. */
export async function ticketUntil(saleId, shopper, pred, timeoutMs = 30_000) {
  return waitFor(async () => {
    const t = await must('GET', `/v1/sales/${saleId}/queue/me`, { token: shopper.token });
    return pred(t) ? t : null;
  }, timeoutMs, 'ticket state');
}

/** Waits for admission, reserves `quantity` and pays with tok_ok: the order. */
export async function buyViaApi(saleId, shopper, quantity = 1) {
  const t = await ticketUntil(saleId, shopper, (t) => t.state === 'admitted');
  const r = await must('POST', `/v1/sales/${saleId}/reservations`, {
    token: shopper.token,
    body: { quantity },
    headers: { 'x-admission-token': t.admission_token },
  });
  return must('POST', `/v1/reservations/${r.reservation_id}/checkout`, {
    token: shopper.token,
    body: { payment_token: 'tok_ok' },
    headers: { 'idempotency-key': `k-${r.reservation_id}` },
  });
}

/** Retries `fn` until it returns a truthy value. */
export async function waitFor(fn, timeoutMs = 15_000, what = 'condition') {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
