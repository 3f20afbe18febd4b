// Seeded pseudo-random numbers for the host side (data order, augmentation plans, init).
//
// Generator: xoshiro128** (Blackman & Vigna), 128-bit state, 32-bit outputs; the state is filled from the
// seed with splitmix32, which never yields four zero words. `fork(tag)` derives an independent stream from
// the seed and the tag only (not from draws made so far), so a plan part can be regenerated on its own.

const TWO_32 = 4294967296;

/** splitmix32 step: returns [output, next counter]. A bijection of the counter, so outputs are distinct. */
function splitmix32(counter: number): [number, number] {
  const next = (counter + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return [(z ^ (z >>> 15)) >>> 0, next];
}

/** FNV-1a over the UTF-16 code units of the tag (fork(3) and fork("3") are the same stream). */
function hashTag(tag: string | number): number {
  const s = String(tag);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class Rng {
  /** The 32-bit key the state was derived from (what fork() mixes the tag into). */
  readonly key: number;
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** `seed`: any safe integer; values beyond 32 bits fold their high word into the key. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`Rng: seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0, hi = Math.floor(seed / TWO_32) >>> 0;
    this.key = (lo ^ Math.imul(hi, 0x9e3779b9)) >>> 0;
    let c = this.key, out: number;
    [out, c] = splitmix32(c);
    this.s0 = out;
    [out, c] = splitmix32(c);
    this.s1 = out;
    [out, c] = splitmix32(c);
    this.s2 = out;
    [out, c] = splitmix32(c);
    this.s3 = out;
  }

  /** A generator with this exact xoshiro128** state (known-answer tests). Not all zero. */
  static fromState(state: ArrayLike<number>): Rng {
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = [state[0] >>> 0, state[1] >>> 0, state[2] >>> 0, state[3] >>> 0];
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) throw new Error("Rng.fromState: the all-zero state is invalid");
    return r;
  }

  /** Next 32-bit output, 0..2^32-1. */
  u32(): number {
    const s0 = this.s0, s1 = this.s1, s2 = this.s2 ^ s0, s3 = this.s3 ^ s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    this.s1 = s1 ^ s2;
    this.s0 = s0 ^ s3;
    this.s2 = s2 ^ (s1 << 9);
    this.s3 = rotl(s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  float(): number {
    return this.u32() / TWO_32;
  }

  /** Uniform integer 0..n-1 (1 <= n <= 2^32), unbiased: draws in the incomplete top range are rejected. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_32) throw new Error(`Rng.int: n must be 1..2^32, got ${n}`);
    const limit = TWO_32 - (TWO_32 % n); // largest multiple of n that fits in 32 bits
    for (;;) {
      const r = this.u32();
      if (r < limit) return r % n;
    }
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Standard normal (Box-Muller, one output per call so the stream position stays simple). */
  normal(): number {
    const u = (this.u32() + 0.5) / TWO_32; // in (0, 1): log never sees 0
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** An independent stream named by `tag`; depends only on this generator's key and the tag. */
  fork(tag: string | number): Rng {
    const [derived] = splitmix32((this.key ^ rotl(hashTag(tag), 16)) >>> 0);
    return new Rng(derived);
  }
}
