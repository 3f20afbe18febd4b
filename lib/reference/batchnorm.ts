// Plain float64 references for lib/nn/batchnorm.ts (BatchNorm2d, PyTorch semantics). Activations NHWC, seen
// as [M][C] rows with M = N*H*W; per-channel values [C].

export interface BatchNormShape {
  N: number;
  H: number;
  W: number;
  C: number;
}

/** Per-channel mean and biased variance over the M rows (two passes). */
export function batchStatsRef(
  x: ArrayLike<number>,
  s: BatchNormShape,
): { mean: Float64Array; var: Float64Array } {
  const M = s.N * s.H * s.W, C = s.C;
  const mean = new Float64Array(C), v = new Float64Array(C);
  for (let m = 0; m < M; m++) for (let c = 0; c < C; c++) mean[c] += x[m * C + c];
  for (let c = 0; c < C; c++) mean[c] /= M;
  for (let m = 0; m < M; m++) {
    for (let c = 0; c < C; c++) {
      const d = x[m * C + c] - mean[c];
      v[c] += d * d;
    }
  }
  for (let c = 0; c < C; c++) v[c] /= M;
  return { mean, var: v };
}

/** y = (x - mean[c]) * scale[c] + bias[c] with scale = invstd * weight. */
function normalize(
  x: ArrayLike<number>,
  C: number,
  mean: ArrayLike<number>,
  invstd: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = i % C;
    y[i] = (x[i] - mean[c]) * invstd[c] * weight[c] + bias[c];
  }
  return y;
}

export interface TrainForwardRef {
  y: Float64Array;
  mean: Float64Array;
  invstd: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/** The layer's parameters, running statistics and eps. */
export interface BatchNormStateRef {
  weight: ArrayLike<number>;
  bias: ArrayLike<number>;
  runningMean: ArrayLike<number>;
  runningVar: ArrayLike<number>;
  eps: number;
}

/** Training forward: batch statistics, normalized output and the updated running statistics (new arrays). */
export function batchNormTrainForwardRef(
  x: ArrayLike<number>,
  s: BatchNormShape,
  a: BatchNormStateRef & { momentum: number },
): TrainForwardRef {
  const M = s.N * s.H * s.W, mom = a.momentum;
  const { mean, var: v } = batchStatsRef(x, s);
  const invstd = v.map((vc) => 1 / Math.sqrt(vc + a.eps));
  const runningMean = Float64Array.from(mean, (mc, c) => (1 - mom) * a.runningMean[c] + mom * mc);
  const runningVar = Float64Array.from(v, (vc, c) => (1 - mom) * a.runningVar[c] + mom * vc * M / (M - 1));
  return { y: normalize(x, s.C, mean, invstd, a.weight, a.bias), mean, invstd, runningMean, runningVar };
}

/** Eval forward: y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias. */
export function batchNormEvalForwardRef(
  x: ArrayLike<number>,
  s: BatchNormShape,
  a: BatchNormStateRef,
): Float64Array {
  const invstd = Float64Array.from(a.runningVar, (v) => 1 / Math.sqrt(v + a.eps));
  return normalize(x, s.C, a.runningMean, invstd, a.weight, a.bias);
}

/**
 * Training-mode backward given the saved mean and invstd: xhat = (x - mean) * invstd, dbias = sum dy,
 * dweight = sum dy * xhat, dx = weight * invstd / M * (M * dy - dbias - xhat * dweight).
 */
export function batchNormBackwardRef(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  s: BatchNormShape,
  a: { weight: ArrayLike<number>; mean: ArrayLike<number>; invstd: ArrayLike<number> },
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const M = s.N * s.H * s.W, C = s.C;
  const xhat = (i: number) => (x[i] - a.mean[i % C]) * a.invstd[i % C];
  const dbias = new Float64Array(C), dweight = new Float64Array(C);
  for (let i = 0; i < M * C; i++) {
    dbias[i % C] += dy[i];
    dweight[i % C] += dy[i] * xhat(i);
  }
  const dx = new Float64Array(M * C);
  for (let i = 0; i < M * C; i++) {
    const c = i % C;
    dx[i] = (a.weight[c] * a.invstd[c] / M) * (M * dy[i] - dbias[c] - xhat(i) * dweight[c]);
  }
  return { dx, dweight, dbias };
}
