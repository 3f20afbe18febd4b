// Float64 reference of kernels/gemm.wgsl: C = alpha * op(A) @ op(B) + beta * D.

/** op(A) [M][K] (A stored [K][M] when transA), op(B) [K][N] (B stored [N][K] when transB), D and C [M][N]. */
export function gemmRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  s: { M: number; N: number; K: number; transA?: boolean; transB?: boolean; alpha?: number; beta?: number },
  d?: ArrayLike<number>,
): Float64Array {
  const { M, N, K, transA = false, transB = false, alpha = 1, beta = 0 } = s;
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) {
        acc += (transA ? a[k * M + i] : a[i * K + k]) * (transB ? b[j * K + k] : b[k * N + j]);
      }
      c[i * N + j] = alpha * acc + (d ? beta * d[i * N + j] : 0);
    }
  }
  return c;
}
