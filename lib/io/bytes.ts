// Byte arrays joined end to end (PNG chunks, tar records): one copy into a new array.

/** The parts, in order, in one new Uint8Array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
