// Formatting shared by the storefront and the dashboard, in the visitor's locale.

/** Digits after the decimal point of a currency (EUR 2, JPY 0, …). */
export function currencyDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions()
      .maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** `{ amount_minor, currency }` as a price, e.g. "€129.00". */
export function money(m, times = 1) {
  if (!m) return '';
  const digits = currencyDigits(m.currency);
  const value = (m.amount_minor * times) / 10 ** digits;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency }).format(value);
  } catch {
    return `${value.toFixed(digits)} ${m.currency}`;
  }
}

/** A whole number with grouping, e.g. "4,382". */
export function count(n) {
  return new Intl.NumberFormat().format(n);
}

/** A countdown: "9:41", "1:02:03", "2 d 03:04:05"; never negative. */
export function clock(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const two = (x) => String(x).padStart(2, '0');
  if (d) return `${d} d ${two(h)}:${two(m)}:${two(s)}`;
  if (h) return `${h}:${two(m)}:${two(s)}`;
  return `${m}:${two(s)}`;
}

/** A countdown in words for screen readers: "9 minutes 41 seconds". */
export function clockWords(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const parts = [];
  for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]]) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (n) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`);
  }
  return parts.slice(0, 2).join(' ') || '0 seconds';
}

/** An estimated wait in words: "less than a minute", "about 4 minutes". */
export function wait(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 60) return 'under a minute';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m ? `about ${h} h ${m} min` : `about ${h} h`;
}

/** A moment as local date and time, e.g. "Tue 14 May, 10:00". */
export function when(iso) {
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  return d.toLocaleString(undefined, opts);
}

/** A time of day with seconds, e.g. "10:00:42". */
export function timeOfDay(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
