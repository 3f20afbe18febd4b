// Winograd F(2x2,3x3) and F(4x4,3x3) convolutions (kernels/winograd.wgsl) for the stride-1 "same" 3x3 layers:
// the forward pass and the input gradient (the same convolution on dy with the weights flipped and
// transposed, which the filter transform reads in place). Four dispatches each: filter transform (the weights
// change every step), input-tile transform, T*T batched GEMMs, output transform (+ bias). lib/nn/conv.ts routes a
// "winograd" KernelVariant here.

import { dispatch, type Gpu, grid2d, type Op, type Precision } from "../gpu/gpu.ts";

type Binding = GPUBuffer | GPUBufferBinding;

/** Output tile size m of F(m x m, 3 x 3): 2 or 4. */
export type WinogradTile = 2 | 4;

/** A Winograd variant: tile size MT, and the GEMM's register block TM tiles x 4*TN4 channels. */
export interface WinogradVariant {
  kind: "winograd";
  MT: WinogradTile;
  TM: number;
  TN4: number;
}

export interface WinogradShape {
  N: number;
  H: number;
  W: number;
  CI: number;
  CO: number;
}

const WG = 64;

/**
 * Bytes of the larger transformed tensor of one chunk of tiles (V or Mo): small enough to stay near the CPU's
 * caches between the passes and within any device's binding limit (WebGPU's default: 128 MiB).
 */
export const WINOGRAD_CHUNK_BYTES = 32 * 1024 * 1024;

/** Tiles per column and row, and in all. */
export function winogradTiles(s: WinogradShape, MT: WinogradTile): { TH: number; TW: number; P: number } {
  const TH = Math.ceil(s.H / MT), TW = Math.ceil(s.W / MT);
  return { TH, TW, P: s.N * TH * TW };
}

/** Tiles per chunk (PC) and chunks, for a cap on the bytes of a chunk's transformed tensors. */
export function winogradChunks(
  s: WinogradShape,
  MT: WinogradTile,
  capBytes = WINOGRAD_CHUNK_BYTES,
): { PC: number; chunks: number } {
  const T = MT + 2, { P } = winogradTiles(s, MT);
  const perTile = T * T * Math.max(s.CI, s.CO) * 4;
  const PC = Math.max(1, Math.min(P, Math.floor(capBytes / perTile)));
  const chunks = Math.ceil(P / PC);
  return { PC: Math.ceil(P / chunks), chunks }; // equal chunks
}

/** Multiplies done: the GEMMs' T^2 per tile and channel pair (the transforms' few adds and scalings aside). */
export function winogradMultiplies(s: WinogradShape, MT: WinogradTile): number {
  const T = MT + 2, { P } = winogradTiles(s, MT);
  return T * T * P * s.CI * s.CO;
}

/** The constants every entry point of kernels/winograd.wgsl is compiled with (blocks: 1 unless an entry's own). */
function baseConsts(s: WinogradShape, MT: WinogradTile, PC: number) {
  const { TH, TW, P } = winogradTiles(s, MT);
  const shape = { N: s.N, H: s.H, W: s.W, CI: s.CI, CO: s.CO };
  return { ...shape, MT, T: MT + 2, TH, TW, P, PC, WG, FLIP: 0, TM: 1, TN4: 1, TMV: 1, TMV4: 4 };
}

function grid(gpu: Gpu, threads: number): { grid: [number, number] } {
  return { grid: grid2d(Math.ceil(threads / WG), gpu.device.limits.maxComputeWorkgroupsPerDimension) };
}

/** The tile size (MT outputs, T = MT + 2 inputs) and the chunking of a layer; channels must be vec4s. */
function tiling(s: WinogradShape, v: WinogradVariant, chunkBytes: number, name: string) {
  if (s.CI % 4 || s.CO % 4) {
    throw new Error(`${name}: channels must be multiples of 4 (CI=${s.CI}, CO=${s.CO})`);
  }
  return { MT: v.MT, T: v.MT + 2, ...winogradChunks(s, v.MT, chunkBytes) };
}

/**
 * The ops of y = conv3x3_same(x, w) + b with F(MT x MT, 3 x 3): the filter transform, then per chunk of tiles
 * the input transform, the GEMMs and the output transform. `flip`: w is the forward layer's HWIO
 * [3][3][CO][CI] and the convolution uses it flipped in space with the channels swapped (the input gradient;
 * x is then dy and y dx). The scratch buffers (U, V, Mo; f32) belong to the ops; chunks share V and Mo.
 */
