// The "tiled" kind of convolution variant (kernels/conv_tiled.wgsl, kernels/conv_wgrad_tiled.wgsl): the
// shared-memory tiled GEMM for real GPUs. A workgroup computes a BM x BN output tile staging the reduction BK
// at a time in workgroup memory (DB = 2: double-buffered), each invocation TM x 4*TN4 outputs. The input
// gradient is the forward kernel on dy with the weights transposed; the weight gradient's bias is summed per
// workgroup (subgroupAdd where the device has subgroups).

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import {
  type Binding,
  type ConvKind,
  type ConvShape,
  DEFAULT_SPLIT_TARGET,
  DEFAULT_WG,
  directMultiplies,
  type ForwardBuffers,
  maxInvocations,
  outSize,
  sizesProblem,
  splitCount,
  splitWeightGrad,
  transposedInputGrad,
  withVariant,
} from "./conv_base.ts";

export interface TiledVariant {
  kind: "tiled";
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN4: number;
  DB: 1 | 2;
}

/**
 * A tile of kernels/conv_tiled.wgsl: a workgroup computes BM pixels x BN channels, staging K in chunks of BK;
 * each invocation owns TM pixels x 4*TN4 channels, so the workgroup has (BM/TM) * (BN/(4*TN4)) invocations.
 */
export interface TiledBlock {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN4: number;
  DB?: 1 | 2;
}

/** 64 x 64 tiles (256 invocations of 4 x 4); 128 x 32 when CO <= 32 so narrow layers waste fewer lanes. */
export function tiledBlock(CO: number): TiledBlock {
  return CO <= 32 ? { BM: 128, BN: 32, BK: 16, TM: 4, TN4: 1 } : { BM: 64, BN: 64, BK: 16, TM: 4, TN4: 1 };
}

/**
 * Bytes of workgroup memory conv_tiled.wgsl declares for a block (f32; its A tile has one vec4 of row
 * padding, so this also bounds conv_wgrad_tiled.wgsl's 4*BK*(BM+BN)), times DB when double-buffered.
 */
export function tiledWorkgroupBytes(t: TiledBlock): number {
  return 4 * t.BK * (t.BM + 4 + t.BN) * (t.DB ?? 1);
}

/** Invocations per workgroup of conv_tiled.wgsl and conv_wgrad_tiled.wgsl for a block. */
export function tiledWorkgroupSize(t: TiledBlock): number {
  return (t.BM / t.TM) * (t.BN / 4 / t.TN4);
}

const tl = (BM: number, BN: number, BK: number, TM: number, TN4: number, DB: 1 | 2): TiledVariant => ({
  kind: "tiled",
  BM,
  BN,
  BK,
  TM,
  TN4,
  DB,
});

function id(v: TiledVariant): string {
  return `tiled-${v.BM}x${v.BN}x${v.BK}-${v.TM}x${4 * v.TN4}${v.DB === 2 ? "-db2" : ""}`;
}

function unfit(v: TiledVariant, limits: Record<string, number>): string | undefined {
  if (v.TM % 4 || v.BM % v.TM || (v.BN / 4) % v.TN4 || v.BK % 4) return "inconsistent tile";
  const size = tiledWorkgroupSize(v), bytes = tiledWorkgroupBytes(v), max = maxInvocations(limits);
  if (size > max) return `${size} invocations > ${max}`;
  const maxBytes = limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (bytes > maxBytes) return `${bytes} B of workgroup memory > ${maxBytes}`;
  return undefined;
}

function checkDevice(gpu: Gpu, v: TiledVariant, name: string) {
  const why = unfit(v, gpu.device.limits as unknown as Record<string, number>);
  if (why) throw new Error(`${name}: tiled conv ${id(v)} does not fit this device: ${why}`);
}

function forward(gpu: Gpu, p: Precision, s: ConvShape, a: ForwardBuffers, v: TiledVariant, name: string): Op {
  const { HO, WO } = outSize(s);
  checkDevice(gpu, v, name);
  const tilesM = Math.ceil((s.N * HO * WO) / v.BM), tilesN = Math.ceil(s.CO / v.BN);
  const grid = grid2d(tilesM * tilesN, gpu.device.limits.maxComputeWorkgroupsPerDimension);
  const { BM, BN, BK, TM, TN4, DB } = v;
  const pipe = gpu.pipeline("conv_tiled.wgsl", "conv_forward", { ...s, HO, WO, BM, BN, BK, TM, TN4, DB }, p);
  return withVariant(dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], grid), id(v));
}

/** Workgroup size of the workgroup-summed bias gradient (a power of two). */
const BIAS_WG = 256;

