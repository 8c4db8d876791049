// A shopper buys one unit end to end on a phone-sized screen and sees "confirmation sent".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, PHONE, openBrowser, shot, createSale, call } from '../lib/harness.mjs';

test('a shopper buys one unit end to end and sees confirmation sent', async () => {
  const sale = await createSale({ stock: { total: 20 }, per_user_limit: 2 });
  const b = await openBrowser({ viewport: PHONE, name: 'buy' });
  try {
    const { page } = b;
    const res = await page.goto(`${BASE}/sales/${sale.id}`);
    assert.match(res.headers()['cache-control'], /public/, 'the sale page is cacheable');
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    await page.locator('#sale-available').filter({ hasText: /^20$/ }).waitFor();
    assert.equal(await page.locator('#sale-total').textContent(), 'of 20');
    await shot(page, 'phone-01-sale-page');

    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "It's your turn!" }).waitFor({ timeout: 20_000 });
    await shot(page, 'phone-02-admitted');
    // Keyboard only from here: choose, reserve, type the card, pay with Enter.
    await page.getByLabel('Quantity').focus();
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');

    await page.getByRole('heading', { name: 'Checkout' }).waitFor();
    const hold = await page.getByRole('timer').filter({ visible: true }).textContent();
    assert.match(hold, /^[45]:\d\d$/, `the hold counts down from the sale's 5 minutes, got ${hold}`);
    assert.ok(await page.getByLabel('Card').evaluate((el) => el === document.activeElement), 'focus lands in the card field');
    await page.keyboard.type('tok_ok');
    await shot(page, 'phone-03-checkout');
    await page.keyboard.press('Enter');

    await page.getByRole('heading', { name: /your order is confirmed/ }).waitFor({ timeout: 20_000 });
    await page.locator('#o-confirmation-text').filter({ hasText: /^Confirmation sent/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#o-quantity').textContent(), '1');
    assert.equal(await page.locator('#o-amount').textContent(), '€129.00');
    await shot(page, 'phone-04-confirmation');

    // The order is kept across a refresh (localStorage), and the server agrees.
    await page.reload();
    await page.locator('#o-confirmation-text').filter({ hasText: /^Confirmation sent/ }).waitFor();
    const orderId = await page.locator('#o-id').textContent();
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem('flashsale.session')).token);
    const order = await call('GET', `/v1/orders/${orderId}`, { token });
    assert.equal(order.status, 200);
    assert.equal(order.data.confirmation.status, 'sent');
    assert.deepEqual(b.errors, [], 'no script errors');
  } finally {
    await b.close();
  }
});