export function winogradConv(
  gpu: Gpu,
  p: Precision,
  s: WinogradShape,
  a: { x: Binding; w: Binding; b: Binding; y: Binding },
  v: WinogradVariant,
  flip: boolean,
  name: string,
  chunkBytes = WINOGRAD_CHUNK_BYTES,
): Op[] {
  const { MT, T, PC, chunks } = tiling(s, v, chunkBytes, name);
  const TN4 = [v.TN4, 2, 1].find((c) => (s.CO / 4) % c === 0)!;
  const base = baseConsts(s, MT, PC);
  const u = gpu.buffer(T * T * s.CI * s.CO * 4, `${name}.wino_u`);
  const vb = gpu.buffer(T * T * PC * s.CI * 4, `${name}.wino_v`);
  const mb = gpu.buffer(T * T * PC * s.CO * 4, `${name}.wino_m`);
  const gf = grid(gpu, s.CI * (s.CO / 4));
  const gi = grid(gpu, PC * (s.CI / 4));
  const gg = grid(gpu, T * T * Math.ceil(PC / v.TM) * (s.CO / 4 / TN4));
  const go = grid(gpu, PC * (s.CO / 4));
  const pf = gpu.pipeline("winograd.wgsl", "wino_filter", { ...base, FLIP: flip ? 1 : 0 });
  const pi = gpu.pipeline("winograd.wgsl", "wino_input", { ...base }, p);
  const pg = gpu.pipeline("winograd.wgsl", "wino_gemm", { ...base, TM: v.TM, TN4 });
  const po = gpu.pipeline("winograd.wgsl", "wino_output", { ...base }, p);
  const ops = [dispatch(gpu, `${name}.wino_filter`, pf, [a.w, u], gf.grid)];
  for (let c = 0; c < chunks; c++) {
    const first = gpu.uniform(Uint32Array.of(c * PC, 0, 0, 0), `${name}.wino_chunk${c}`);
    ops.push(
      dispatch(gpu, `${name}.wino_input`, pi, [a.x, vb, first], gi.grid),
      dispatch(gpu, `${name}.wino_gemm`, pg, [vb, u, mb], gg.grid),
      dispatch(gpu, `${name}.wino_output`, po, [mb, a.b, a.y, first], go.grid),
    );
  }
  return ops;
}

/**
 * The ops of dw = the 3x3 "same" convolution's weight gradient (HWIO f32, written) from x and dy (act) with
 * F(MT x MT, 3 x 3): per chunk of tiles the input transform of x (V), the transform of dy (dMo = A dY A^T) and
 * dU (+)= V^T dMo per position (the first chunk writes, the next add); then dw = G^T dU G. The GEMM block:
 * v.TM input channels (a multiple of 4) x 4*v.TN4 output channels per invocation.
 */
export function winogradWeightGrad(
  gpu: Gpu,
  p: Precision,
  s: WinogradShape,
  a: { x: Binding; dy: Binding; dw: Binding },
  v: WinogradVariant,
  name: string,
  chunkBytes = WINOGRAD_CHUNK_BYTES,
): Op[] {
  const { MT, T, PC, chunks } = tiling(s, v, chunkBytes, name);
  const TMV = [v.TM / 4, 2, 1].find((c) => (s.CI / 4) % c === 0)!;
  const TN4 = [v.TN4, 2, 1].find((c) => (s.CO / 4) % c === 0)!;
  const base = baseConsts(s, MT, PC);
  const vb = gpu.buffer(T * T * PC * s.CI * 4, `${name}.wino_v`);
  const mb = gpu.buffer(T * T * PC * s.CO * 4, `${name}.wino_dm`);
  const du = gpu.buffer(T * T * s.CI * s.CO * 4, `${name}.wino_du`);
  const gi = grid(gpu, PC * (s.CI / 4)), gd = grid(gpu, PC * (s.CO / 4));
  const gw = grid(gpu, T * T * (s.CI / 4 / TMV) * (s.CO / 4 / TN4)), gf = grid(gpu, s.CI * (s.CO / 4));
  const pi = gpu.pipeline("winograd.wgsl", "wino_input", { ...base }, p);
  const pd = gpu.pipeline("winograd.wgsl", "wino_dy", { ...base }, p);
  const pw = gpu.pipeline("winograd.wgsl", "wino_wgemm", {
    ...base,
    TN4,
    TMV,
    TMV4: 4 * TMV,
  });
  const pf = gpu.pipeline("winograd.wgsl", "wino_dfilter", { ...base });
  const ops: Op[] = [];
  for (let c = 0; c < chunks; c++) {
    const chunk = gpu.uniform(Uint32Array.of(c * PC, c === 0 ? 1 : 0, 0, 0), `${name}.wino_chunk${c}`);
    ops.push(
      dispatch(gpu, `${name}.wino_input`, pi, [a.x, vb, chunk], gi.grid),
      dispatch(gpu, `${name}.wino_dy`, pd, [a.dy, mb, chunk], gd.grid),
      dispatch(gpu, `${name}.wino_wgemm`, pw, [vb, mb, du, chunk], gw.grid),
    );
  }
  ops.push(dispatch(gpu, `${name}.wino_dfilter`, pf, [du, a.dw], gf.grid));
  return ops;
}
