// A shopper of a sale in sizes picks two sizes, holds them as one cart, pays, and sees the
// order with its lines (API.md v1.1, "variants and carts"); a size that sells out is
// marked, and a cart asking for more than is left holds nothing and says which size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, PHONE, openBrowser, shot, createSale, call, shopperJoins, ticketUntil } from '../lib/harness.mjs';

const size = (n, total) => ({
  sku: `TR-${n}`,
  name: `EU ${n}`,
  price: { amount_minor: 12900, currency: 'EUR' },
  stock: { total },
});

test('a shopper picks two sizes, holds the cart, pays, and sees the order lines', async () => {
  const sale = await createSale({
    sku: undefined,
    price: undefined,
    stock: undefined,
    variants: [size(41, 1), size(42, 5), size(43, 5)],
    per_user_limit: 3,
  });
  const [v41, v42, v43] = sale.variants;
  const b = await openBrowser({ viewport: PHONE, name: 'variants' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    await page.locator(`#sale-variants [data-variant="${v42.variant_id}"]`).filter({ hasText: '5 left' }).waitFor();

    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "It's your turn!" }).waitFor({ timeout: 20_000 });
    await shot(page, 'variants-01-cart');

    // Someone else takes the last EU 41 while this shopper chooses.
    await takeLastUnit(sale.id, v41.variant_id);
    await page.locator(`#qty-${v41.variant_id}`).selectOption('1');
    await page.locator(`#qty-${v42.variant_id}`).selectOption('2');
    await page.getByRole('button', { name: 'Reserve' }).click();
    await page.locator(`[data-variant="${v41.variant_id}"] .v-short`).filter({ hasText: 'Sold out' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: "It's your turn!" }).isVisible(), true, 'the shopper stays on the cart');
    const held = (await call('GET', `/v1/admin/sales/${sale.id}/stats`, { token: process.env.MERCHANT_TOKEN })).data;
    const v42Stock = held.variants.find((v) => v.variant_id === v42.variant_id).stock;
    assert.equal(v42Stock.held, 0, 'the cart with a sold-out line held nothing of its other line');
    await shot(page, 'variants-02-short-line');

    await page.locator(`#qty-${v41.variant_id}`).selectOption('0').catch(() => {});
    await page.locator(`#qty-${v43.variant_id}`).selectOption('1');
    await page.getByRole('button', { name: 'Reserve' }).click();
    await page.getByRole('heading', { name: 'Checkout' }).waitFor();
    assert.equal(await page.locator('#co-summary').textContent(), '2 × EU 42, 1 × EU 43 — €387.00');
    await page.getByLabel('Card').fill('tok_ok');
    await page.getByRole('button', { name: 'Pay' }).click();

    await page.getByRole('heading', { name: /your order is confirmed/ }).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator('#o-quantity').textContent(), '3');
    assert.equal(await page.locator('#o-amount').textContent(), '€387.00');
    const lines = await page.locator('#o-lines li').allTextContents();
    assert.deepEqual(lines, ['2 × EU 42 (TR-42) — €258.00', '1 × EU 43 (TR-43) — €129.00']);
    await shot(page, 'variants-03-order');
    assert.deepEqual(b.errors, [], 'no script errors');
  } finally {
    await b.close();
  }
});

/** Another shopper joins, is admitted and holds the last unit of a variant through the API. */
async function takeLastUnit(saleId, variantId) {
  const shopper = await shopperJoins(saleId);
  const t = await ticketUntil(saleId, shopper, (t) => t.state === 'admitted');
  const r = await call('POST', `/v1/sales/${saleId}/reservations`, {
    token: shopper.token,
    body: { lines: [{ variant_id: variantId, quantity: 1 }] },
    headers: { 'x-admission-token': t.admission_token },
  });
  assert.equal(r.status, 201, `the other shopper holds the last unit: ${JSON.stringify(r.data)}`);
}
