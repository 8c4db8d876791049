// The one way the pages talk to the HTTP API (API.md): JSON in and out, bearer tokens,
// problem+json errors turned into ApiError with the stable `code`, Retry-After parsed,
// and the server's clock estimated from the Date header so countdowns agree with it.

/** An error answer (or a failed network call, code `network_error`). */
export class ApiError extends Error {
  constructor(status, problem, retryAfterSeconds) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || (status ? `http_${status}` : 'network_error');
    this.detail = (problem && problem.detail) || '';
    /** The whole problem document (extra members such as a cart's short `lines`). */
    this.problem = problem || null;
    this.retryAfter = retryAfterSeconds;
  }
}

let skewMs = 0;

/** Milliseconds since the epoch on the server's clock (as far as the Date header tells). */
export function serverNow() {
  return Date.now() + skewMs;
}

function learnClock(res) {
  const date = Date.parse(res.headers.get('Date') || '');
  if (Number.isNaN(date)) return;
  const diff = date - Date.now();
  // The header has one-second resolution: only correct clocks that are clearly off.
  skewMs = Math.abs(diff) > 2500 ? diff : 0;
}

function retryAfterSeconds(res) {
  const raw = res.headers.get('Retry-After');
  if (!raw) return undefined;
  const n = Number(raw);
  if (Number.isFinite(n)) return Math.max(0, Math.ceil(n));
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * Calls the API. Resolves to { status, data, headers }; rejects with ApiError.
 * @param {string} method
 * @param {string} path
 * @param {{token?: string, body?: unknown, headers?: Record<string,string>, signal?: AbortSignal,
 *          cache?: RequestCache}} [opts]
 */
export async function api(method, path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  const init = { method, headers, signal: opts.signal, cache: opts.cache || 'default' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, { code: 'network_error', detail: String(e && e.message) });
  }
  learnClock(res);
  const text = res.status === 204 ? '' : await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw new ApiError(res.status, data, retryAfterSeconds(res));
  return { status: res.status, data, headers: res.headers };
}

/** A fresh key for one attempt of a non-repeatable call (Idempotency-Key). */
export function newKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Reads a JSON value from localStorage (null when absent or unreadable). */
export function loadJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

/** Writes (or, for null, removes) a JSON value in localStorage. */
export function saveJson(key, value) {
  try {
    if (value === null || value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Private mode or a full quota: the page still works, it only forgets on reload.
  }
}
