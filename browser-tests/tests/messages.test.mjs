// Every error code the API can answer has a human message on the pages: the codes are
// read from the server's source (api/src), so a new code without words fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { KNOWN_CODES, explain } from '../../api/static/js/messages.js';

function rustFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? rustFiles(join(dir, e.name)) : e.name.endsWith('.rs') ? [join(dir, e.name)] : [],
  );
}

test('every error code of the API has a message and a next step', () => {
  const src = new URL('../../api/src', import.meta.url).pathname;
  const codes = new Set();
  const patterns = [/(?:S|StatusCode)::[A-Z_]+\s*,\s*"([a-z_]+)"/g, /\bcode:\s*"([a-z_]+)"/g];
  for (const file of rustFiles(src)) {
    const text = readFileSync(file, 'utf8');
    for (const re of patterns) for (const m of text.matchAll(re)) codes.add(m[1]);
  }
  assert.ok(codes.size > 25, `found the codes in the source (${codes.size})`);
  const missing = [...codes].filter((c) => !KNOWN_CODES.includes(c));
  assert.deepEqual(missing, [], 'codes without a message');
  for (const code of KNOWN_CODES) {
    const e = explain({ code, status: 400, detail: '' });
    assert.ok(e.title && e.next, `${code} has words and a next step`);
  }
});
