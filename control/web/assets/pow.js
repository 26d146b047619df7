// The proof of work a meeting under attack asks of a password join (README.md, "Proof of
// work"), solved off the page's thread: `solutions` nonces n, in increasing order, each making
// SHA-256(challenge || n as 8 bytes big-endian) begin with `difficulty` zero bits. The hashes
// are the browser's own (WebCrypto), asked for in batches, since each is asynchronous.
"use strict";

const BATCH = 4096;

function zeroBits(hash) {
  let bits = 0;
  for (const byte of hash) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

self.onmessage = async ({data: {challenge, difficulty, solutions}}) => {
  const prefix = new TextEncoder().encode(challenge);
  const nonces = [];
  for (let start = 0; nonces.length < solutions; start += BATCH) {
    const digests = await Promise.all(Array.from({length: BATCH}, (_, i) => {
      const input = new Uint8Array(prefix.length + 8);
      input.set(prefix);
      const view = new DataView(input.buffer);
      const n = start + i;
      view.setUint32(prefix.length, Math.floor(n / 2 ** 32));
      view.setUint32(prefix.length + 4, n >>> 0);
      return crypto.subtle.digest("SHA-256", input);
    }));
    digests.forEach((digest, i) => {
      if (nonces.length < solutions && zeroBits(new Uint8Array(digest)) >= difficulty) {
        nonces.push(start + i);
      }
    });
    self.postMessage({found: nonces.length, solutions});
  }
  self.postMessage({nonces});
};
