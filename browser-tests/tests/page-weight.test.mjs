// What the sale page costs over the wire, cold (empty cache) and warm (a second visit):
// every asset compressed and fingerprinted, so a second visit fetches only the page.
// Prints the weights and writes artifacts/page-weight.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BASE, PHONE, ARTIFACTS, openBrowser, createSale } from '../lib/harness.mjs';

/** Bytes over the wire (transferSize) and decoded, per resource, of the page just loaded. */
async function weights(page) {
  return page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const rows = [nav, ...performance.getEntriesByType('resource')]
      .filter((e) => !e.name.includes('/v1/'))
      .map((e) => ({ name: new URL(e.name).pathname, transfer: e.transferSize, decoded: e.decodedBodySize }));
    return rows;
  });
}

const sum = (rows, k) => rows.reduce((n, r) => n + r[k], 0);

test('the sale page is compressed when cold and costs only the page when warm', async () => {
  const sale = await createSale({ stock: { total: 20 } });
  const b = await openBrowser({ viewport: PHONE, name: 'weight' });
  try {
    const { page } = b;
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    await page.waitForLoadState('networkidle');
    const cold = await weights(page);
    await page.goto('about:blank');
    await page.goto(`${BASE}/sales/${sale.id}`);
    await page.getByRole('heading', { level: 1, name: sale.name }).waitFor();
    await page.waitForLoadState('networkidle');
    const warm = await weights(page);

    const report = {
      cold: { transfer_bytes: sum(cold, 'transfer'), decoded_bytes: sum(cold, 'decoded'), files: cold },
      warm: { transfer_bytes: sum(warm, 'transfer'), decoded_bytes: sum(warm, 'decoded'), files: warm },
    };
    writeFileSync(join(ARTIFACTS, 'page-weight.json'), JSON.stringify(report, null, 1));
    console.log(`page weight: cold ${report.cold.transfer_bytes} B over the wire (${report.cold.decoded_bytes} B decoded, ${cold.length} files); warm ${report.warm.transfer_bytes} B`);

    const assets = cold.filter((r) => r.name.startsWith('/static/'));
    assert.ok(assets.length >= 5, `the page loads its modules: ${JSON.stringify(cold)}`);
    for (const a of assets) {
      assert.match(a.name, /\.[0-9a-f]{12}\.(js|css)$/, `${a.name} is fingerprinted`);
    }
    assert.ok(report.cold.transfer_bytes < report.cold.decoded_bytes * 0.6, 'compressed over the wire');
    const warmAssets = warm.filter((r) => r.name.startsWith('/static/'));
    assert.equal(sum(warmAssets, 'transfer'), 0, `a second visit fetches no asset: ${JSON.stringify(warmAssets)}`);
    assert.deepEqual(b.errors, [], 'no script errors');
  } finally {
    await b.close();
  }
});
