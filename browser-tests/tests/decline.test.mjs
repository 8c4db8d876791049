// A declined card, a provider error, then an approved card — all within one hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, DESKTOP, openBrowser, shot, createSale, call } from '../lib/harness.mjs';

test('a declined card, then an approved one within the hold', async () => {
  const sale = await createSale({ stock: { total: 10 }, per_user_limit: 3, hold_ttl_seconds: 120 });
  const b = await openBrowser({ viewport: DESKTOP, name: 'decline' });
  try {
    const { page } = b;
    const keys = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/checkout')) keys.push(r.headers()['idempotency-key']);
    });
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByLabel('Quantity').selectOption('2', { timeout: 20_000 });
    await page.getByRole('button', { name: 'Reserve' }).click();
    await page.getByRole('heading', { name: 'Checkout' }).waitFor();
    assert.match(await page.locator('#co-summary').textContent(), /2 × .* €258\.00/);

    await page.getByLabel('Card').fill('tok_declined');
    await page.getByRole('button', { name: 'Pay' }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'Your card was declined.' });
    await alert.waitFor();
    assert.match(await alert.textContent(), /Try another card — your units stay reserved for [012]:\d\d/);
    assert.ok(await page.getByRole('heading', { name: 'Checkout' }).isVisible(), 'still on checkout');
    await shot(page, 'desktop-10-declined');

    // The provider failing: the shopper is told, not charged, and may try again.
    await page.getByLabel('Card').fill('tok_error');
    await page.getByRole('button', { name: 'Pay' }).click();
    await page.getByRole('alert').filter({ hasText: "The payment provider isn't answering." }).waitFor();
    await page.getByRole('button', { name: /^Try again in \d s$/ }).waitFor();
    await shot(page, 'desktop-11-provider-error');
    await page.getByRole('button', { name: 'Pay' }).and(page.locator(':enabled')).waitFor({ timeout: 15_000 });

    await page.getByLabel('Card').fill('tok_ok');
    await page.getByRole('button', { name: 'Pay' }).click();
    await page.getByRole('heading', { name: /your order is confirmed/ }).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator('#o-quantity').textContent(), '2');
    await page.locator('#o-confirmation-text').filter({ hasText: /^Confirmation sent/ }).waitFor({ timeout: 30_000 });
    await shot(page, 'desktop-12-confirmed-after-decline');

    assert.equal(keys.length, 3, 'one checkout request per attempt');
    assert.equal(new Set(keys).size, 3, 'a fresh Idempotency-Key per payment attempt');
    const s = await call('GET', `/v1/sales/${sale.id}`);
    assert.equal(s.data.stock.available, 8);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
