import assert from "node:assert/strict";
import { Rng } from "../lib/data/rng.ts";
import { freshSeed } from "./util.ts";

const draws = (r: Rng, k: number) => Array.from({ length: k }, () => r.u32());

Deno.test("rng: xoshiro128** known answers from state (1, 2, 3, 4)", () => {
  // First outputs of the reference C implementation for s = {1, 2, 3, 4}.
  assert.deepEqual(draws(Rng.fromState([1, 2, 3, 4]), 3), [11520, 0, 5927040]);
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), /all-zero/);
});

Deno.test("rng: same seed gives the same stream, different seeds differ", () => {
  const seed = freshSeed("rng determinism");
  assert.deepEqual(draws(new Rng(seed), 100), draws(new Rng(seed), 100));
  assert.notDeepEqual(draws(new Rng(seed), 100), draws(new Rng((seed + 1) >>> 0), 100));
  // Seeds beyond 32 bits still matter.
  assert.notDeepEqual(draws(new Rng(5), 8), draws(new Rng(5 + 2 ** 32), 8));
  assert.throws(() => new Rng(0.5), /safe integer/);
});

Deno.test("rng: fork depends on seed and tag only", () => {
  const seed = freshSeed("rng fork");
  const a = new Rng(seed), b = new Rng(seed);
  b.u32(); // draws on the parent do not change its forks
  assert.deepEqual(draws(a.fork("flip"), 20), draws(b.fork("flip"), 20));
  assert.notDeepEqual(draws(a.fork("flip"), 20), draws(a.fork("perm"), 20));
  assert.notDeepEqual(draws(a.fork(1), 20), draws(a.fork(2), 20));
  assert.notDeepEqual(draws(a.fork("x"), 20), draws(new Rng(seed), 20));
  assert.deepEqual(draws(a.fork("p").fork(3), 5), draws(b.fork("p").fork(3), 5));
  assert.notDeepEqual(draws(a.fork("p").fork(3), 5), draws(a.fork("p").fork(4), 5));
});

Deno.test("rng: int(n) is in range and unbiased (chi-square)", () => {
  const rng = new Rng(freshSeed("rng int"));
  for (const n of [2, 7, 10, 33]) {
    const draws = 20000 * n;
    const counts = new Float64Array(n);
    for (let i = 0; i < draws; i++) {
      const v = rng.int(n);
      assert.ok(Number.isInteger(v) && v >= 0 && v < n);
      counts[v]++;
    }
    const expected = draws / n;
    let chi2 = 0;
    for (const c of counts) chi2 += (c - expected) ** 2 / expected;
    // chi-square with n-1 dof: mean n-1, sd sqrt(2(n-1)); a loose bound that a biased int() would exceed.
    const dof = n - 1;
    assert.ok(chi2 < dof + 8 * Math.sqrt(2 * dof) + 10, `n=${n}: chi2=${chi2.toFixed(1)} (dof ${dof})`);
  }
  // A large n where modulo bias would be gross (values < 2^32 - n would be twice as likely): thirds.
  const n = 3 * 2 ** 30, thirds = [0, 0, 0];
  for (let i = 0; i < 30000; i++) thirds[Math.floor(rng.int(n) / 2 ** 30)]++;
  for (const c of thirds) assert.ok(Math.abs(c - 10000) < 600, `thirds ${thirds}`);
  assert.equal(rng.int(1), 0);
  assert.throws(() => rng.int(0));
});

Deno.test("rng: float, uniform and normal", () => {
  const rng = new Rng(freshSeed("rng float"));
  let sum = 0, sum2 = 0;
  const k = 50000;
  for (let i = 0; i < k; i++) {
    const f = rng.float();
    assert.ok(f >= 0 && f < 1);
    const u = rng.uniform(-3, 5);
    assert.ok(u >= -3 && u < 5);
    const z = rng.normal();
    sum += z;
    sum2 += z * z;
  }
  assert.ok(Math.abs(sum / k) < 0.03, `normal mean ${sum / k}`);
  assert.ok(Math.abs(sum2 / k - 1) < 0.05, `normal variance ${sum2 / k}`);
});

Deno.test("rng: permutation is a permutation, and seeds give different ones", () => {
  const seed = freshSeed("rng permutation");
  for (const n of [0, 1, 2, 37, 1000]) {
    const p = new Rng(seed).permutation(n);
    assert.equal(p.length, n);
    assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
  }
  assert.deepEqual(new Rng(seed).permutation(100), new Rng(seed).permutation(100));
  assert.notDeepEqual(new Rng(seed).permutation(100), new Rng(seed + 1).permutation(100));
  // Every element lands at position 0 about equally often.
  const rng = new Rng(seed), counts = new Float64Array(5);
  for (let i = 0; i < 20000; i++) counts[rng.permutation(5)[0]]++;
  for (const c of counts) assert.ok(Math.abs(c - 4000) < 300, `first-slot counts ${counts}`);
});
