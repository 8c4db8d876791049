// A shopper in line sees their position fall and gets admitted: a fixed, slow admission
// rate and a few shoppers ahead who joined through the API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, PHONE, openBrowser, shot, createSale, shopperJoins } from '../lib/harness.mjs';

test('a shopper in line sees their position fall and gets admitted', async () => {
  const sale = await createSale({
    stock: { total: 100 },
    admission: { mode: 'fixed', max_admit_per_second: 0.5, checkout_p95_target_ms: 300 },
  });
  for (let i = 0; i < 5; i += 1) await shopperJoins(sale.id);
  const b = await openBrowser({ viewport: PHONE, name: 'queue' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('button', { name: 'Buy now' }).click();
    await page.getByRole('heading', { name: "You're in line" }).waitFor();
    const position = await page.locator('#q-position').textContent();
    assert.match(position, /^#6$/, 'five shoppers joined first');
    const box = await page.locator('#q-position').boundingBox();
    const progress = page.getByRole('progressbar', { name: 'Progress through the line' });
    assert.match(await progress.getAttribute('aria-valuetext'), /^\d+ people ahead of you$/);
    await shot(page, 'phone-05-waiting');

    // A refresh keeps the same place (the session lives in localStorage).
    await page.reload();
    await page.getByRole('heading', { name: "You're in line" }).waitFor();
    assert.equal(await page.locator('#q-position').textContent(), position);

    const seen = [];
    const admitted = page.getByRole('heading', { name: "It's your turn!" });
    const deadline = Date.now() + 40_000;
    while (!(await admitted.isVisible())) {
      assert.ok(Date.now() < deadline, `not admitted in time; people ahead seen: ${seen}`);
      if (await page.locator('#q-ahead').isVisible()) {
        const ahead = Number(await page.locator('#q-ahead').textContent());
        if (seen[seen.length - 1] !== ahead) {
          seen.push(ahead);
          if (seen.length === 2) await shot(page, 'phone-06-waiting-moved');
          // No layout shift: the numbers change in place.
          assert.deepEqual(await page.locator('#q-position').boundingBox(), box);
        }
      }
      await page.waitForTimeout(250);
    }
    assert.ok(seen.length >= 2, `the number of people ahead changed at least once: ${seen}`);
    for (let i = 1; i < seen.length; i += 1) assert.ok(seen[i] < seen[i - 1], `it only falls: ${seen}`);
    await shot(page, 'phone-07-admitted-after-wait');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
