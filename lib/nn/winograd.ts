// Winograd F(2x2,3x3) and F(4x4,3x3) convolutions (kernels/winograd.wgsl) for the stride-1 "same" 3x3 layers:
// the forward pass and the input gradient (the same convolution on dy with the weights flipped and
// transposed, which the filter transform reads in place). Four dispatches each: filter transform (the weights
// change every step), input-tile transform, T*T batched GEMMs, output transform (+ bias). WINOGRAD_KIND is
// the "winograd" kind of convolution variant (lib/nn/conv_variants.ts): on other shapes it runs the direct
// register kernel.

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import {
  biasGrad,
  type Binding,
  type ConvKind,
  type ConvShape,
  largestDivisor,
  outSize,
  registerBlockProblem,
  sequence,
  sizesProblem,
  transposedShape,
  withVariant,
  zeroBias,
} from "./conv_base.ts";
import { REGISTER_KIND, type RegisterVariant } from "./conv_register.ts";

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
function winogradMultiplies(s: WinogradShape, MT: WinogradTile): number {
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
 * F(MT x MT, 3 x 3): per chunk of tiles the input transform of x (V), the transform of dy (dMo = A dY A^T)
 * and dU (+)= V^T dMo per position (the first chunk writes, the next add); then dw = G^T dU G. The GEMM
 * block: v.TM input channels (a multiple of 4) x 4*v.TN4 output channels per invocation.
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

/** Whether a shape is a stride-1 "same" 3x3 convolution (what the Winograd variants compute). */
export function winogradShape(s: ConvShape): boolean {
  return s.KH === 3 && s.KW === 3 && s.PAD === 1;
}

/** The register variant a Winograd variant stands for where it does not apply (other shapes). */
const DIRECT_OF_WINOGRAD: RegisterVariant = { kind: "register", TM: 8, TN4: 2, WG: 64 };

const wino = (MT: WinogradTile, TM: number, TN4: number): WinogradVariant => ({
  kind: "winograd",
  MT,
  TM,
  TN4,
});

function id(v: WinogradVariant): string {
  return `winograd-f${v.MT}-${v.TM}x${4 * v.TN4}`;
}

export const WINOGRAD_KIND: ConvKind<WinogradVariant> = {
  name: "winograd",
  // the bias gradient beside the weight gradient: biasGrad's kernels
  files: ["winograd.wgsl", "conv_bias_grad.wgsl", "reduce_splits.wgsl"],
  id,
  parse(text) {
    const m = /^winograd-f([24])-(\d+)x(\d+)$/.exec(text);
    return m ? wino(+m[1] as WinogradTile, +m[2], +m[3] / 4) : undefined;
  },
  invalid: (v, pass) =>
    sizesProblem({ MT: v.MT, TM: v.TM, TN: 4 * v.TN4 }) ?? registerBlockProblem(v.TM, v.TN4, pass),
  unfit: (v) => v.MT !== 2 && v.MT !== 4 ? `tile ${v.MT} is not 2 or 4` : undefined,
  fit(v, pass, s) {
    if (!winogradShape(s)) return REGISTER_KIND.fit(DIRECT_OF_WINOGRAD, pass, s);
    const TN4 = largestDivisor(s.CO / 4, [v.TN4, 2, 1]);
    if (pass !== "weight_grad") return { ...v, TN4 };
    return { ...v, TM: 4 * largestDivisor(s.CI / 4, [Math.max(1, v.TM / 4), 2, 1]), TN4 };
  },
  candidates: (pass) =>
    pass === "weight_grad" ? [wino(2, 8, 4), wino(4, 8, 4)] : [wino(2, 8, 2), wino(4, 8, 2), wino(4, 4, 4)],
  multiplies: (s, pass, v) => winogradMultiplies(pass === "input_grad" ? transposedShape(s) : s, v.MT),
  forward: (gpu, p, s, a, v, name) =>
    withVariant(sequence(name, winogradConv(gpu, p, s, a, v, false, name)), id(v)),
  // the filter transform reads w flipped and transposed (no conv_transpose pass)
  inputGrad(gpu, p, s, a, v, _o, name) {
    const b = zeroBias(gpu, s.CI, name);
    const ops = winogradConv(gpu, p, transposedShape(s), { x: a.dy, w: a.w, b, y: a.dx }, v, true, name);
    return [withVariant(sequence(name, ops), id(v))];
  },
  weightGrad(gpu, p, s, a, v, o, name) {
    const ops = winogradWeightGrad(gpu, p, s, { x: a.x, dy: a.dy, dw: a.dw }, v, name);
    const { HO, WO } = outSize(s);
    const bias = a.db
      ? biasGrad(gpu, p, { dy: a.dy, db: a.db, M: s.N * HO * WO, C: s.CO }, o.WG, `${name}.b`)
      : [];
    return [withVariant(sequence(`${name}.w`, ops), id(v)), ...bias];
  },
};
