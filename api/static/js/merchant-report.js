// The dashboard's post-event report of one sale (API.md v1.1, "after the purchase"):
// the line's and the orders' figures, the admission wait shoppers were told against the
// one they had, and the orders CSV. Read "so far" while the sale runs, final once over.

import * as fmt from './format.js';
import { ApiError } from './api.js';
import { explain } from './messages.js';

const $ = (id) => document.getElementById(id);

/** What the page gives this module: its API call and the merchant's token. */
let page = null;
let saleId = null;
/** Whether the shown sale is over (its figures final). */
let over = false;

/** Wires the buttons; `ctx` is `{ call, token() }`. */
export function initReport(ctx) {
  page = ctx;
  $('report-refresh').addEventListener('click', () => saleId && loadReport(saleId, over));
  $('report-csv').addEventListener('click', downloadCsv);
}

function fail(e) {
  const ex = explain(e, 'merchant');
  const el = $('report-error');
  el.textContent = `${ex.title} ${e.detail || ''}`.trim();
  el.hidden = false;
}

function seconds(s) {
  if (s === null || s === undefined) return '—';
  return s < 60 ? `${s} s` : fmt.wait(s);
}

/** Reads and shows the report of sale `id`; `ended` says whether the figures are final. */
export async function loadReport(id, ended) {
  saleId = id;
  over = Boolean(ended);
  $('report-error').hidden = true;
  $('report-when').textContent = over ? '' : '(so far)';
  try {
    const { data } = await page.call('GET', `/v1/admin/sales/${id}/report`);
    if (saleId !== id) return;
    render(data);
  } catch (e) {
    fail(e);
  }
}

function render(r) {
  const counts = ['joined', 'prequeued', 'admitted', 'no_shows', 'reserved', 'orders', 'cancelled', 'refunded', 'units_sold'];
  for (const k of counts) $(`r-${k}`).textContent = fmt.count(r[k]);
  $('r-revenue').textContent = fmt.money(r.revenue);
  $('r-sold_out_at').textContent = r.sold_out_at ? fmt.when(r.sold_out_at) : 'not sold out';
  const w = r.admission_wait_seconds;
  $('r-wait-p50').textContent = `${seconds(w.estimated_p50)} told · ${seconds(w.actual_p50)} waited`;
  $('r-wait-p95').textContent = `${seconds(w.estimated_p95)} told · ${seconds(w.actual_p95)} waited`;
  const rows = (r.variants || []).map((v) => {
    const tr = document.createElement('tr');
    for (const text of [v.variant_id.slice(0, 8), fmt.count(v.units_sold), v.sold_out_at ? fmt.when(v.sold_out_at) : '—']) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  $('report-variants').replaceChildren(...rows);
}

/** Fetches the CSV with the bearer token (a plain link cannot send it) and saves it. */
async function downloadCsv() {
  if (!saleId) return;
  const button = $('report-csv');
  button.disabled = true;
  $('report-error').hidden = true;
  try {
    const res = await fetch(`/v1/admin/sales/${saleId}/orders.csv`, {
      headers: { Authorization: `Bearer ${page.token()}`, Accept: 'text/csv' },
    });
    if (!res.ok) {
      throw new ApiError(res.status, await res.json().catch(() => null));
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = `orders-${saleId}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    fail(e instanceof ApiError ? e : new ApiError(0, { code: 'network_error', detail: String(e && e.message) }));
  } finally {
    button.disabled = false;
  }
}
