import assert from "node:assert/strict";
import { CIFAR_MEAN, CIFAR_STD, IMAGE_BYTES } from "../lib/data/loader.ts";
import { patchCovariance, whiteningWeights } from "../lib/data/whiten.ts";
import { freshSeed, testRng } from "./util.ts";

/** Random images with spatial and channel correlation, so the covariance has a spread of eigenvalues. */
function smoothImages(n: number, seed: number): Uint8Array {
  const rand = testRng(seed);
  const out = new Uint8Array(n * IMAGE_BYTES);
  for (let i = 0; i < n; i++) {
    const [fy, fx, ph, base] = [rand() * 0.5, rand() * 0.5, rand() * 6.3, rand() * 200];
    for (let c = 0; c < 3; c++) {
      for (let r = 0; r < 32; r++) {
        for (let x = 0; x < 32; x++) {
          const v = base + 40 * Math.sin(fy * r + fx * x + ph + c) + 20 * (rand() - 0.5) + 10 * c;
          out[i * IMAGE_BYTES + c * 1024 + r * 32 + x] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
  }
  return out;
}

/** Covariance straight from the definition: the patch matrix P (unfold), then P^T P / rows. */
function directCovariance(images: Uint8Array, n: number): Float64Array {
  const rows: number[][] = [];
  const px = (i: number, c: number, r: number, x: number) =>
    (images[i * IMAGE_BYTES + c * 1024 + r * 32 + x] / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c];
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < 31; r++) {
      for (let x = 0; x < 31; x++) {
        const row: number[] = [];
        for (let c = 0; c < 3; c++) {
          for (let h = 0; h < 2; h++) for (let w = 0; w < 2; w++) row.push(px(i, c, r + h, x + w));
        }
        rows.push(row);
      }
    }
  }
  const cov = new Float64Array(144);
  for (let a = 0; a < 12; a++) {
    for (let b = 0; b < 12; b++) {
      let s = 0;
      for (const row of rows) s += row[a] * row[b];
      cov[a * 12 + b] = s / rows.length;
    }
  }
  return cov;
}

/** w_j . C . w_k for filters j, k of a [24][12] weight. */
function quad(weight: Float64Array, cov: Float64Array, j: number, k: number): number {
  let s = 0;
  for (let a = 0; a < 12; a++) {
    for (let b = 0; b < 12; b++) s += weight[j * 12 + a] * cov[a * 12 + b] * weight[k * 12 + b];
  }
  return s;
}

Deno.test("whiten: patch covariance matches the direct computation", () => {
  const images = smoothImages(20, freshSeed("whiten cov"));
  const got = patchCovariance(images, 12); // only the first n images count
  const want = directCovariance(images, 12);
  for (let i = 0; i < 144; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= 1e-12 * Math.max(1, Math.abs(want[i])), `element ${i}`);
  }
  assert.throws(() => patchCovariance(images, 21));
});

Deno.test("whiten: filters whiten the patch covariance; negatives follow", () => {
  const n = 200, eps = 5e-4;
  const images = smoothImages(n, freshSeed("whiten weights"));
  const t0 = performance.now();
  const { weight, eigenvalues } = whiteningWeights(images, n, eps);
  const ms = performance.now() - t0;
  assert.equal(weight.length, 24 * 3 * 2 * 2);
  assert.equal(eigenvalues.length, 12);
  for (let k = 1; k < 12; k++) assert.ok(eigenvalues[k] <= eigenvalues[k - 1], "descending");
  assert.ok(eigenvalues[11] > 0 && eigenvalues[0] / eigenvalues[11] > 10, `spread ${eigenvalues}`);
  const cov = directCovariance(images, n);
  for (let j = 0; j < 12; j++) {
    const lam = eigenvalues[j];
    // Whitened variance: lambda / (lambda + eps); cross terms vanish.
    assert.ok(Math.abs(quad(weight, cov, j, j) - lam / (lam + eps)) < 1e-9, `filter ${j} variance`);
    for (let k = 0; k < j; k++) assert.ok(Math.abs(quad(weight, cov, j, k)) < 1e-9, `filters ${j}, ${k}`);
    // Each filter is an eigenvector: C w_j = lambda_j w_j.
    for (let a = 0; a < 12; a++) {
      let cw = 0;
      for (let b = 0; b < 12; b++) cw += cov[a * 12 + b] * weight[j * 12 + b];
      assert.ok(Math.abs(cw - lam * weight[j * 12 + a]) < 1e-9 * Math.sqrt(lam + eps), `eigvec ${j}`);
    }
    for (let a = 0; a < 12; a++) assert.equal(weight[(12 + j) * 12 + a], -weight[j * 12 + a]);
  }
  assert.ok(ms < 2000, `whiteningWeights on ${n} images took ${ms.toFixed(0)} ms`);
});
