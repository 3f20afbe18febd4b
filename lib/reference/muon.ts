// Float64 references of the Muon optimizer (airbench94_muon.py), written on PyTorch's layout: a convolution
// weight is O x (I*KH*KW) row-major (OIHW), as torch's `g.reshape(len(g), -1)`.

import { MUON_NS } from "../train/muon.ts";
import { gemmRef } from "./gemm.ts";

/**
 * zeropower_via_newtonschulz5 in float64 on the rows x cols matrix g: X = g / (||g|| + eps), transposed when
 * rows > cols; `steps` times A = X X^T, B = b A + c A A, X = a X + B X; transposed back.
 */
export function newtonSchulzRef(g: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const { a, b, c, steps, eps } = MUON_NS;
  let norm = 0;
  for (let i = 0; i < g.length; i++) norm += g[i] * g[i];
  const scale = 1 / (Math.sqrt(norm) + eps);
  const tall = rows > cols;
  const [r, n] = tall ? [cols, rows] : [rows, cols]; // X is r x n, r <= n
  let x: Float64Array = new Float64Array(r * n);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) x[tall ? j * n + i : i * n + j] = g[i * cols + j] * scale;
  }
  for (let s = 0; s < steps; s++) {
    const gram = gemmRef(x, x, { M: r, N: r, K: n, transB: true });
    const poly = gemmRef(gram, gram, { M: r, N: r, K: r, alpha: c, beta: b }, gram);
    x = gemmRef(poly, x, { M: r, N: n, K: r, beta: a }, x);
  }
  if (!tall) return x;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[i * cols + j] = x[j * n + i];
  }
  return out;
}

/**
 * One torch Muon step, in place on p and buf (both O x K, K = I*KH*KW): buf = m buf + g; g' = g + m buf
 * (nesterov) or buf; p *= sqrt(O) / ||p||; p -= lr * newtonSchulzRef(g').
 */
export function muonStepRef(
  p: Float64Array,
  g: ArrayLike<number>,
  buf: Float64Array,
  O: number,
  h: { lr: number; momentum: number; nesterov: boolean },
): void {
  const K = p.length / O;
  const gp = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    buf[i] = h.momentum * buf[i] + g[i];
    gp[i] = h.nesterov ? g[i] + h.momentum * buf[i] : buf[i];
  }
  let sq = 0;
  for (let i = 0; i < p.length; i++) sq += p[i] * p[i];
  const scale = Math.sqrt(O) / Math.sqrt(sq);
  const update = newtonSchulzRef(gp, O, K);
  for (let i = 0; i < p.length; i++) p[i] = p[i] * scale - h.lr * update[i];
}
