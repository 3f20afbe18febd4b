// Whitening-layer init of airbench94 (init_whitening_conv): eigenvectors of the 2x2-patch covariance of the
// first n training images, scaled by 1/sqrt(eigenvalue + eps), plus their negatives: 24 fixed 2x2 filters.

import { jacobiEigh } from "./jacobi.ts";
import { IMAGE_BYTES, normTable, SIDE } from "./loader.ts";

export const PATCH = 2;
export const PATCH_DIM = 3 * PATCH * PATCH; // 12 values per patch, (c, h, w) order
export const WHITEN_WIDTH = 2 * PATCH_DIM; // 24 filters: eigenvectors and their negatives
const POSITIONS = SIDE - PATCH + 1; // 31 patch positions per axis
const PLANE = SIDE * SIDE;

/**
 * C = (P^T P) / numPatches over every 2x2 patch (31x31 per image) of the first n images (official layout),
 * normalised in float64; no mean subtraction (as the recipe). 12x12 row-major, (c, h, w) flattening.
 */
export function patchCovariance(images: Uint8Array, n: number): Float64Array {
  if (!Number.isInteger(n) || n < 1 || n * IMAGE_BYTES > images.length) {
    throw new Error(`patchCovariance: n=${n} images, but ${images.length / IMAGE_BYTES} are given`);
  }
  const table = normTable();
  const img = new Float64Array(IMAGE_BYTES);
  const v = new Float64Array(PATCH_DIM);
  const acc = new Float64Array(PATCH_DIM * PATCH_DIM); // upper triangle used
  // Offset of patch element (c, h, w) from the patch's top-left pixel, in the planes of one image.
  const offsets = new Int32Array(PATCH_DIM);
  for (let c = 0; c < 3; c++) {
    for (let h = 0; h < PATCH; h++) {
      for (let w = 0; w < PATCH; w++) offsets[(c * PATCH + h) * PATCH + w] = c * SIDE * SIDE + h * SIDE + w;
    }
  }
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < IMAGE_BYTES; k++) {
      img[k] = table[Math.floor(k / PLANE) * 256 + images[i * IMAGE_BYTES + k]]; // channel = plane of k
    }
    for (let r = 0; r < POSITIONS; r++) {
      for (let c = 0; c < POSITIONS; c++) {
        const at = r * SIDE + c;
        for (let a = 0; a < PATCH_DIM; a++) v[a] = img[at + offsets[a]];
        for (let a = 0; a < PATCH_DIM; a++) {
          const va = v[a];
          for (let b = a; b < PATCH_DIM; b++) acc[a * PATCH_DIM + b] += va * v[b];
        }
      }
    }
  }
  const count = n * POSITIONS * POSITIONS;
  const cov = new Float64Array(PATCH_DIM * PATCH_DIM);
  for (let a = 0; a < PATCH_DIM; a++) {
    for (let b = a; b < PATCH_DIM; b++) {
      cov[a * PATCH_DIM + b] = cov[b * PATCH_DIM + a] = acc[a * PATCH_DIM + b] / count;
    }
  }
  return cov;
}

/**
 * The recipe's whitening weights: filter k < 12 is the eigenvector of the k-th largest eigenvalue divided
 * by sqrt(eigenvalue + eps); filters 12..23 are their negatives. weight: [24][3][2][2] (PyTorch OIHW).
 */
export function whiteningWeights(
  images: Uint8Array,
  n: number,
  eps = 5e-4,
): { weight: Float64Array; eigenvalues: Float64Array } {
  const { values, vectors } = jacobiEigh(patchCovariance(images, n), PATCH_DIM);
  const weight = new Float64Array(WHITEN_WIDTH * PATCH_DIM);
  for (let k = 0; k < PATCH_DIM; k++) {
    const scale = 1 / Math.sqrt(values[k] + eps);
    for (let a = 0; a < PATCH_DIM; a++) {
      const w = vectors[a * PATCH_DIM + k] * scale; // column k is the eigenvector of values[k]
      weight[k * PATCH_DIM + a] = w;
      weight[(PATCH_DIM + k) * PATCH_DIM + a] = -w;
    }
  }
  return { weight, eigenvalues: values };
}
