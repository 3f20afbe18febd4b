// Convolution ops (kernels/conv*.wgsl): forward, input gradient and weight/bias gradient, NHWC activations and
// HWIO f32 weights. See kernels/conv.wgsl for the layouts.

import { dispatch, type Gpu, grid2d, type Op, type Precision } from "./gpu.ts";

export interface ConvShape {
  N: number; // batch
  H: number; // input height
  W: number; // input width
  CI: number; // input channels (multiple of 4)
  CO: number; // output channels (multiple of 4)
  KH: number;
  KW: number;
  PAD: number; // zero padding on each side
}

export function outSize(s: ConvShape): { HO: number; WO: number } {
  return { HO: s.H + 2 * s.PAD - s.KH + 1, WO: s.W + 2 * s.PAD - s.KW + 1 };
}

/** FLOPs of one forward pass (the input and weight gradients cost the same each). */
export function convFlops(s: ConvShape): number {
  const { HO, WO } = outSize(s);
  return 2 * s.N * HO * WO * s.KH * s.KW * s.CI * s.CO;
}

export interface ConvTiles {
  TM: number; // output pixels per invocation (forward / input gradient)
  TN4: number; // vec4 output channels per invocation
  TMV: number; // vec4 input channels per invocation (weight gradient)
  TN4W: number; // vec4 output channels per invocation (weight gradient)
  WG: number; // workgroup size
  splitTarget: number; // weight gradient: aim for at least this many invocations
}

export const DEFAULT_TILES: ConvTiles = { TM: 4, TN4: 2, TMV: 2, TN4W: 2, WG: 64, splitTarget: 16384 };

type Binding = GPUBuffer | GPUBufferBinding;

function checkShape(s: ConvShape) {
  if (s.CI % 4 || s.CO % 4) {
    throw new Error(`conv: channels must be multiples of 4 (CI=${s.CI}, CO=${s.CO})`);
  }
  const { HO, WO } = outSize(s);
  if (HO < 1 || WO < 1) throw new Error(`conv: empty output for ${JSON.stringify(s)}`);
}

function largestDivisor(n: number, cands: number[]): number {
  for (const c of cands) if (n % c === 0) return c;
  return 1;
}

function groups(gpu: Gpu, threads: number, wg: number): { grid: [number, number]; NWX: number } {
  const grid = grid2d(Math.ceil(threads / wg), gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return { grid, NWX: grid[0] };
}

/** y = conv(x, w) + b. x, y NHWC `act`; w HWIO f32; b [CO] f32. */
export function convForward(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; w: Binding; b: Binding; y: Binding },
  tiles: ConvTiles = DEFAULT_TILES,
  name = "conv_forward",
): Op {
  checkShape(s);
  const { HO, WO } = outSize(s);
  const TM = tiles.TM;
  const TN4 = largestDivisor(s.CO / 4, [tiles.TN4, 2, 1]);
  const threads = Math.ceil((s.N * HO * WO) / TM) * (s.CO / 4 / TN4);
  const { grid, NWX } = groups(gpu, threads, tiles.WG);
  const pipe = gpu.pipeline("conv.wgsl", "conv_forward", { ...s, HO, WO, TM, TN4, WG: tiles.WG, NWX }, p);
  return dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], grid);
}

/**
 * dx = conv_transpose(dy, w): the weights are flipped and transposed into `scratch` (f32, KH*KW*CI*CO), then
 * the forward kernel runs with a zero bias. dy NHWC [N][HO][WO][CO], dx NHWC [N][H][W][CI].
 */
export function convInputGrad(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { dy: Binding; w: Binding; dx: Binding },
  tiles: ConvTiles = DEFAULT_TILES,
  name = "conv_input_grad",
): Op[] {
  checkShape(s);
  const { HO, WO } = outSize(s);
  const count = s.KH * s.KW * s.CI * s.CO;
  const wt = gpu.buffer(count * 4, `${name}.wt`);
  const zero = gpu.buffer(s.CI * 4, `${name}.zero_bias`); // buffers start zeroed
  const t = groups(gpu, count, tiles.WG);
  const tpipe = gpu.pipeline("conv_transpose.wgsl", "conv_transpose", {
    CI: s.CI,
    CO: s.CO,
    KH: s.KH,
    KW: s.KW,
    WG: tiles.WG,
    NWX: t.NWX,
  });
  // The transposed convolution: input dy (HO x WO, CO channels), output H x W with CI channels.
  const ts: ConvShape = {
    N: s.N,
    H: HO,
    W: WO,
    CI: s.CO,
    CO: s.CI,
    KH: s.KH,
    KW: s.KW,
    PAD: s.KH - 1 - s.PAD,
  };
  if (outSize(ts).HO !== s.H || outSize(ts).WO !== s.W) {
    throw new Error(`conv input grad: unsupported shape ${JSON.stringify(s)} (needs stride 1)`);
  }
  return [
    dispatch(gpu, `${name}.transpose`, tpipe, [a.w, wt], t.grid),
    convForward(gpu, p, ts, { x: a.dy, w: wt, b: zero, y: a.dx }, tiles, name),
  ];
}

