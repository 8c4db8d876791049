// The storefront's front door: there is no public list of sales in the API, so this page
// explains, opens a sale by link or id, and lists the sales this browser visited.

import { loadJson } from './api.js';
import * as fmt from './format.js';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

document.getElementById('go').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = document.getElementById('sale-link');
  const error = document.getElementById('sale-link-error');
  const match = input.value.match(UUID);
  if (!match) {
    error.textContent = 'Paste the sale link you were given, or its id (a UUID).';
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  location.assign(`/sales/${match[0].toLowerCase()}`);
});

const recent = loadJson('flashsale.recent') || [];
if (recent.length) {
  const list = document.getElementById('recent');
  for (const r of recent) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `/sales/${encodeURIComponent(r.id)}`;
    a.textContent = r.name;
    const when = document.createElement('span');
    when.className = 'muted';
    when.textContent = ` — from ${fmt.when(r.starts_at)}`;
    li.append(a, when);
    list.append(li);
  }
  document.getElementById('recent-box').hidden = false;
}
