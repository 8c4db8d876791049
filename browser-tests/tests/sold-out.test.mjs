// Sold out while waiting: two shoppers ahead buy the last units; the one in line is told.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, DESKTOP, openBrowser, shot, createSale, shopperJoins, buyViaApi, ticketUntil } from '../lib/harness.mjs';

test('sold out while waiting shows the sold-out state', async () => {
  // At most two active shoppers: the browser's shopper (third) waits until the end.
  const sale = await createSale({
    stock: { total: 2 },
    per_user_limit: 1,
    admission: { mode: 'auto', max_active_shoppers: 2, checkout_p95_target_ms: 300 },
  });
  const first = await shopperJoins(sale.id);
  const second = await shopperJoins(sale.id);
  for (const s of [first, second]) await ticketUntil(sale.id, s, (t) => t.state === 'admitted');
  const b = await openBrowser({ viewport: DESKTOP, name: 'soldout' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "You're in line" }).waitFor();
    assert.equal(await page.locator('#q-position').textContent(), '#3');
    await shot(page, 'desktop-08-waiting-before-sold-out');

    await Promise.all([buyViaApi(sale.id, first), buyViaApi(sale.id, second)]);

    await page.getByRole('heading', { name: 'Sold out', exact: true }).waitFor({ timeout: 20_000 });
    await page.locator('#sale-status[data-status="sold_out"]').waitFor({ timeout: 10_000 });
    await shot(page, 'desktop-09-sold-out');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
