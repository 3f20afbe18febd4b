// What every convolution kernel variant shares: the shape and its checks, the record a variant kind is
// (ConvKind: lib/nn/conv_variants.ts holds the registry of them), and the ops several kinds use (the weights'
// transpose for the input gradient, the bias gradients, the fixed-order reduction of split-K partial sums).
// NHWC activations, HWIO f32 weights: see kernels/conv.wgsl for the layouts.

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";

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

/** The three passes of a convolution layer (the keys of a choice). */
export type ConvPass = "forward" | "input_grad" | "weight_grad";

export type Binding = GPUBuffer | GPUBufferBinding;

/** The buffers of each pass: x, y, dx, dy NHWC `act`; w, dw HWIO f32; b, db [CO] f32. */
export interface ForwardBuffers {
  x: Binding;
  w: Binding;
  b: Binding;
  y: Binding;
}
export interface InputGradBuffers {
  dy: Binding;
  w: Binding;
  dx: Binding;
}
export interface WeightGradBuffers {
  x: Binding;
  dy: Binding;
  dw: Binding;
  db?: Binding;
}

/**
 * Settings of the ops beside the variant: WG the workgroup size of the helper kernels (transpose, bias
 * gradient, reduce); splitTarget: split-K weight gradients aim for at least this many invocations; subgroups:
 * the tiled weight gradient's bias sums with subgroupAdd.
 */
export interface ConvOpOptions {
  WG?: number;
  splitTarget?: number;
  subgroups?: boolean;
}
export const DEFAULT_WG = 64;
export const DEFAULT_SPLIT_TARGET = 16384;

/** The register blocks of a session's tiles (lib/nn/conv.ts ConvTiles) a kind's default variant is made of. */
export interface TileDefaults {
  TM: number; // output pixels per invocation (forward / input gradient)
  TN4: number; // vec4 output channels per invocation
  TMV: number; // vec4 input channels per invocation (weight gradient)
  TN4W: number; // vec4 output channels per invocation (weight gradient)
  WG: number; // workgroup size
}

/**
 * One kind of kernel variant (register blocks, workgroup tiles, Winograd, ...): everything the tuner, the run
 * log, the bench and the ops need of it. A variant is a plain value `{ kind: name, ...sizes }` with a stable
 * id. The shape handed to `fit`, `forward` and to the checks is the one of the kernel that runs (for the
 * input gradient: transposedShape); `inputGrad` and `weightGrad` take the layer's shape.
 */
export interface ConvKind<V extends { kind: string }> {
  readonly name: V["kind"];
  /** kernels/ files its ops compile (the tuner's cache key hashes them: lib/nn/tune.ts KERNEL_FILES). */
  readonly files: readonly string[];
  id(v: V): string;
  /** The variant of an id of this kind, or undefined when the id is not one. */
  parse(id: string): V | undefined;
  /** Why the sizes make no kernel (zero, fractional, over-large blocks), before any WGSL is built. */
  invalid(v: V, pass: ConvPass): string | undefined;
  /** Why the variant does not fit a device with `limits` (workgroup size or memory). */
  unfit(v: V, limits: Record<string, number>): string | undefined;
  /** The variant that runs `pass` on shape `s`: blocks shrunk to the channels, or another kind's variant. */
  fit(v: V, pass: ConvPass, s: ConvShape): { kind: string };
  /** The tuner's candidates of a pass (those that do not fit the device are dropped by the registry). */
  candidates(pass: ConvPass): V[];
  /** The default variant made of a session's tiles; only kinds that can be ConvTiles.variant have one. */
  fromTiles?(t: TileDefaults, pass: ConvPass, s: ConvShape): V;
  /** Multiplies the pass does on the layer's shape `s` (the bench's GMul). */
  multiplies(s: ConvShape, pass: ConvPass, v: V): number;
  forward(gpu: Gpu, p: Precision, s: ConvShape, a: ForwardBuffers, v: V, name: string): Op;
  inputGrad(
    gpu: Gpu,
    p: Precision,
    s: ConvShape,
    a: InputGradBuffers,
    v: V,
    o: ConvOpOptions,
    name: string,
  ): Op[];
  weightGrad(
    gpu: Gpu,
    p: Precision,
    s: ConvShape,
    a: WeightGradBuffers,
    v: V,
    o: ConvOpOptions,
    name: string,
  ): Op[];
}

export function outSize(s: ConvShape): { HO: number; WO: number } {
  return { HO: s.H + 2 * s.PAD - s.KH + 1, WO: s.W + 2 * s.PAD - s.KW + 1 };
}

/** Why no kernel computes shape `s` (channels not vec4s, an empty output), or undefined. */
export function shapeProblem(s: ConvShape): string | undefined {
  if (s.CI % 4 || s.CO % 4) return `conv: channels must be multiples of 4 (CI=${s.CI}, CO=${s.CO})`;
  const { HO, WO } = outSize(s);
  if (HO < 1 || WO < 1) return `conv: empty output for ${JSON.stringify(s)}`;
  return undefined;
}

