// Float64 Winograd F(m x m, 3 x 3) for the stride-1 "same" 3x3 convolution (NHWC activations, HWIO weights),
// with the transform matrices of Lavin & Gray (2015): the algorithm kernels/winograd.wgsl runs, in exact-ish
// arithmetic. Tests check it against the direct float64 convolution (the matrices) and use it to tell the
// algorithm's error from the kernel's.

import type { WinogradShape, WinogradTile } from "../nn/winograd.ts";

type Arr = ArrayLike<number>;

/** B^T (T x T), G (T x 3), A^T (m x T) of F(m x m, 3 x 3), m = 2 or 4. */
export const WINOGRAD_MATRICES: Record<WinogradTile, { BT: number[][]; G: number[][]; AT: number[][] }> = {
  2: {
    BT: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    AT: [[1, 1, 1, 0], [0, 1, -1, -1]],
  },
  4: {
    BT: [
      [4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1],
    ],
    G: [
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ],
    AT: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
  },
};

/** L a R^T for matrices as arrays of rows. */
function sandwich(L: number[][], a: number[][], R: number[][]): number[][] {
  const la = L.map((row) => a[0].map((_, j) => row.reduce((s, v, k) => s + v * a[k][j], 0)));
  return la.map((row) => R.map((r) => r.reduce((s, v, k) => s + v * row[k], 0)));
}

/** y = conv3x3_same(x, w) + b (x NHWC [N][H][W][CI], w HWIO [3][3][CI][CO]) by F(m x m, 3 x 3) in float64. */
export function winogradForwardRef(s: WinogradShape, m: WinogradTile, x: Arr, w: Arr, b: Arr): Float64Array {
  const { BT, G, AT } = WINOGRAD_MATRICES[m];
  const T = m + 2, TH = Math.ceil(s.H / m), TW = Math.ceil(s.W / m);
  const U: number[][][][] = []; // [ci][co][T][T]
  for (let ci = 0; ci < s.CI; ci++) {
    U.push(Array.from({ length: s.CO }, (_, co) => {
      const g = [0, 1, 2].map((ky) => [0, 1, 2].map((kx) => w[((ky * 3 + kx) * s.CI + ci) * s.CO + co]));
      return sandwich(G, g, G);
    }));
  }
  const y = new Float64Array(s.N * s.H * s.W * s.CO);
  for (let n = 0; n < s.N; n++) {
    for (let ty = 0; ty < TH; ty++) {
      for (let tx = 0; tx < TW; tx++) {
        const V = Array.from({ length: s.CI }, (_, ci) => {
          const d = Array.from({ length: T }, (_, i) =>
            Array.from({ length: T }, (_, j) => {
              const yy = ty * m - 1 + i, xx = tx * m - 1 + j;
              const inside = yy >= 0 && yy < s.H && xx >= 0 && xx < s.W;
              return inside ? x[((n * s.H + yy) * s.W + xx) * s.CI + ci] : 0;
            }));
          return sandwich(BT, d, BT);
        });
        for (let co = 0; co < s.CO; co++) {
          const M = Array.from({ length: T }, (_, i) =>
            Array.from({ length: T }, (_, j) => {
              let acc = 0;
              for (let ci = 0; ci < s.CI; ci++) acc += V[ci][i][j] * U[ci][co][i][j];
              return acc;
            }));
          const out = sandwich(AT, M, AT);
          for (let r = 0; r < m; r++) {
            for (let c = 0; c < m; c++) {
              const yy = ty * m + r, xx = tx * m + c;
              if (yy < s.H && xx < s.W) y[((n * s.H + yy) * s.W + xx) * s.CO + co] = out[r][c] + b[co];
            }
          }
        }
      }
    }
  }
  return y;
}
