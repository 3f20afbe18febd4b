import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { jacobiEigh } from "../lib/data/jacobi.ts";
import { readSafetensors } from "../lib/io/safetensors.ts";

// Fresh random matrices every run; the seed is printed in failure messages so a failure can be replayed.
const SEED = (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function randomSymmetric(n: number, rand: () => number, kind: "plain" | "covariance"): Float64Array {
  const a = new Float64Array(n * n);
  if (kind === "plain") {
    for (let i = 0; i < n; i++) {
      for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = gaussian(rand);
    }
    return a;
  }
  // Covariance of samples with correlated columns (widely spread eigenvalues, like a patch covariance).
  const rows = 3 * n;
  const mix = Array.from({ length: n * n }, () => gaussian(rand) * Math.exp(-3 * rand()));
  const x = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const z = Array.from({ length: n }, () => gaussian(rand));
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k <= j; k++) s += z[k] * mix[k * n + j] * Math.pow(0.1, j - k);
      x[r * n + j] = s;
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let r = 0; r < rows; r++) s += x[r * n + i] * x[r * n + j];
      a[i * n + j] = a[j * n + i] = s / rows;
    }
  }
  return a;
}

function frobenius(a: Float64Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s);
}

function checkDecomposition(a: Float64Array, n: number, what: string): void {
  const { values, vectors } = jacobiEigh(a, n);
  assert.equal(values.length, n);
  assert.equal(vectors.length, n * n);
  const scale = Math.max(frobenius(a), Number.MIN_VALUE);
  for (let j = 1; j < n; j++) assert.ok(values[j] <= values[j - 1], `${what}: values not descending`);
  let maxResidual = 0;
  let maxOrtho = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      // (A V - V Λ)_ij
      let av = 0;
      for (let k = 0; k < n; k++) av += a[i * n + k] * vectors[k * n + j];
      maxResidual = Math.max(maxResidual, Math.abs(av - vectors[i * n + j] * values[j]));
      // (Vᵀ V - I)_ij
      let vv = 0;
      for (let k = 0; k < n; k++) vv += vectors[k * n + i] * vectors[k * n + j];
      maxOrtho = Math.max(maxOrtho, Math.abs(vv - (i === j ? 1 : 0)));
    }
  }
  assert.ok(
    maxResidual <= 1e-10 * scale,
    `${what}: |AV - VΛ| = ${maxResidual} (scale ${scale}) seed ${SEED}`,
  );
  assert.ok(maxOrtho <= 1e-10, `${what}: |VᵀV - I| = ${maxOrtho} seed ${SEED}`);
  // Trace is preserved.
  let trace = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    trace += a[i * n + i];
    sum += values[i];
  }
  assert.ok(Math.abs(trace - sum) <= 1e-10 * scale, `${what}: trace ${trace} vs sum of eigenvalues ${sum}`);
}

Deno.test("jacobi: A·V = V·Λ and VᵀV = I on fresh random symmetric matrices", () => {
  const rand = mulberry32(SEED);
  for (const n of [1, 2, 3, 5, 12, 12, 12, 24, 40]) {
    checkDecomposition(randomSymmetric(n, rand, "plain"), n, `plain n=${n}`);
    checkDecomposition(randomSymmetric(n, rand, "covariance"), n, `covariance n=${n}`);
  }
});

Deno.test("jacobi: special matrices (zero, diagonal, identity-degenerate, tiny/huge scale)", () => {
  const n = 12;
  const zero = jacobiEigh(new Float64Array(n * n), n);
  assert.deepEqual(Array.from(zero.values), new Array(n).fill(0));
  assert.equal(zero.sweeps, 0);
  const diag = new Float64Array(n * n);
  for (let i = 0; i < n; i++) diag[i * n + i] = (i * 7) % n - 3;
  const d = jacobiEigh(diag, n);
  assert.deepEqual(
    Array.from(d.values),
    Array.from({ length: n }, (_, i) => (i * 7) % n - 3).sort((x, y) => y - x),
  );
  const rand = mulberry32(SEED ^ 0x9e3779b9);
  for (const s of [1e-150, 1e150]) {
    const a = randomSymmetric(n, rand, "covariance").map((x) => x * s);
    checkDecomposition(a, n, `scaled ${s}`);
  }
  // Degenerate: I + u uᵀ has eigenvalue 1 with multiplicity n-1.
  const u = Array.from({ length: n }, () => gaussian(rand));
  const deg = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) deg[i * n + j] = (i === j ? 1 : 0) + u[i] * u[j];
  }
  checkDecomposition(deg, n, "degenerate");
});

Deno.test("jacobi: eigenvalues match torch.linalg.eigh (tests/fixtures/eigh.safetensors)", () => {
  const t = readSafetensors(readFileSync(new URL("./fixtures/eigh.safetensors", import.meta.url)));
  let count = 0;
  for (let k = 0; t[`matrix.${k}`] !== undefined; k++, count++) {
    const a = t[`matrix.${k}`];
    const expected = t[`eigenvalues.${k}`].data as Float64Array; // ascending
    const n = a.shape[0];
    assert.equal(a.dtype, "F64");
    assert.deepEqual(a.shape, [n, n]);
    const { values } = jacobiEigh(a.data as Float64Array, n);
    const largest = Math.max(...Array.from(expected, Math.abs));
    for (let j = 0; j < n; j++) {
      const e = expected[n - 1 - j];
      assert.ok(
        Math.abs(values[j] - e) <= 1e-10 * largest,
        `matrix ${k} (n=${n}) eigenvalue ${j}: jacobi ${values[j]} vs torch ${e}`,
      );
    }
    checkDecomposition(a.data as Float64Array, n, `fixture matrix ${k}`);
  }
  assert.ok(count >= 7, `expected at least 7 fixture matrices, found ${count}`);
});

Deno.test("jacobi: input validation gives clear errors", () => {
  const ok = new Float64Array([2, 1, 1, 3]);
  assert.throws(() => jacobiEigh(new Float64Array([1, 2, 3, 4]), 2), /not symmetric/);
  assert.throws(() => jacobiEigh(new Float64Array([1, NaN, NaN, 1]), 2), /non-finite/);
  assert.throws(() => jacobiEigh(new Float64Array([1, 0, 0, Infinity]), 2), /non-finite/);
  assert.throws(() => jacobiEigh(ok, 3), /expected 9 elements/);
  assert.throws(() => jacobiEigh(ok, 0), /positive integer/);
  assert.throws(
    () => jacobiEigh(randomSymmetric(12, mulberry32(SEED), "plain"), 12, { maxSweeps: 1 }),
    /not converged/,
  );
  // Tiny asymmetry (rounding) is accepted; only the upper triangle is used.
  const r = jacobiEigh(new Float64Array([2, 1, 1 + 1e-14, 3]), 2);
  assert.ok(Math.abs(r.values[0] - (2.5 + Math.sqrt(1.25))) < 1e-14);
});