export function checkShape(s: ConvShape): void {
  const why = shapeProblem(s);
  if (why) throw new Error(why);
}

/** The shape of the forward convolution that computes the input gradient of `s` (on dy, flipped weights). */
export function transposedShape(s: ConvShape): ConvShape {
  const { HO, WO } = outSize(s);
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
  return ts;
}

/** The direct convolution's multiplies: KH*KW per output and channel pair (every pass does as many). */
export function directMultiplies(s: ConvShape): number {
  const { HO, WO } = outSize(s);
  return s.N * HO * WO * s.KH * s.KW * s.CI * s.CO;
}

/** The largest register block the register-blocked kernels are built for (outputs per invocation, each side). */
const MAX_REGISTER_BLOCK = 32;

/** Sizes that are not positive integers, named (`TM=0, BK=1.5: ...`), or undefined. */
export function sizesProblem(sizes: Record<string, number>): string | undefined {
  const bad = Object.entries(sizes).filter(([, x]) => !Number.isSafeInteger(x) || x < 1);
  if (!bad.length) return undefined;
  return `${bad.map(([k, x]) => `${k}=${x}`).join(", ")}: sizes must be positive integers`;
}

/** Why a TM x 4*TN4 register block cannot be built (too large; the weight gradient's TM not a multiple of 4). */
export function registerBlockProblem(TM: number, TN4: number, pass: ConvPass): string | undefined {
  if (TM > MAX_REGISTER_BLOCK || 4 * TN4 > MAX_REGISTER_BLOCK) {
    return `a ${TM}x${4 * TN4} register block is larger than the register kernels hold ` +
      `(at most ${MAX_REGISTER_BLOCK}x${MAX_REGISTER_BLOCK})`;
  }
  if (pass === "weight_grad" && TM % 4) {
    return `TM=${TM}: the weight gradient's register block takes a multiple of 4 input channels`;
  }
  return undefined;
}

/** The most invocations a workgroup may have on a device with `limits` (WebGPU's default 256). */
export function maxInvocations(limits: Record<string, number>): number {
  return Math.min(limits.maxComputeInvocationsPerWorkgroup ?? 256, limits.maxComputeWorkgroupSizeX ?? 256);
}

export function largestDivisor(n: number, cands: number[]): number {
  for (const c of cands) if (n % c === 0) return c;
  return 1;
}

