// Joining before the start: the pre-queue shows the draw's commitment; at the start the
// shopper is placed by the draw and can check the revealed seed against it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { BASE, PHONE, openBrowser, shot, createSale, shopperJoins, call, waitFor } from '../lib/harness.mjs';

test('a shopper who joins before the start sees the commitment, then the verified seed', async () => {
  const startsIn = 10_000;
  const sale = await createSale({
    starts_at: new Date(Date.now() + startsIn).toISOString(),
    stock: { total: 100 },
    // One shopper at a time, so most of the pre-queue stays in line after the draw.
    admission: { mode: 'auto', max_active_shoppers: 1, checkout_p95_target_ms: 300 },
  });
  for (let i = 0; i < 4; i += 1) await shopperJoins(sale.id);
  const b = await openBrowser({ viewport: PHONE, name: 'prequeue' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.locator('#sale-status[data-status="scheduled"]').waitFor();
    assert.match(await page.locator('#sale-when').textContent(), /^Opens .* — in 0:\d\d$/);
    await page.getByRole('button', { name: 'Join the line' }).click();
    await page.getByRole('heading', { name: /You're in — the line opens/ }).waitFor();
    await page.getByText('How the draw is kept honest').click();
    const commitment = await page.locator('#pre-commitment').textContent();
    const draw = await call('GET', `/v1/sales/${sale.id}/draw`);
    assert.equal(commitment, draw.data.commitment);
    assert.equal(draw.data.seed, null, 'the seed stays secret before the start');
    await shot(page, 'phone-18-prequeue');

    // At the start: placed by the draw. Usually in line (then the draw can be checked),
    // or first of five and admitted at once.
    const waiting = page.getByRole('heading', { name: "You're in line" });
    const admitted = page.getByRole('heading', { name: "It's your turn!" });
    await waitFor(async () => (await waiting.isVisible()) || (await admitted.isVisible()), startsIn + 15_000, 'the draw');
    await page.locator('#sale-status[data-status="live"]').waitFor({ timeout: 5_000 });
    const revealed = await call('GET', `/v1/sales/${sale.id}/draw`);
    assert.equal(revealed.data.ticket_count, 5);
    const seed = revealed.data.seed;
    assert.equal(createHash('sha256').update(Buffer.from(seed, 'hex')).digest('hex'), commitment);
    await page.getByText('Check the draw').click();
    assert.equal(await page.locator('#q-seed').textContent(), seed);
    await page.getByText(/Checked in your browser/).waitFor();
    await shot(page, 'phone-19-check-the-draw');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
