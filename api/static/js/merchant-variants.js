// The dashboard's variants of one sale (API.md v1.1, "variants and carts"): each
// variant's stock live (available, held, sold), a stock change per variant, and adding a
// variant before the start. A one-variant sale keeps the sale-wide stock form.

import * as fmt from './format.js';
import { explain } from './messages.js';

const $ = (id) => document.getElementById(id);

/** What the page gives this module: its API call, announcer, and where a new sale goes. */
let page = null;
let saleId = null;

/** Wires the forms; `ctx` is `{ call, announce, onSale(res) }`. */
export function initVariants(ctx) {
  page = ctx;
  $('variant-form').addEventListener('submit', addVariant);
  $('variant-rows').addEventListener('submit', changeVariantStock);
}

function fail(el, e) {
  const ex = explain(e, 'merchant');
  el.textContent = `${ex.title} ${e.detail || ''}`.trim();
  el.hidden = false;
}

function row(v) {
  const tr = document.createElement('tr');
  tr.dataset.variant = v.variant_id;
  const cells = [v.name || v.sku, v.sku, fmt.money(v.price)];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  for (const k of ['available', 'held', 'sold']) {
    const td = document.createElement('td');
    td.className = 'num';
    td.dataset.stock = k;
    tr.append(td);
  }
  const td = document.createElement('td');
  const form = document.createElement('form');
  form.className = 'inline-form compact';
  form.noValidate = true;
  form.dataset.variant = v.variant_id;
  const id = `vdelta-${v.variant_id}`;
  form.innerHTML = `<label class="sr-only" for="${id}">Units to add to ${v.sku}</label>
    <input id="${id}" type="number" step="1" inputmode="numeric" placeholder="±units">
    <button type="submit">Change</button><span class="field-error" hidden></span>`;
  td.append(form);
  tr.append(td);
  return tr;
}

function paintStock(tr, stock) {
  if (!stock) return;
  for (const k of ['available', 'held', 'sold']) tr.querySelector(`[data-stock="${k}"]`).textContent = fmt.count(stock[k]);
}

/** The variants table of `sale` (the admin sale): one row per variant. */
export function renderVariants(sale) {
  saleId = sale.id;
  const variants = Array.isArray(sale.variants) ? sale.variants : [];
  const several = variants.length > 1;
  // Shown for a sale of several variants, and before the start (to add one).
  $('variants-card').hidden = !several && sale.status !== 'scheduled';
  $('stock-form').hidden = several || sale.status === 'ended';
  $('variant-form').hidden = sale.status !== 'scheduled';
  const body = $('variant-rows');
  const rows = variants.map((v) => {
    const tr = body.querySelector(`tr[data-variant="${v.variant_id}"]`) || row(v);
    paintStock(tr, v.stock);
    return tr;
  });
  body.replaceChildren(...rows);
}

/** Each variant's live stock from `/stats` (`variants` with their stock). */
export function updateVariantStock(statsVariants) {
  if (!Array.isArray(statsVariants)) return;
  for (const v of statsVariants) {
    const tr = $('variant-rows').querySelector(`tr[data-variant="${v.variant_id}"]`);
    if (tr) paintStock(tr, v.stock);
  }
}

async function changeVariantStock(ev) {
  ev.preventDefault();
  const form = ev.target.closest('form[data-variant]');
  if (!form) return;
  const input = form.querySelector('input');
  const err = form.querySelector('.field-error');
  err.hidden = true;
  const delta = Number(input.value);
  if (input.value.trim() === '' || !Number.isInteger(delta) || delta === 0) {
    err.textContent = 'A whole number, e.g. 20 or -5.';
    err.hidden = false;
    input.focus();
    return;
  }
  try {
    const res = await page.call('POST', `/v1/admin/sales/${saleId}/variants/${form.dataset.variant}/stock`, { body: { delta } });
    input.value = '';
    page.onSale(res);
    const v = res.data.variants.find((x) => x.variant_id === form.dataset.variant);
    page.announce(`Stock of ${v ? v.sku : 'the variant'} changed by ${delta}.`);
  } catch (e) {
    fail(err, e);
    input.focus();
  }
}

async function addVariant(ev) {
  ev.preventDefault();
  const err = $('variant-error');
  err.hidden = true;
  const price = Math.round(Number(String($('v-price').value).replace(',', '.')) * 100);
  const body = {
    sku: $('v-sku').value.trim(),
    name: $('v-name').value.trim(),
    price: { amount_minor: price, currency: $('v-currency').value || 'EUR' },
    stock: { total: Number($('v-stock').value) },
  };
  if ($('v-limit').value.trim()) body.per_user_limit = Number($('v-limit').value);
  try {
    const res = await page.call('POST', `/v1/admin/sales/${saleId}/variants`, { body });
    $('variant-form').reset();
    page.onSale(res);
    page.announce(`Variant ${body.sku} added.`);
  } catch (e) {
    fail(err, e);
  }
}
