// Solves the door's proof of work off the page's thread (API.md v1.1, "the line"):
// finds a nonce whose SHA-256(challenge ":" nonce) has `bits` leading zero bits.
// Posts { tried } now and then (the page shows progress) and { nonce, tried } at the end.

/** Leading zero bits of a digest, first byte's high bit first. */
function zeroBits(bytes) {
  let bits = 0;
  for (const b of bytes) {
    if (b !== 0) return bits + Math.clz32(b) - 24;
    bits += 8;
  }
  return bits;
}

// Hashes in batches: one await per batch, not per hash, keeps crypto.subtle busy.
const BATCH = 512;

self.onmessage = async (event) => {
  const { challenge, bits } = event.data;
  const encoder = new TextEncoder();
  for (let base = 0; ; base += BATCH) {
    const nonces = Array.from({ length: BATCH }, (_, i) => (base + i).toString(36));
    const digests = await Promise.all(
      nonces.map((n) => crypto.subtle.digest('SHA-256', encoder.encode(`${challenge}:${n}`))),
    );
    const found = digests.findIndex((d) => zeroBits(new Uint8Array(d)) >= bits);
    if (found >= 0) {
      self.postMessage({ nonce: nonces[found], tried: base + found + 1 });
      return;
    }
    self.postMessage({ tried: base + BATCH });
  }
};
