// The dashboard's sale editor: the create form, and the edit form of a sale (a PATCH of
// only the changed fields, with If-Match). A server 422 lands next to the field its
// `detail` names; problems the server cannot see (not a number) are caught first.

import { explain } from './messages.js';
import * as fmt from './format.js';

const $ = (id) => document.getElementById(id);

/** What the page gives this module: its API call and announcer. */
let page = null;
/** The sale being edited (null for a new one), with its ETag. */
let current = { sale: null, etag: null };

/** Wires the form; `ctx` is `{ call, announce, showError }`. */
export function initEditor(ctx) {
  page = ctx;
  $('sale-form').addEventListener('submit', saveSale);
  // Keep the mode and the rate field consistent: a fixed rate needs a number.
  $('f-mode').addEventListener('change', () => {
    $('f-rate').required = $('f-mode').value === 'fixed';
  });
}

/** `2025-05-14T10:00:00Z` → the value of a datetime-local input, in local time. */
function toLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const FIELDS = [...document.querySelectorAll('#sale-form [data-field]')];

function fieldInput(path) {
  return FIELDS.find((f) => f.dataset.field === path) || null;
}

function clearFieldErrors() {
  for (const f of FIELDS) {
    f.removeAttribute('aria-invalid');
    const err = document.getElementById(`${f.id}-error`);
    if (err) err.remove();
    const described = (f.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && x !== `${f.id}-error`);
    if (described.length) f.setAttribute('aria-describedby', described.join(' '));
    else f.removeAttribute('aria-describedby');
  }
  $('form-error').hidden = true;
}

/** Puts a message under the field named by `path` (API.md's `detail` prefix). */
function fieldError(path, message) {
  const input = fieldInput(path);
  if (!input) return false;
  input.setAttribute('aria-invalid', 'true');
  const p = document.createElement('p');
  p.className = 'field-error';
  p.id = `${input.id}-error`;
  p.textContent = message;
  input.closest('.field').append(p);
  input.setAttribute('aria-describedby', `${(input.getAttribute('aria-describedby') || '').trim()} ${p.id}`.trim());
  return true;
}

function fillForm(sale) {
  const v = (path, value) => {
    fieldInput(path).value = value ?? '';
  };
  const digits = fmt.currencyDigits(sale.price.currency);
  v('name', sale.name);
  v('sku', sale.sku);
  v('description', sale.description);
  v('price.amount_minor', (sale.price.amount_minor / 10 ** digits).toFixed(digits));
  v('price.currency', sale.price.currency);
  v('stock.total', sale.stock.total);
  v('per_user_limit', sale.per_user_limit);
  v('hold_ttl_seconds', sale.hold_ttl_seconds);
  v('starts_at', toLocalInput(sale.starts_at));
  v('ends_at', toLocalInput(sale.ends_at));
  v('admission.mode', sale.admission.mode);
  v('admission.checkout_p95_target_ms', sale.admission.checkout_p95_target_ms);
  v('admission.max_admit_per_second', sale.admission.max_admit_per_second);
  v('admission.max_active_shoppers', sale.admission.max_active_shoppers);
}

function blankSale() {
  const start = new Date(Date.now() + 15 * 60_000);
  start.setSeconds(0, 0);
  const end = new Date(start.getTime() + 24 * 3600_000);
  return {
    name: '',
    sku: '',
    description: '',
    price: { amount_minor: 0, currency: 'EUR' },
    stock: { total: 100 },
    per_user_limit: 2,
    hold_ttl_seconds: 600,
    starts_at: start.toISOString(),
    ends_at: end.toISOString(),
    admission: { mode: 'auto', checkout_p95_target_ms: 300, max_admit_per_second: null, max_active_shoppers: null },
  };
}

/** Opens the editor: blank for a new sale (`id` null), else the sale `id`. */
export async function openEditor(id) {
  clearFieldErrors();
  current = { sale: null, etag: null };
  const stock = fieldInput('stock.total');
  if (!id) {
    $('editor-title').textContent = 'New sale';
    $('save').textContent = 'Create sale';
    $('cancel-edit').href = '#/';
    stock.disabled = false;
    $('f-stock-hint').textContent = '1 to 1,000,000.';
    fillForm(blankSale());
    fieldInput('price.amount_minor').value = '';
    return;
  }
  $('editor-title').textContent = 'Edit sale';
  $('save').textContent = 'Save changes';
  $('cancel-edit').href = `#/sales/${id}`;
  stock.disabled = true;
  $('f-stock-hint').textContent = 'Change stock from the sale page (Add units).';
  try {
    const res = await page.call('GET', `/v1/admin/sales/${id}`);
    current = { sale: res.data, etag: res.headers.get('ETag') };
    fillForm(res.data);
  } catch (e) {
    page.showError($('form-error'), e);
  }
}

