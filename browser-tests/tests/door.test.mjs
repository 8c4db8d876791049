// A shopper joins a sale whose door asks for a real proof of work: the storefront takes a
// challenge, solves it in a Web Worker while the button shows its progress, and joins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, PHONE, MERCHANT_TOKEN, openBrowser, shot, createSale, call } from '../lib/harness.mjs';

test('joining solves the door’s proof of work in a worker and shows its progress', async () => {
  // 18 bits: about 260,000 hashes on average — long enough to watch, short for a test.
  const sale = await createSale({ admission: { mode: 'auto', proof_difficulty_bits: 18 } });
  const b = await openBrowser({ viewport: PHONE, name: 'door' });
  try {
    const { page } = b;
    const challenges = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/challenge')) challenges.push(r.method());
    });
    let proof = null;
    page.on('request', (r) => {
      if (r.url().endsWith('/queue') && r.method() === 'POST' && r.headers()['x-join-proof']) proof = r.headers()['x-join-proof'];
    });
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    // The solve may take a fraction of a second: watch the button's text and its
    // aria-busy on every change of the DOM, rather than read them later.
    await page.evaluate(() => {
      const b = document.getElementById('buy');
      window.sawProgress = false;
      new MutationObserver(() => {
        if (/Checking you're a person… \d+%/.test(b.textContent) && b.getAttribute('aria-busy') === 'true') {
          window.sawProgress = true;
        }
      }).observe(b, { childList: true, characterData: true, subtree: true, attributes: true });
    });
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "It's your turn!" }).waitFor({ timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.sawProgress), true, "the button showed the solve's progress, busy");
    await shot(page, 'door-01-joined');
    assert.deepEqual(challenges, ['POST'], 'one challenge taken');
    assert.match(proof || '', /:[0-9a-z]{1,64}$/, `the join carried the proof: ${proof}`);
    assert.deepEqual(b.errors, [], 'no script errors');
  } finally {
    await b.close();
  }
});

test('an invitation-only sale asks for the access code and joins with it', async () => {
  const sale = await createSale({ access: 'codes' });
  const upload = await call('POST', `/v1/admin/sales/${sale.id}/access-codes`, {
    token: MERCHANT_TOKEN,
    body: { codes: [{ code: 'VIP-2026-ALPHA', uses: 1, priority: false }] },
  });
  assert.equal(upload.status, 201, JSON.stringify(upload.data));
  const b = await openBrowser({ viewport: PHONE, name: 'codes' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.locator('#notice-title').filter({ hasText: 'This sale is by invitation.' }).waitFor({ timeout: 20_000 });
    const field = page.getByLabel('Access code');
    assert.ok(await field.evaluate((el) => el === document.activeElement), 'focus lands in the code field');
    await field.fill('VIP-2026-ALPHA');
    await shot(page, 'codes-01-code');
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "It's your turn!" }).waitFor({ timeout: 60_000 });
    assert.deepEqual(b.errors, [], 'no script errors');
  } finally {
    await b.close();
  }
});
