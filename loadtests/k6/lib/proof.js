// The door of the line for k6 shoppers (API.md v1.1, "the line"): a join carries
// `X-Join-Proof: <challenge>:<nonce>` where SHA-256(challenge ":" nonce) has the
// challenge's leading zero bits. Rehearsal sales ask for a few bits
// (`admission.proof_difficulty_bits`, loadtests/lib/env.sh), so solving costs a
// shopper tens of hashes — real work, never a bypass.
import crypto from 'k6/crypto';
import { Trend } from 'k6/metrics';

/** The difficulty each solved challenge asked for (bits; it rises per address). */
const proofBits = new Trend('proof_bits');
/** How long solving a challenge took this client. */
const proofSolveTime = new Trend('proof_solve_time', true);

/** Leading zero bits of `bytes` (a Uint8Array), first byte's high bit first. */
export function leadingZeroBits(bytes) {
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

/** A nonce for `challenge` with at least `bits` leading zero bits. */
export function solve(challenge, bits) {
  for (let n = 0; ; n++) {
    const nonce = n.toString(36);
    const digest = new Uint8Array(crypto.sha256(`${challenge}:${nonce}`, 'binary'));
    if (leadingZeroBits(digest) >= bits) return nonce;
  }
}

/** The `X-Join-Proof` header value for a `201` challenge answer's JSON. */
export function proofFor(issued) {
  const started = Date.now();
  const nonce = solve(issued.challenge, issued.difficulty_bits);
  proofSolveTime.add(Date.now() - started);
  proofBits.add(issued.difficulty_bits);
  return `${issued.challenge}:${nonce}`;
}