/**
 * The bias gradient's KSPLIT partial sums into `part` ([KSPLIT][C] f32, or db itself when KSPLIT = 1), one
 * workgroup of BIAS_WG invocations per (chunk, 4 channels), summed with subgroupAdd where `subgroups`
 * (kernels/ conv_bias_grad_sg.wgsl) or by a tree in workgroup memory (bias_grad_wg in conv_bias_grad.wgsl).
 */
function biasGradWg(
  gpu: Gpu,
  p: Precision,
  a: { dy: Binding; part: Binding; M: number; C: number; KSPLIT: number },
  subgroups = false,
  name = "bias_grad",
): Op {
  const WG = BIAS_WG;
  const grid = grid2d((a.C / 4) * a.KSPLIT, gpu.device.limits.maxComputeWorkgroupsPerDimension);
  const consts = { M: a.M, CO: a.C, KSPLIT: a.KSPLIT, WG };
  const pipe = subgroups
    ? gpu.pipeline("conv_bias_grad_sg.wgsl", "bias_grad_sg", consts, p)
    : gpu.pipeline("conv_bias_grad.wgsl", "bias_grad_wg", consts, p);
  return dispatch(gpu, `${name}.b${subgroups ? "_sg" : "_wg"}`, pipe, [a.dy, a.part], grid);
}

export const TILED_KIND: ConvKind<TiledVariant> = {
  name: "tiled",
  files: [
    "conv_tiled.wgsl",
    "conv_transpose.wgsl",
    "conv_wgrad_tiled.wgsl",
    "conv_bias_grad.wgsl",
    "conv_bias_grad_sg.wgsl",
    "reduce_splits.wgsl",
    "reduce_splits2.wgsl",
  ],
  id,
  parse(text) {
    const m = /^tiled-(\d+)x(\d+)x(\d+)-(\d+)x(\d+)(-db2)?$/.exec(text);
    return m ? tl(+m[1], +m[2], +m[3], +m[4], +m[5] / 4, m[6] ? 2 : 1) : undefined;
  },
  invalid(v) {
    const sizes = sizesProblem({ BM: v.BM, BN: v.BN, BK: v.BK, TM: v.TM, TN: 4 * v.TN4 });
    if (sizes) return sizes;
    return v.BM % 4 || v.BN % 4 ? "inconsistent tile (BM and BN are multiples of 4)" : undefined;
  },
  unfit,
  fit: (v) => v,
  // the blocks of tiledBlock, and GPU-sized tiles: 64x64 to 128x128 outputs per workgroup, 4x4 to 8x8 per
  // invocation, single or double-buffered
  candidates: () => [
    tl(64, 64, 16, 4, 1, 1),
    tl(128, 32, 16, 4, 1, 1),
    tl(64, 64, 16, 4, 1, 2),
    tl(64, 64, 16, 8, 2, 1),
    tl(128, 64, 16, 8, 1, 2),
    tl(128, 128, 8, 8, 2, 2),
    tl(128, 128, 16, 8, 2, 1),
  ],
  fromTiles: (_t, _pass, s) => ({ ...tiledBlock(s.CO), DB: 1, kind: "tiled" }),
  multiplies: (s) => directMultiplies(s),
  forward,
  inputGrad: (gpu, p, s, a, v, o, name) =>
    transposedInputGrad(gpu, s, a, o.WG ?? DEFAULT_WG, name, (ts, fa) => forward(gpu, p, ts, fa, v, name)),
  // rows KH*KW*CI x CO columns in BM x BN tiles, the pixels split into KSPLIT chunks
  weightGrad(gpu, p, s, a, v, o, name): Op[] {
    const { HO, WO } = outSize(s);
    checkDevice(gpu, v, name);
    const size = tiledWorkgroupSize(v);
    const tileCount = Math.ceil((s.KH * s.KW * s.CI) / v.BM) * Math.ceil(s.CO / v.BN);
    return splitWeightGrad(gpu, s, a, o.WG ?? DEFAULT_WG, name, (K) => {
      const KSPLIT = splitCount(K, tileCount * size, o.splitTarget ?? DEFAULT_SPLIT_TARGET);
      const grid = grid2d(tileCount * KSPLIT, gpu.device.limits.maxComputeWorkgroupsPerDimension);
      const { BM, BN, BK, TM, TN4, DB } = v;
      const consts = { ...s, HO, WO, BM, BN, BK, TM, TN4, DB, KSPLIT };
      const pipe = gpu.pipeline("conv_wgrad_tiled.wgsl", "conv_wgrad", consts, p);
      return {
        KSPLIT,
        weights: (part) => withVariant(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, part], grid), id(v)),
        bias: (part, KSPLITB) =>
          biasGradWg(gpu, p, { dy: a.dy, part, M: K, C: s.CO, KSPLIT: KSPLITB }, o.subgroups, name),
      };
    });
  },
};