/** Number of K chunks for a split-K reduction over `k` items with `otherThreads` parallel outputs. */
function splitCount(k: number, otherThreads: number, target: number): number {
  const want = Math.ceil(target / otherThreads);
  return Math.max(1, Math.min(want, Math.floor(k / 64), 256));
}

/**
 * dw (HWIO f32, written) and optionally db ([CO] f32, written) from x (NHWC act, the conv input) and dy (NHWC
 * act, the gradient of the conv output). Split-K partial sums are reduced in a fixed order: deterministic.
 */
export function convWeightGrad(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; dy: Binding; dw: Binding; db?: Binding },
  tiles: ConvTiles = DEFAULT_TILES,
  name = "conv_weight_grad",
): Op[] {
  checkShape(s);
  const { HO, WO } = outSize(s);
  const ops: Op[] = [];
  const K = s.N * HO * WO;
  const TMV = largestDivisor(s.CI / 4, [tiles.TMV, 2, 1]);
  const TN4 = largestDivisor(s.CO / 4, [tiles.TN4W, 2, 1]);
  const blocks = (s.CO / 4 / TN4) * s.KH * s.KW * (s.CI / 4 / TMV);
  const KSPLIT = splitCount(K, blocks, tiles.splitTarget);
  const wcount = s.KH * s.KW * s.CI * s.CO;
  const g = groups(gpu, blocks * KSPLIT, tiles.WG);
  const pipe = gpu.pipeline(
    "conv_wgrad.wgsl",
    "conv_wgrad",
    { ...s, HO, WO, TMV, TN4, KSPLIT, WG: tiles.WG, NWX: g.NWX },
    p,
  );
  if (KSPLIT === 1) {
    ops.push(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, a.dw], g.grid));
  } else {
    const part = gpu.buffer(KSPLIT * wcount * 4, `${name}.partial`);
    ops.push(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, part], g.grid));
    ops.push(reduceSplits(gpu, part, a.dw, wcount, KSPLIT, tiles.WG, `${name}.w_reduce`));
  }
  if (a.db) ops.push(...biasGrad(gpu, p, { dy: a.dy, db: a.db, M: K, C: s.CO }, tiles.WG, `${name}.b`));
  return ops;
}

/** db[c] = sum over M rows of dy[m][c] (dy act [M][C], db f32 [C]); deterministic split + reduce. */
export function biasGrad(
  gpu: Gpu,
  p: Precision,
  a: { dy: Binding; db: Binding; M: number; C: number },
  WG = 64,
  name = "bias_grad",
): Op[] {
  if (a.C % 4) throw new Error(`bias grad: channels must be a multiple of 4 (C=${a.C})`);
  const KSPLIT = splitCount(a.M, a.C / 4, 4096);
  const g = groups(gpu, (a.C / 4) * KSPLIT, WG);
  const pipe = gpu.pipeline(
    "conv_bias_grad.wgsl",
    "bias_grad",
    { M: a.M, CO: a.C, KSPLIT, WG, NWX: g.NWX },
    p,
  );
  if (KSPLIT === 1) return [dispatch(gpu, name, pipe, [a.dy, a.db], g.grid)];
  const part = gpu.buffer(KSPLIT * a.C * 4, `${name}.partial`);
  return [
    dispatch(gpu, name, pipe, [a.dy, part], g.grid),
    reduceSplits(gpu, part, a.db, a.C, KSPLIT, WG, `${name}.reduce`),
  ];
}

function reduceSplits(
  gpu: Gpu,
  part: GPUBuffer,
  out: Binding,
  count: number,
  KSPLIT: number,
  WG: number,
  name: string,
): Op {
  const L4 = count / 4;
  const g = groups(gpu, L4, WG);
  const pipe = gpu.pipeline("reduce_splits.wgsl", "reduce_splits", { L4, KSPLIT, WG, NWX: g.NWX });
  return dispatch(gpu, name, pipe, [part, out], g.grid);
}