export function groups(gpu: Gpu, threads: number, wg: number): { grid: [number, number] } {
  const grid = grid2d(Math.ceil(threads / wg), gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return { grid };
}

/** Ops carry the id of the kernel variant they run (the run log, the bench). */
export type VariantOp = Op & { variant?: string };

export function withVariant(op: Op, id: string): VariantOp {
  return Object.assign(op, { variant: id });
}

/** Ops run back to back as one (dispatches in a pass are ordered: each sees the writes of the ones before). */
export function sequence(name: string, ops: Op[]): Op {
  return {
    name,
    encode: (pass) => ops.forEach((o) => o.encode(pass)),
    warm: (pass) => ops.forEach((o) => o.warm(pass)),
  };
}

/** A zero bias of `count` floats (the input gradient is a convolution without one; buffers start zeroed). */
export function zeroBias(gpu: Gpu, count: number, name: string): GPUBuffer {
  return gpu.buffer(count * 4, `${name}.zero_bias`);
}

/**
 * dx = conv_transpose(dy, w) with a direct kind's forward: the weights flipped and transposed into a scratch
 * buffer (f32, KH*KW*CI*CO; kernels/conv_transpose.wgsl), then `forward` on the transposed shape with a zero
 * bias. dy NHWC [N][HO][WO][CO], dx NHWC [N][H][W][CI].
 */
export function transposedInputGrad(
  gpu: Gpu,
  s: ConvShape,
  a: InputGradBuffers,
  WG: number,
  name: string,
  forward: (ts: ConvShape, a: ForwardBuffers) => Op,
): Op[] {
  const count = s.KH * s.KW * s.CI * s.CO;
  const zero = zeroBias(gpu, s.CI, name);
  const wt = gpu.buffer(count * 4, `${name}.wt`);
  const t = groups(gpu, count, WG);
  const consts = { CI: s.CI, CO: s.CO, KH: s.KH, KW: s.KW, WG };
  const tpipe = gpu.pipeline("conv_transpose.wgsl", "conv_transpose", consts);
  return [
    dispatch(gpu, `${name}.transpose`, tpipe, [a.w, wt], t.grid),
    forward(transposedShape(s), { x: a.dy, w: wt, b: zero, y: a.dx }),
  ];
}

/** Number of K chunks for a split-K reduction over `k` items with `otherThreads` parallel outputs. */
export function splitCount(k: number, otherThreads: number, target: number): number {
  const want = Math.ceil(target / otherThreads);
  return Math.max(1, Math.min(want, Math.floor(k / 64), 256));
}

/** A direct kind's split-K weight gradient: its chunk count and its two dispatches (see splitWeightGrad). */
export interface SplitPlan {
  KSPLIT: number;
  /** The weight gradient's partial sums into `part` ([KSPLIT][KH*KW*CI*CO] f32; dw itself when KSPLIT = 1). */
  weights(part: Binding): Op;
  /** The bias gradient's partial sums into `part` ([KSPLITB][CO] f32; db itself when KSPLITB = 1). */
  bias(part: Binding, KSPLITB: number): Op;
}

/**
 * dw (HWIO f32, written) and optionally db ([CO] f32, written) of a direct kind: its weight and bias partial
 * sums (`plan`, given the K = N*HO*WO pixels summed over), then one dispatch that sums the partials of both
 * in a fixed order (reduce_splits2; sets with one split are written in place): a layer with a bias takes 3
 * dispatches, deterministic. The bias is split as biasGrad splits it (same chunks, same bits).
 */
export function splitWeightGrad(
  gpu: Gpu,
  s: ConvShape,
  a: WeightGradBuffers,
  WG: number,
  name: string,
  plan: (K: number) => SplitPlan,
): Op[] {
  const { HO, WO } = outSize(s);
  const K = s.N * HO * WO;
  const wcount = s.KH * s.KW * s.CI * s.CO;
  const KSPLITB = a.db ? splitCount(K, s.CO / 4, 4096) : 0;
  const bpart = a.db && KSPLITB > 1 ? gpu.buffer(KSPLITB * s.CO * 4, `${name}.b.partial`) : a.db;
  const { KSPLIT, weights, bias } = plan(K);
  const wpart = KSPLIT === 1 ? a.dw : gpu.buffer(KSPLIT * wcount * 4, `${name}.partial`);
  const ops = [weights(wpart)];
  if (bpart) ops.push(bias(bpart, KSPLITB));
  const sets: SplitSet[] = [];
  if (KSPLIT > 1) sets.push({ part: wpart, out: a.dw, count: wcount, k: KSPLIT });
  if (a.db && KSPLITB > 1) sets.push({ part: bpart!, out: a.db, count: s.CO, k: KSPLITB });
  if (sets.length === 1) ops.push(reduceSplits(gpu, sets[0], WG, `${name}.reduce`));
  else if (sets.length === 2) ops.push(reduceSplits2(gpu, sets[0], sets[1], WG, `${name}.reduce`));
  return ops;
}

/** db[c] = sum over M rows of dy[m][c] (dy act [M][C], db f32 [C]); deterministic split + reduce. */
export function biasGrad(
  gpu: Gpu,
  p: Precision,
  a: { dy: Binding; db: Binding; M: number; C: number },
  WG = DEFAULT_WG,
  name = "bias_grad",
): Op[] {
  if (a.C % 4) throw new Error(`bias grad: channels must be a multiple of 4 (C=${a.C})`);
  const KSPLIT = splitCount(a.M, a.C / 4, 4096);
  const g = groups(gpu, (a.C / 4) * KSPLIT, WG);
  const pipe = gpu.pipeline("conv_bias_grad.wgsl", "bias_grad", { M: a.M, CO: a.C, KSPLIT, WG }, p);
  if (KSPLIT === 1) return [dispatch(gpu, name, pipe, [a.dy, a.db], g.grid)];
  const part = gpu.buffer(KSPLIT * a.C * 4, `${name}.partial`);
  return [
    dispatch(gpu, name, pipe, [a.dy, part], g.grid),
    reduceSplits(gpu, { part, out: a.db, count: a.C, k: KSPLIT }, WG, `${name}.reduce`),
  ];
}

/** One set of split partial sums: part [k][count] f32 summed into out [count]. */
interface SplitSet {
  part: Binding;
  out: Binding;
  count: number;
  k: number;
}

/** kernels/reduce_splits.wgsl: out[i] = sum over the k splits of part[s][i], in order. */
function reduceSplits(gpu: Gpu, a: SplitSet, WG: number, name: string): Op {
  const L4 = a.count / 4;
  const g = groups(gpu, L4, WG);
  const pipe = gpu.pipeline("reduce_splits.wgsl", "reduce_splits", { L4, KSPLIT: a.k, WG });
  return dispatch(gpu, name, pipe, [a.part, a.out], g.grid);
}

/** kernels/reduce_splits2.wgsl: two sets in one dispatch, each with the bits of reduceSplits. */
function reduceSplits2(gpu: Gpu, a: SplitSet, b: SplitSet, WG: number, name: string): Op {
  const L4 = a.count / 4, L4B = b.count / 4;
  const BOFF = Math.ceil(L4 / WG) * WG;
  const g = groups(gpu, BOFF + L4B, WG);
  const consts = { L4, KSPLIT: a.k, L4B, KSPLITB: b.k, BOFF, WG };
  const pipe = gpu.pipeline("reduce_splits2.wgsl", "reduce_splits2", consts);
  return dispatch(gpu, name, pipe, [a.part, a.out, b.part, b.out], g.grid);
}
