// A merchant creates a sale in the dashboard, meets a validation error on a bad field,
// fixes it, and watches the live charts move while a scripted burst buys units.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, DESKTOP, PHONE, MERCHANT_TOKEN, openBrowser, shot, shopperJoins, buyViaApi, waitFor } from '../lib/harness.mjs';

const BURST = 12;

test('a merchant creates a sale, fixes a bad field, and watches the live charts move during a burst', async () => {
  const b = await openBrowser({ viewport: DESKTOP, name: 'merchant' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/merchant`);
    await page.getByLabel('Merchant token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That does not look like a token').waitFor();
    await page.getByLabel('Merchant token').fill(MERCHANT_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Your sales' }).waitFor();

    await page.getByRole('link', { name: 'New sale' }).click();
    await page.getByRole('heading', { name: 'New sale' }).waitFor();
    const name = `Dashboard drop ${Date.now()}`;
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('SKU', { exact: true }).fill(`DD-${process.pid}`);
    await page.getByLabel('Description').fill('Made in the dashboard test.');
    await page.getByLabel('Price', { exact: true }).fill('19.99');
    await page.getByLabel('Units for sale').fill('0');
    await page.getByLabel('Most units per shopper').fill('1');
    // Live from a minute ago, for an hour (the inputs take local time).
    const [starts, ends] = await page.evaluate(() => {
      const local = (ms) => {
        const d = new Date(ms);
        const p = (n) => String(n).padStart(2, '0');
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      };
      return [local(Date.now() - 60_000), local(Date.now() + 3600_000)];
    });
    await page.getByLabel('Starts').fill(starts);
    await page.getByLabel('Ends').fill(ends);
    await page.getByRole('button', { name: 'Create sale' }).click();

    // The server's 422 lands next to the field it names ("stock.total: …").
    const stockInput = page.getByLabel('Units for sale');
    await page.locator('#f-stock-error').waitFor();
    assert.match(await page.locator('#f-stock-error').textContent(), /must be between 1 and 1000000/i);
    assert.equal(await stockInput.getAttribute('aria-invalid'), 'true');
    assert.ok(await stockInput.evaluate((el) => el === document.activeElement), 'focus moves to the bad field');
    await shot(page, 'desktop-13-merchant-validation');
    await page.setViewportSize(PHONE);
    await stockInput.scrollIntoViewIfNeeded();
    await shot(page, 'phone-14-merchant-validation');
    await page.setViewportSize(DESKTOP);

    await stockInput.fill('40');
    await page.getByRole('button', { name: 'Create sale' }).click();
    await page.getByRole('heading', { level: 1, name }).waitFor();
    const saleId = new URL(page.url()).hash.match(/sales\/([0-9a-f-]{36})/)[1];
    await page.locator('#t-available').filter({ hasText: '40' }).waitFor();
    await page.locator('#reasons li').first().waitFor({ timeout: 10_000 }).catch(() => {});

    // Add stock from the dashboard.
    await page.getByLabel(/Add units/).fill('10');
    await page.getByRole('button', { name: 'Change stock' }).click();
    await page.locator('#t-available').filter({ hasText: '50' }).waitFor();

    const soldPath = () => page.locator('#chart-stock path').nth(2).getAttribute('d').catch(() => '');
    const before = await soldPath();

    // The burst: shoppers join through the API, get admitted, hold and pay.
    const shoppers = await Promise.all(Array.from({ length: BURST }, () => shopperJoins(saleId)));
    await Promise.all(shoppers.map((s) => buyViaApi(saleId, s)));

    await page.locator('#t-sold').filter({ hasText: String(BURST) }).waitFor({ timeout: 15_000 });
    await page.locator('#t-orders').filter({ hasText: String(BURST) }).waitFor({ timeout: 15_000 });
    await waitFor(async () => (await page.locator('#chart-stock .legend li').nth(2).textContent()).includes(String(BURST)), 10_000, 'the chart legend to show the sales');
    const after = await soldPath();
    assert.notEqual(after, before, 'the sold line moved');
    assert.ok((await page.locator('#reasons li').count()) >= 1, 'the controller log has entries');
    await page.waitForTimeout(1500);
    await shot(page, 'desktop-15-merchant-live');
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(1200);
    await shot(page, 'phone-16-merchant-live');
    await page.setViewportSize(DESKTOP);

    // Pause and resume from the dashboard.
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.locator('#d-status').filter({ hasText: 'Paused' }).waitFor();
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('#d-status').filter({ hasText: 'Live' }).waitFor();

    // The list shows the new sale.
    await page.getByRole('link', { name: '← All sales' }).click();
    await page.getByRole('link', { name: `Open ${name}` }).waitFor();
    await shot(page, 'desktop-17-merchant-list');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
