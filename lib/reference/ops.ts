// Plain float64 references for the kernels of lib/nn/ops.ts (the tests compare the GPU against these).
// Same layouts as the kernels: NHWC activations, w [10][C], logits [N][10], flat parameter vectors.

const CLASSES = 10;

/** erf(x) to double precision: erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)). */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z > 6) return Math.sign(x); // erfc(6) = 2e-17
  let term = z, sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (2 * z * z) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum;
  return x < 0 ? -r : r;
}

/** Exact GELU: x * Phi(x). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** d/dx GELU = Phi(x) + x * phi(x). */
export function geluGrad(x: number): number {
  return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

export function geluForwardRef(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, gelu);
}

export function geluBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => dy[i] * geluGrad(v));
}

export interface PoolShape {
  N: number;
  H: number;
  W: number;
  C: number;
  K: number;
}

/** For each output [N][H/K][W/K][C] of KxK / stride K pooling: the x index of the first window maximum. */
export function maxpoolArgmax(x: ArrayLike<number>, s: PoolShape): Int32Array {
  const { N, H, W, C, K } = s;
  const HO = Math.floor(H / K), WO = Math.floor(W / K);
  const arg = new Int32Array(N * HO * WO * C);
  let o = 0;
  for (let n = 0; n < N; n++) {
    for (let oy = 0; oy < HO; oy++) {
      for (let ox = 0; ox < WO; ox++) {
        for (let c = 0; c < C; c++, o++) {
          let best = -Infinity, at = -1;
          for (let ky = 0; ky < K; ky++) {
            for (let kx = 0; kx < K; kx++) {
              const i = ((n * H + oy * K + ky) * W + ox * K + kx) * C + c;
              if (at < 0 || x[i] > best) [best, at] = [x[i], i];
            }
          }
          arg[o] = at;
        }
      }
    }
  }
  return arg;
}

export function maxpoolForwardRef(x: ArrayLike<number>, s: PoolShape): Float64Array {
  return Float64Array.from(maxpoolArgmax(x, s), (i) => x[i]);
}

/** dx [N][H][W][C]: dy at each window's first maximum, 0 elsewhere. */
export function maxpoolBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>, s: PoolShape): Float64Array {
  const dx = new Float64Array(s.N * s.H * s.W * s.C);
  maxpoolArgmax(x, s).forEach((i, o) => dx[i] += dy[o]);
  return dx;
}

/** pre = maxpool2(x), y = gelu(pre). */
export function poolGeluForwardRef(
  x: ArrayLike<number>,
  s: Omit<PoolShape, "K">,
): { pre: Float64Array; y: Float64Array } {
  const pre = maxpoolForwardRef(x, { ...s, K: 2 });
  return { pre, y: geluForwardRef(pre) };
}

/** dx = route(dy * gelu'(pre)) to the 2x2 argmax. */
export function poolGeluBackwardRef(
  x: ArrayLike<number>,
  pre: ArrayLike<number>,
  dy: ArrayLike<number>,
  s: Omit<PoolShape, "K">,
): Float64Array {
  return maxpoolBackwardRef(x, geluBackwardRef(pre, dy), { ...s, K: 2 });
}

/** logits [N][10] = scale * x [N][C] . w [10][C]^T */
export function linearForwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  N: number,
  C: number,
  scale: number,
): Float64Array {
  const out = new Float64Array(N * CLASSES);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < CLASSES; k++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[n * C + c] * w[k * C + c];
      out[n * CLASSES + k] = scale * s;
    }
  }
  return out;
}

export function linearBackwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dlogits: ArrayLike<number>,
  N: number,
  C: number,
  scale: number,
): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(N * C), dw = new Float64Array(CLASSES * C);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < CLASSES; k++) {
      const g = scale * dlogits[n * CLASSES + k];
      for (let c = 0; c < C; c++) {
        dx[n * C + c] += g * w[k * C + c];
        dw[k * C + c] += g * x[n * C + c];
      }
    }
  }
  return { dx, dw };
}

/** Index of the first maximum of row n of [N][10] logits (torch.argmax). */
export function argmaxRow(logits: ArrayLike<number>, n: number): number {
  let at = 0;
  for (let k = 1; k < CLASSES; k++) if (logits[n * CLASSES + k] > logits[n * CLASSES + at]) at = k;
  return at;
}

/**
 * PyTorch CrossEntropyLoss(label_smoothing=eps, reduction='sum'): loss = sum_n sum_k -t_nk log_softmax(z_n)_k
 * with t = (1 - eps) onehot + eps / 10 (log-sum-exp in float64); dlogits = softmax - t; correct = rows with
 * argmax == label.
 */
export function crossEntropyRef(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  N: number,
  eps: number,
): { loss: number; correct: number; dlogits: Float64Array } {
  const dlogits = new Float64Array(N * CLASSES);
  let loss = 0, correct = 0;
  for (let n = 0; n < N; n++) {
    const z = Array.from({ length: CLASSES }, (_, k) => logits[n * CLASSES + k]);
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let k = 0; k < CLASSES; k++) {
      const t = (k === labels[n] ? 1 - eps : 0) + eps / CLASSES;
      loss -= t * (z[k] - lse);
      dlogits[n * CLASSES + k] = Math.exp(z[k] - lse) - t;
    }
    if (argmaxRow(logits, n) === labels[n]) correct++;
  }
  return { loss, correct, dlogits };
}

export function countCorrectRef(logits: ArrayLike<number>, labels: ArrayLike<number>, N: number): number {
  let correct = 0;
  for (let n = 0; n < N; n++) if (argmaxRow(logits, n) === labels[n]) correct++;
  return correct;
}

export function scaleAddRef(
  acc: ArrayLike<number>,
  x: ArrayLike<number>,
  a: number,
  b: number,
): Float64Array {
  return Float64Array.from(acc, (v, i) => a * v + b * x[i]);
}

/**
 * torch.optim.SGD(dampening=0), in place: g = grad + wd p; buf = mom buf + g; then p -= lr (g + mom buf)
 * (Nesterov) or p -= lr buf. Elements in [gate.start, gate.end) are skipped unless trainGate.
 */
export function sgdStepRef(
  params: Float64Array,
  grads: ArrayLike<number>,
  mom: Float64Array,
  h: { lr: number; weightDecay: number; momentum: number; nesterov: boolean },
  gate?: { start: number; end: number; trainGate: boolean },
): void {
  for (let i = 0; i < params.length; i++) {
    if (gate && !gate.trainGate && i >= gate.start && i < gate.end) continue;
    const g = grads[i] + h.weightDecay * params[i];
    mom[i] = h.momentum * mom[i] + g;
    params[i] -= h.lr * (h.nesterov ? g + h.momentum * mom[i] : mom[i]);
  }
}

/** Lookahead, in place: ema = lerp(ema, params, 1 - decay); params = ema. */
export function emaUpdateRef(params: Float64Array, ema: Float64Array, decay: number): void {
  const w = 1 - decay;
  for (let i = 0; i < params.length; i++) {
    ema[i] += w * (params[i] - ema[i]);
    params[i] = ema[i];
  }
}
