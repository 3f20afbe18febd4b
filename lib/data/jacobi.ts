/**
 * Symmetric eigendecomposition by the cyclic Jacobi method (float64), used for the whitening-layer init
 * (eigh of the 12x12 patch covariance).
 *
 * Rotations use Rutishauser's numerically stable formulas (as in Numerical Recipes' `jacobi`):
 *   theta = (a_qq - a_pp) / (2 a_pq), t = sign(theta) / (|theta| + sqrt(theta^2 + 1)),
 *   c = 1 / sqrt(t^2 + 1), s = t c, tau = s / (1 + c),
 *   a_pp -= t a_pq, a_qq += t a_pq, a_pq = 0,
 *   a_rp <- a_rp - s (a_rq + tau a_rp), a_rq <- a_rq + s (a_rp - tau a_rq)   (old values on the right).
 * Sweeps run over all p < q in row order until the off-diagonal Frobenius norm is below
 * `tol * ||A||_F`; jacobi converges quadratically, so typically 5-10 sweeps.
 */

export interface JacobiOptions {
  /** Stop when sqrt(sum_{i != j} a_ij^2) <= tol * ||A||_F. Default 1e-14. */
  tol?: number;
  /** Throw if not converged after this many sweeps. Default 100. */
  maxSweeps?: number;
  /**
   * Input symmetry check: |a_ij - a_ji| must be <= symmetryTol * max|a|. Default 1e-10. Only the upper
   * triangle is used (like torch.linalg.eigh(..., UPLO='U') in the recipe).
   */
  symmetryTol?: number;
}

export interface JacobiResult {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /**
   * Eigenvectors, n*n row-major: column j (vectors[i*n + j], i = 0..n-1) is the unit eigenvector of
   * values[j]. Sign convention: the component with the largest magnitude (first such) is positive.
   */
  vectors: Float64Array;
  /** Number of sweeps performed. */
  sweeps: number;
}

/** Eigendecomposition of the symmetric n x n matrix `a` (row-major); `a` is not modified. */
export function jacobiEigh(a: Float64Array | number[], n: number, opts: JacobiOptions = {}): JacobiResult {
  const tol = opts.tol ?? 1e-14;
  const maxSweeps = opts.maxSweeps ?? 100;
  checkInput(a, n, opts.symmetryTol ?? 1e-10);
  const { m, v } = workingCopy(a, n);

  let norm2 = 0;
  for (let i = 0; i < n * n; i++) norm2 += m[i] * m[i];
  const threshold2 = tol * tol * norm2;

  let sweeps = 0;
  for (;;) {
    const off2 = offNorm2(m, n);
    if (off2 <= threshold2) break;
    if (sweeps >= maxSweeps) {
      throw new Error(
        `jacobiEigh: not converged after ${maxSweeps} sweeps (off-diagonal norm ${Math.sqrt(off2)}, ` +
          `target ${tol} * ${Math.sqrt(norm2)})`,
      );
    }
    sweeps++;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) rotate(m, v, n, p, q);
    }
  }
  return sortedResult(m, v, n, sweeps);
}

/** n is a positive integer, `a` holds n*n finite numbers, and it is symmetric within symmetryTol * max|a|. */
function checkInput(a: Float64Array | number[], n: number, symmetryTol: number): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new Error(`jacobiEigh: n must be a positive integer, got ${n}`);
  }
  if (a.length !== n * n) {
    throw new Error(`jacobiEigh: expected ${n * n} elements for n=${n}, got ${a.length}`);
  }
  let maxAbs = 0;
  for (let i = 0; i < n * n; i++) {
    if (!Number.isFinite(a[i])) {
      throw new Error(`jacobiEigh: non-finite element a[${Math.floor(i / n)}][${i % n}] = ${a[i]}`);
    }
    maxAbs = Math.max(maxAbs, Math.abs(a[i]));
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = Math.abs(a[i * n + j] - a[j * n + i]);
      if (d > symmetryTol * maxAbs) {
        throw new Error(
          `jacobiEigh: matrix is not symmetric: a[${i}][${j}] = ${a[i * n + j]} but a[${j}][${i}] = ${
            a[j * n + i]
          } (tolerance ${symmetryTol} * max|a|)`,
        );
      }
    }
  }
}

/** The working matrix m (symmetrised from `a`'s upper triangle) and the rotations so far v (identity). */
function workingCopy(a: Float64Array | number[], n: number): { m: Float64Array; v: Float64Array } {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) m[i * n + j] = m[j * n + i] = a[i * n + j];
  }
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  return { m, v };
}

/** The squared Frobenius norm of m's off-diagonal part (twice its upper triangle's). */
function offNorm2(m: Float64Array, n: number): number {
  let s = 0;
  for (let p = 0; p < n; p++) {
    for (let q = p + 1; q < n; q++) s += m[p * n + q] * m[p * n + q];
  }
  return 2 * s;
}

/** One Jacobi rotation zeroing m[p][q] (p < q), applied to m in place and accumulated into v's columns. */
function rotate(m: Float64Array, v: Float64Array, n: number, p: number, q: number): void {
  const apq = m[p * n + q];
  if (apq === 0) return;
  const app = m[p * n + p];
  const aqq = m[q * n + q];
  const theta = (aqq - app) / (2 * apq);
  let t: number;
  if (Math.abs(theta) > 1e150) {
    t = 1 / (2 * theta); // theta^2 would overflow
  } else {
    t = 1 / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
    if (theta < 0) t = -t;
  }
  const c = 1 / Math.sqrt(t * t + 1);
  const s = t * c;
  const tau = s / (1 + c);
  const h = t * apq;
  m[p * n + p] = app - h;
  m[q * n + q] = aqq + h;
  m[p * n + q] = 0;
  m[q * n + p] = 0;
  for (let r = 0; r < n; r++) {
    if (r === p || r === q) continue;
    const g = m[r * n + p];
    const k = m[r * n + q];
    const rp = g - s * (k + g * tau);
    const rq = k + s * (g - k * tau);
    m[r * n + p] = m[p * n + r] = rp;
    m[r * n + q] = m[q * n + r] = rq;
  }
  for (let r = 0; r < n; r++) {
    const g = v[r * n + p];
    const k = v[r * n + q];
    v[r * n + p] = g - s * (k + g * tau);
    v[r * n + q] = k + s * (g - k * tau);
  }
}

/** m's diagonal sorted descending (stable on ties by index), v's columns in that order, signs fixed. */
function sortedResult(m: Float64Array, v: Float64Array, n: number, sweeps: number): JacobiResult {
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((i, j) => m[j * n + j] - m[i * n + i] || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const src = order[j];
    values[j] = m[src * n + src];
    let big = 0;
    for (let i = 1; i < n; i++) {
      if (Math.abs(v[i * n + src]) > Math.abs(v[big * n + src])) big = i;
    }
    const sign = v[big * n + src] < 0 ? -1 : 1;
    for (let i = 0; i < n; i++) vectors[i * n + j] = sign * v[i * n + src];
  }
  return { values, vectors, sweeps };
}
