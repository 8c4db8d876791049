// After the purchase, in the dashboard: a merchant registers a webhook endpoint (a
// receiver this test runs on loopback), sees a sale's orders page by page, refunds one
// with its units returned to stock (retrying once after a failed answer, with the same
// Idempotency-Key) and one without, and watches the deliveries reach the receiver —
// signed with the secret the dashboard showed once — and appear in the panel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { BASE, DESKTOP, PHONE, MERCHANT_TOKEN, openBrowser, shot, createSale, shopperJoins, buyViaApi, stats, waitFor } from '../lib/harness.mjs';

const STOCK = 20;
/** One more than the panel's page, so "More orders" has something to load. */
const ORDERS = 11;

/** A webhook receiver on loopback: answers 204 and keeps what it got. */
async function receiver() {
  const got = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { got, url: `http://127.0.0.1:${server.address().port}/hooks`, close: () => new Promise((r) => server.close(r)) };
}

/** Whether a delivery carries a Standard Webhooks signature made with `secret`. */
function signedWith(delivery, secret) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const { 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': sigs } = delivery.headers;
  const expected = createHmac('sha256', key).update(`${id}.${ts}.${delivery.body}`).digest('base64');
  return (sigs || '').split(' ').some((s) => s === `v1,${expected}`);
}