/** Reads the form into a create body; field problems the server cannot see (not a number). */
function readForm() {
  const problems = [];
  const text = (path) => fieldInput(path).value;
  const int = (path, { optional = false } = {}) => {
    const raw = text(path).trim();
    if (raw === '' && optional) return null;
    const n = Number(raw);
    if (raw === '' || !Number.isInteger(n)) {
      problems.push([path, 'enter a whole number']);
      return 0;
    }
    return n;
  };
  const num = (path) => {
    const raw = text(path).trim();
    if (raw === '') return null;
    const n = Number(raw);
    if (!Number.isFinite(n)) {
      problems.push([path, 'enter a number']);
      return null;
    }
    return n;
  };
  const instant = (path) => {
    const d = new Date(text(path));
    if (Number.isNaN(d.getTime())) {
      problems.push([path, 'enter a date and time']);
      return null;
    }
    return d.toISOString();
  };
  const currency = text('price.currency');
  const digits = fmt.currencyDigits(currency);
  const priceRaw = text('price.amount_minor').trim().replace(',', '.');
  let amount = 0;
  if (!/^\d+(\.\d+)?$/.test(priceRaw)) {
    problems.push(['price.amount_minor', 'enter a price such as 129.00']);
  } else {
    amount = Math.round(Number(priceRaw) * 10 ** digits);
  }
  const body = {
    name: text('name'),
    sku: text('sku').trim(),
    description: text('description'),
    price: { amount_minor: amount, currency },
    stock: { total: int('stock.total') },
    per_user_limit: int('per_user_limit'),
    hold_ttl_seconds: int('hold_ttl_seconds'),
    starts_at: instant('starts_at'),
    ends_at: instant('ends_at'),
    admission: {
      mode: text('admission.mode'),
      checkout_p95_target_ms: int('admission.checkout_p95_target_ms'),
      max_admit_per_second: num('admission.max_admit_per_second'),
      max_active_shoppers: int('admission.max_active_shoppers', { optional: true }),
    },
  };
  return { body, problems };
}

/** The fields of `body` that differ from `sale` (a PATCH sends only what changed). */
function changes(body, sale) {
  const patch = {};
  for (const k of ['name', 'sku', 'description', 'per_user_limit', 'hold_ttl_seconds']) {
    if (body[k] !== sale[k]) patch[k] = body[k];
  }
  if (body.price.amount_minor !== sale.price.amount_minor || body.price.currency !== sale.price.currency) {
    patch.price = body.price;
  }
  for (const k of ['starts_at', 'ends_at']) {
    if (Date.parse(body[k]) !== Date.parse(sale[k])) patch[k] = body[k];
  }
  const a = body.admission;
  const b = sale.admission;
  if (
    a.mode !== b.mode ||
    a.checkout_p95_target_ms !== b.checkout_p95_target_ms ||
    (a.max_admit_per_second ?? null) !== (b.max_admit_per_second ?? null) ||
    (a.max_active_shoppers ?? null) !== (b.max_active_shoppers ?? null)
  ) {
    patch.admission = a;
  }
  return patch;
}

async function saveSale(ev) {
  ev.preventDefault();
  clearFieldErrors();
  const { body, problems } = readForm();
  if (problems.length) {
    for (const [path, msg] of problems) fieldError(path, msg);
    fieldInput(problems[0][0]).focus();
    page.announce(`Please check ${problems.length === 1 ? 'one field' : `${problems.length} fields`}.`);
    return;
  }
  const btn = $('save');
  btn.disabled = true;
  try {
    let res;
    if (current.sale) {
      const patch = changes(body, current.sale);
      if (!Object.keys(patch).length) {
        location.hash = `#/sales/${current.sale.id}`;
        return;
      }
      res = await page.call('PATCH', `/v1/admin/sales/${current.sale.id}`, {
        body: patch,
        headers: current.etag ? { 'If-Match': current.etag } : {},
      });
      page.announce('Sale saved.');
    } else {
      res = await page.call('POST', '/v1/admin/sales', { body });
      page.announce('Sale created.');
    }
    location.hash = `#/sales/${res.data.id}`;
  } catch (e) {
    formFailed(e);
  } finally {
    btn.disabled = false;
  }
}

function formFailed(e) {
  if (e.code === 'invalid_field' || e.code === 'sale_locked') {
    // invalid_field: "stock.total: must be …"; sale_locked: "price cannot change once …".
    const m = e.code === 'invalid_field' ? e.detail.match(/^([a-z_.]+):\s*(.*)$/) : e.detail.match(/^([a-z_.]+)\s+(.*)$/);
    let path = m ? m[1] : '';
    if (path === 'price') path = 'price.amount_minor';
    if (m && fieldError(path, e.code === 'invalid_field' ? `${capital(m[2])}.` : explain(e, 'merchant').title)) {
      fieldInput(path).focus();
      page.announce(`${fieldInput(path).labels[0].textContent.trim()}: ${m[2]}`);
      return;
    }
  }
  page.showError($('form-error'), e);
}

function capital(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
