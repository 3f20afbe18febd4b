// Convolution ops (kernels/conv*.wgsl): forward, input gradient and weight/bias gradient, NHWC activations and
// HWIO f32 weights. See kernels/conv.wgsl for the layouts.

import { type AdapterReport, dispatch, type Gpu, grid2d, type Op, type Precision } from "./gpu.ts";

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

/**
 * How the convolutions (forward, so also the input gradient, and the weight gradient) are computed:
 *   "register":  conv.wgsl / conv_wgrad.wgsl, register blocking with vec4 global loads and no workgroup memory
 *                (fastest on CPU adapters such as lavapipe, where workgroup memory and barriers buy nothing);
 *   "workgroup": conv_tiled.wgsl / conv_wgrad_tiled.wgsl, the shared-memory tiled GEMM (BM x BN output tiles,
 *                the reduction in chunks of BK staged in workgroup memory; tiledBlock): for real GPUs.
 * TM, TN4, TMV, TN4W and WG tune the "register" kernels only; splitTarget applies to both weight gradients.
 */
export type ConvVariant = "register" | "workgroup";

export interface ConvTiles {
  variant: ConvVariant; // which kernels
  TM: number; // output pixels per invocation (forward / input gradient)
  TN4: number; // vec4 output channels per invocation
  TMV: number; // vec4 input channels per invocation (weight gradient)
  TN4W: number; // vec4 output channels per invocation (weight gradient)
  WG: number; // workgroup size
  splitTarget: number; // weight gradient: aim for at least this many invocations
}

// Measured on lavapipe (2 cores): 8 pixels x 8 channels per invocation for the forward and 8 input x 16
// output channels for the weight gradient ran ~30% faster than 4x8 / 8x8; larger blocks spill registers.
export const DEFAULT_TILES: ConvTiles = {
  variant: "register",
  TM: 8,
  TN4: 2,
  TMV: 2,
  TN4W: 4,
  WG: 64,
  splitTarget: 16384,
};

/** The tiles for an adapter: register blocking on CPU adapters, workgroup-memory tiling on real GPUs. */
export function tilesFor(adapter: AdapterReport): ConvTiles {
  return { ...DEFAULT_TILES, variant: adapter.isCpu ? "register" : "workgroup" };
}

/**
 * Tile of the "workgroup" variant (kernels/conv_tiled.wgsl): a workgroup computes BM pixels x BN channels,
 * staging K in chunks of BK; each invocation owns TM pixels x 4*TN4 channels, so the workgroup has
 * (BM/TM) * (BN/(4*TN4)) invocations.
 */
export interface TiledBlock {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN4: number;
}

/** 64 x 64 tiles (256 invocations of 4 x 4); 128 x 32 when CO <= 32 so narrow layers waste fewer lanes. */
export function tiledBlock(CO: number): TiledBlock {
  return CO <= 32 ? { BM: 128, BN: 32, BK: 16, TM: 4, TN4: 1 } : { BM: 64, BN: 64, BK: 16, TM: 4, TN4: 1 };
}

/**
 * Bytes of workgroup memory conv_tiled.wgsl declares for a block (f32; its A tile has one vec4 of row padding,
 * so this also bounds conv_wgrad_tiled.wgsl's 4*BK*(BM+BN)).
 */
export function tiledWorkgroupBytes(t: TiledBlock): number {
  return 4 * t.BK * (t.BM + 4 + t.BN);
}

/** Invocations per workgroup of conv_tiled.wgsl and conv_wgrad_tiled.wgsl for a block. */
export function tiledWorkgroupSize(t: TiledBlock): number {
  return (t.BM / t.TM) * (t.BN / 4 / t.TN4);
}

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
  if (tiles.variant === "workgroup") return convForwardTiled(gpu, p, s, a, name);
  const TM = tiles.TM;
  const TN4 = largestDivisor(s.CO / 4, [tiles.TN4, 2, 1]);
  const threads = Math.ceil((s.N * HO * WO) / TM) * (s.CO / 4 / TN4);
  const { grid, NWX } = groups(gpu, threads, tiles.WG);
  const pipe = gpu.pipeline("conv.wgsl", "conv_forward", { ...s, HO, WO, TM, TN4, WG: tiles.WG, NWX }, p);
  return dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], grid);
}

function checkTiled(gpu: Gpu, t: TiledBlock, name: string) {
  const size = tiledWorkgroupSize(t), bytes = tiledWorkgroupBytes(t);
  const lim = gpu.device.limits;
  if (size > lim.maxComputeInvocationsPerWorkgroup || bytes > lim.maxComputeWorkgroupStorageSize) {
    throw new Error(`${name}: tiled conv needs ${size} invocations and ${bytes} B of workgroup memory`);
  }
}

function convForwardTiled(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; w: Binding; b: Binding; y: Binding },
  name: string,
): Op {
  const { HO, WO } = outSize(s);
  const t = tiledBlock(s.CO);
  checkTiled(gpu, t, name);
  const lim = gpu.device.limits;
  const tilesM = Math.ceil((s.N * HO * WO) / t.BM), tilesN = Math.ceil(s.CO / t.BN);
  const grid = grid2d(tilesM * tilesN, lim.maxComputeWorkgroupsPerDimension);
  const pipe = gpu.pipeline("conv_tiled.wgsl", "conv_forward", { ...s, HO, WO, ...t, NWX: grid[0] }, p);
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
  const wcount = s.KH * s.KW * s.CI * s.CO;
  let KSPLIT: number, pipe: GPUComputePipeline, grid: [number, number];
  if (tiles.variant === "workgroup") {
    // kernels/conv_wgrad_tiled.wgsl: rows KH*KW*CI x CO columns in tiledBlock tiles, the pixels split into KSPLIT chunks.
    const t = tiledBlock(s.CO);
    const size = tiledWorkgroupSize(t);
    checkTiled(gpu, t, name);
    const tileCount = Math.ceil(wcount / s.CO / t.BM) * Math.ceil(s.CO / t.BN);
    KSPLIT = splitCount(K, tileCount * size, tiles.splitTarget);
    grid = grid2d(tileCount * KSPLIT, gpu.device.limits.maxComputeWorkgroupsPerDimension);
    pipe = gpu.pipeline(
      "conv_wgrad_tiled.wgsl",
      "conv_wgrad",
      { ...s, HO, WO, ...t, KSPLIT, NWX: grid[0] },
      p,
    );
  } else {
    const TMV = largestDivisor(s.CI / 4, [tiles.TMV, 2, 1]);
    const TN4 = largestDivisor(s.CO / 4, [tiles.TN4W, 2, 1]);
    const blocks = (s.CO / 4 / TN4) * s.KH * s.KW * (s.CI / 4 / TMV);
    KSPLIT = splitCount(K, blocks, tiles.splitTarget);
    const g = groups(gpu, blocks * KSPLIT, tiles.WG);
    grid = g.grid;
    pipe = gpu.pipeline(
      "conv_wgrad.wgsl",
      "conv_wgrad",
      { ...s, HO, WO, TMV, TN4, KSPLIT, WG: tiles.WG, NWX: g.NWX },
      p,
    );
  }
  if (KSPLIT === 1) {
    ops.push(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, a.dw], grid));
  } else {
    const part = gpu.buffer(KSPLIT * wcount * 4, `${name}.partial`);
    ops.push(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, part], grid));
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