test('a merchant refunds orders from the dashboard and sees the webhook deliveries', async () => {
  const hooks = await receiver();
  const b = await openBrowser({ viewport: DESKTOP, name: 'merchant-orders' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/merchant`);
    await page.getByLabel('Merchant token').fill(MERCHANT_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Your sales' }).waitFor();

    // Register the receiver; the secret is shown once.
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByRole('heading', { level: 1, name: 'Webhooks' }).waitFor();
    await page.getByLabel('Endpoint URL').fill(hooks.url);
    assert.ok(await page.getByLabel('Order refunded').isChecked(), 'order events are chosen by default');
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    await page.locator('#wh-secret').waitFor();
    const secret = await page.locator('#wh-secret-value').inputValue();
    assert.match(secret, /^whsec_[A-Za-z0-9+/=]{20,}$/);
    const endpoint = page.locator('#wh-list li', { hasText: hooks.url });
    await endpoint.waitFor();
    await shot(page, 'desktop-30-merchant-webhook-secret');
    await page.getByRole('button', { name: 'Done' }).click();
    assert.equal(await page.locator('#wh-secret').isHidden(), true);
    assert.equal(await page.locator('#wh-secret-value').inputValue(), '', 'the secret is not kept on the page');

    // A sale with orders (shoppers through the line and checkout, by the API).
    const sale = await createSale({ stock: { total: STOCK }, per_user_limit: 1 });
    const shoppers = await Promise.all(Array.from({ length: ORDERS }, () => shopperJoins(sale.id)));
    const orders = await Promise.all(shoppers.map((s) => buyViaApi(sale.id, s)));

    await page.goto(`${BASE}/merchant#/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    const rows = page.locator('#order-rows tr');
    await waitFor(async () => (await rows.count()) === ORDERS - 1, 10_000, 'the first page of orders');
    await page.getByRole('button', { name: 'More orders' }).click();
    await waitFor(async () => (await rows.count()) === ORDERS, 10_000, 'the second page of orders');
    assert.equal(await page.getByRole('button', { name: 'More orders' }).isHidden(), true, 'no third page');
    await page.locator('#t-available').filter({ hasText: String(STOCK - ORDERS) }).waitFor();

    // Refund with restock; the first answer fails (a 503 the page never saw the end of),
    // so the merchant presses again, and the same key goes out.
    const first = orders[0];
    const row = page.locator(`#order-rows tr[data-order="${first.order_id}"]`);
    assert.match(await row.textContent(), /Confirmed/);
    assert.match(await row.textContent(), /1 × TR-/);
    const keys = [];
    let failOnce = true;
    await page.route(`**/v1/admin/sales/${sale.id}/orders/*/refund`, async (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      if (failOnce) {
        failOnce = false;
        await route.fulfill({
          status: 503,
          headers: { 'content-type': 'application/problem+json', 'retry-after': '1' },
          body: JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, code: 'dependency_unavailable', detail: 'try again' }),
        });
        return;
      }
      await route.continue();
    });
    assert.ok(await row.getByLabel('Return units to stock').isChecked());
    await row.getByRole('button', { name: /^Refund order/ }).click();
    await row.locator('.refund-outcome').filter({ hasText: 'Press Refund again' }).waitFor();
    assert.match(await row.textContent(), /Confirmed/, 'still confirmed after the failed answer');
    await row.getByRole('button', { name: /^Refund order/ }).click();
    await row.locator('[data-role="status"]').filter({ hasText: 'Refunded' }).waitFor();
    assert.match(await row.locator('.refund-outcome').textContent(), /back on sale/);
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1], 'the retry of one refund sends the same Idempotency-Key');
    assert.equal(await row.getByRole('button', { name: /^Refund order/ }).isHidden(), true, 'a refunded order offers no refund');
    await page.locator('#t-available').filter({ hasText: String(STOCK - ORDERS + 1) }).waitFor();

    // Refund without restock: a fresh key, and the units leave the sale.
    const second = page.locator(`#order-rows tr[data-order="${orders[1].order_id}"]`);
    await second.getByLabel('Return units to stock').uncheck();
    await second.getByRole('button', { name: /^Refund order/ }).click();
    await second.locator('[data-role="status"]').filter({ hasText: 'Refunded' }).waitFor();
    assert.notEqual(keys[2], keys[0], 'another refund, another key');
    assert.equal((await stats(sale.id)).stock.available, STOCK - ORDERS + 1, 'no units returned without restock');
    await shot(page, 'desktop-31-merchant-orders');
    await page.setViewportSize(PHONE);
    await row.scrollIntoViewIfNeeded();
    await shot(page, 'phone-32-merchant-orders');
    await page.setViewportSize(DESKTOP);

    // The receiver gets every order's events, each signed with the secret shown once.
    const events = (type) => hooks.got.map((d) => JSON.parse(d.body)).filter((e) => e.type === type).map((e) => e.data);
    await waitFor(() => new Set(events('order.refunded').map((d) => d.order_id)).size >= 2, 30_000, 'two order.refunded deliveries');
    const refunds = new Map(events('order.refunded').map((d) => [d.order_id, d.restocked]));
    assert.deepEqual([...refunds].sort(), [[orders[0].order_id, true], [orders[1].order_id, false]].sort());
    const placed = await waitFor(() => {
      const ids = new Set(events('order.placed').map((d) => d.order_id));
      return ids.size >= ORDERS ? ids : null;
    }, 30_000, 'every order.placed delivery');
    assert.deepEqual([...placed].sort(), orders.map((o) => o.order_id).sort(), 'one order.placed per order');
    for (const d of hooks.got) assert.ok(signedWith(d, secret), `signed: ${d.headers['webhook-id']}`);

    // The panel shows them, newest first, delivered.
    await page.goto(`${BASE}/merchant#/webhooks`);
    const log = endpoint.locator('tbody tr');
    await waitFor(async () => {
      await endpoint.getByRole('button', { name: /^Refresh deliveries/ }).click();
      await page.waitForTimeout(300);
      const top = await log.first().textContent().catch(() => '');
      return (await log.count()) === 10 && /Order refunded/.test(top) && !/not yet/.test(top);
    }, 20_000, 'the delivery log to show the refunds delivered');
    const cells = await log.first().locator('td').allTextContents();
    assert.equal(cells[0], 'Order refunded');
    assert.equal(cells[1], '1', 'one attempt');
    assert.equal(cells[2], '204', 'the receiver’s answer');
    assert.equal(cells[3], '—', 'nothing left to try');
    await shot(page, 'desktop-33-merchant-deliveries');

    // Rotating shows a new secret once; deleting removes the endpoint.
    await endpoint.getByRole('button', { name: /^Rotate secret/ }).click();
    await page.locator('#wh-secret').waitFor();
    const rotated = await page.locator('#wh-secret-value').inputValue();
    assert.match(rotated, /^whsec_/);
    assert.notEqual(rotated, secret);
    await page.getByRole('button', { name: 'Done' }).click();
    await endpoint.getByRole('button', { name: /^Delete/ }).click();
    await endpoint.getByRole('button', { name: 'Yes, delete it' }).click();
    await endpoint.waitFor({ state: 'detached' });
    assert.equal(await page.getByText('No endpoints yet.').isVisible(), true);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await hooks.close();
  }
});
