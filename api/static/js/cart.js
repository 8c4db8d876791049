// The sale page's cart: what an admitted shopper picks (a quantity of a one-variant
// sale, or lines of several variants — sizes, tiers), the body of the reserve call, the
// lines a sold-out answer names, and the lines of a hold and an order (API.md v1.1,
// "variants and carts"). A one-variant sale keeps the v1 page and the v1 body.

import { serverNow } from './api.js';
import * as fmt from './format.js';
import { $, deadlines, deadlineFired, showView, announce } from './page.js';
import { sale, tick } from './storefront.js';
import { showDrawOnce } from './line.js';

/** The sale's variants when it has more than one (the cart page), else null. */
export function cartVariants() {
  return sale && Array.isArray(sale.variants) && sale.variants.length > 1 ? sale.variants : null;
}

function variantName(variantId) {
  const v = (sale && sale.variants || []).find((x) => x.variant_id === variantId);
  return v ? v.name || v.sku : 'item';
}

function options(select, max, from) {
  if (select.options.length === max - from + 1 && select.dataset.from === String(from)) return;
  select.dataset.from = String(from);
  select.replaceChildren(
    ...Array.from({ length: max - from + 1 }, (_, i) => new Option(String(i + from), String(i + from))),
  );
}

/** One row per variant: its name, price, what is left and a quantity (0 = none). */
function renderVariantRows(variants) {
  const box = $('variants');
  const limit = Math.max(1, sale.per_user_limit || 1);
  for (const v of variants) {
    let row = box.querySelector(`[data-variant="${v.variant_id}"]`);
    if (!row) {
      row = document.createElement('div');
      row.className = 'variant';
      row.dataset.variant = v.variant_id;
      const id = `qty-${v.variant_id}`;
      row.innerHTML = `<label for="${id}"><span class="v-name"></span> <span class="v-price"></span></label>
        <span class="v-left"></span><select id="${id}" name="${id}"></select><span class="v-short" role="status"></span>`;
      row.querySelector('.v-name').textContent = v.name || v.sku;
      box.append(row);
    }
    const left = v.stock ? v.stock.available : 0;
    const max = Math.min(limit, v.per_user_limit || limit, Math.max(left, 0));
    row.querySelector('.v-price').textContent = fmt.money(v.price);
    row.querySelector('.v-left').textContent = left > 0 ? `${fmt.count(left)} left` : 'Sold out';
    row.dataset.soldOut = left > 0 ? 'false' : 'true';
    const select = row.querySelector('select');
    options(select, Math.max(max, 0), 0);
    select.disabled = max <= 0;
  }
  box.hidden = false;
}

/** Repaints what is left of each variant on the cart (after the sale data refreshed). */
export function refreshCart() {
  const variants = cartVariants();
  if (variants) renderVariantRows(variants);
}

/** The admitted view: the turn's countdown and what the shopper may pick. */
export function showAdmitted(t) {
  deadlines.admission = Date.parse(t.admission_expires_at);
  deadlineFired.admission = false;
  const variants = cartVariants();
  $('quantity-field').hidden = Boolean(variants);
  if (variants) renderVariantRows(variants);
  else {
    $('variants').hidden = true;
    options($('quantity'), Math.max(1, sale ? sale.per_user_limit : 1), 1);
  }
  const changed = showView('admitted', { focus: true });
  tick();
  showDrawOnce(t);
  if (changed) {
    announce(`It's your turn! Reserve within ${fmt.clockWords(deadlines.admission - serverNow())}.`, { force: true });
  }
}

/** The reserve body: `{ quantity }` for a one-variant sale, `{ lines }` for a cart; null when nothing is picked. */
export function cartBody() {
  const variants = cartVariants();
  if (!variants) return { quantity: Number($('quantity').value) };
  const lines = [];
  for (const row of $('variants').querySelectorAll('[data-variant]')) {
    row.querySelector('.v-short').textContent = '';
    const quantity = Number(row.querySelector('select').value);
    if (quantity > 0) lines.push({ variant_id: row.dataset.variant, quantity });
  }
  return lines.length ? { lines } : null;
}

/**
 * A cart the stock could not serve (409 sold_out with `lines`): marks each short line
 * with what is left and keeps the shopper on the cart. False when the page should show
 * the sale as sold out instead (a one-variant sale, or nothing left anywhere).
 */
export function showShortLines(err) {
  const variants = cartVariants();
  const lines = (err.problem && err.problem.lines) || [];
  if (!variants || !lines.length) return false;
  if (variants.every((v) => !v.stock || v.stock.available <= 0)) return false;
  const words = [];
  for (const l of lines) {
    const row = $('variants').querySelector(`[data-variant="${l.variant_id}"]`);
    const text = l.available > 0 ? `Only ${fmt.count(l.available)} left` : 'Sold out';
    if (row) row.querySelector('.v-short').textContent = text;
    words.push(`${variantName(l.variant_id)}: ${text.toLowerCase()}`);
  }
  announce(`Nothing was held — ${words.join('; ')}. Change your picks and reserve again.`, { force: true });
  return true;
}

/** "2 × EU 42, 1 × EU 43" for a hold's or an order's lines; null for a one-variant sale. */
export function linesText(lines) {
  if (!cartVariants() || !Array.isArray(lines) || !lines.length) return null;
  return lines.map((l) => `${l.quantity} × ${variantName(l.variant_id)}`).join(', ');
}

/** What a hold's lines cost (each line at its variant's price), in the sale's currency. */
export function linesTotal(lines) {
  const prices = new Map((sale.variants || []).map((v) => [v.variant_id, v.price]));
  let minor = 0;
  let currency = sale.price ? sale.price.currency : undefined;
  for (const l of lines) {
    const p = prices.get(l.variant_id);
    if (!p) return null;
    minor += p.amount_minor * l.quantity;
    currency = p.currency;
  }
  return { amount_minor: minor, currency };
}

/** The order's lines on the confirmation (variant, SKU, quantity, amount) of a cart sale. */
export function renderOrderLines(order) {
  const list = $('o-lines');
  const lines = cartVariants() && Array.isArray(order.lines) && order.lines.length ? order.lines : null;
  list.hidden = !lines;
  if (!lines) return;
  list.replaceChildren(
    ...lines.map((l) => {
      const li = document.createElement('li');
      li.textContent = `${l.quantity} × ${variantName(l.variant_id)} (${l.sku}) — ${fmt.money(l.amount)}`;
      return li;
    }),
  );
}
