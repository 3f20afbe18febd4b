// Convolution ops (kernels/conv*.wgsl): forward, input gradient and weight/bias gradient, NHWC activations and
// HWIO f32 weights. See kernels/conv.wgsl for the layouts.

import { type AdapterReport, dispatch, type Gpu, grid2d, type Op, type Precision } from "../gpu/gpu.ts";
import { winogradConv, winogradMultiplies, type WinogradVariant, winogradWeightGrad } from "./winograd.ts";

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

/**
 * How the convolutions (forward, so also the input gradient, and the weight gradient) are computed by default:
 *   "register":  conv.wgsl / conv_wgrad.wgsl, register blocking with vec4 global loads and no workgroup memory
 *                (fastest on CPU adapters such as lavapipe, where workgroup memory and barriers buy nothing);
 *   "tiled":     conv_tiled.wgsl / conv_wgrad_tiled.wgsl, the shared-memory tiled GEMM (BM x BN output tiles,
 *                the reduction in chunks of BK staged in workgroup memory; tiledBlock): for real GPUs.
 * TM, TN4, TMV, TN4W and WG tune the default "register" kernels; splitTarget applies to both weight gradients.
 * A layer's pass can take any other kernel variant (KernelVariant) through `choices` (lib/nn/tune.ts fills it).
 */
export type ConvVariant = "register" | "tiled";

/** The three passes of a convolution layer (the keys of a choice). */
export type ConvPass = "forward" | "input_grad" | "weight_grad";

/**
 * One kernel variant, a value with a stable id (variantId):
 *   register: conv.wgsl / conv_wgrad.wgsl; each invocation owns TM x 4*TN4 outputs (forward: TM pixels x
 *             4*TN4 channels; weight gradient: TM input channels, a multiple of 4, x 4*TN4 output channels);
 *             WG invocations per workgroup.
 *   tiled:    conv_tiled.wgsl / conv_wgrad_tiled.wgsl; a workgroup computes a BM x BN output tile staging the
 *             reduction BK at a time in workgroup memory (DB = 2: double-buffered), each invocation TM x 4*TN4.
 */
export interface RegisterVariant {
  kind: "register";
  TM: number;
  TN4: number;
  WG: number;
}
export interface TiledVariant {
  kind: "tiled";
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN4: number;
  DB: 1 | 2;
}
/** winograd: lib/nn/winograd.ts, F(MT x MT, 3 x 3) for 3x3 "same" forward and input gradient (MT = 2 or 4). */
export type KernelVariant = RegisterVariant | TiledVariant | WinogradVariant;
export type { WinogradVariant };

/** Stable string id of a variant, e.g. "register-8x8-wg64", "tiled-128x128x8-8x8-db2". */
export function variantId(v: KernelVariant): string {
  if (v.kind === "register") return `register-${v.TM}x${4 * v.TN4}-wg${v.WG}`;
  if (v.kind === "winograd") return `winograd-f${v.MT}-${v.TM}x${4 * v.TN4}`;
  return `tiled-${v.BM}x${v.BN}x${v.BK}-${v.TM}x${4 * v.TN4}${v.DB === 2 ? "-db2" : ""}`;
}

/** The variant of an id (the inverse of variantId); throws on anything else. */
export function parseVariantId(id: string): KernelVariant {
  let m = /^register-(\d+)x(\d+)-wg(\d+)$/.exec(id);
  if (m) return { kind: "register", TM: +m[1], TN4: +m[2] / 4, WG: +m[3] };
  m = /^tiled-(\d+)x(\d+)x(\d+)-(\d+)x(\d+)(-db2)?$/.exec(id);
  if (m) {
    return { kind: "tiled", BM: +m[1], BN: +m[2], BK: +m[3], TM: +m[4], TN4: +m[5] / 4, DB: m[6] ? 2 : 1 };
  }
  m = /^winograd-f([24])-(\d+)x(\d+)$/.exec(id);
  if (m) return { kind: "winograd", MT: +m[1] as 2 | 4, TM: +m[2], TN4: +m[3] / 4 };
  throw new Error(`conv: unknown kernel variant id ${JSON.stringify(id)}`);
}

export interface ConvTiles {
  variant: ConvVariant; // which kernels by default
  TM: number; // output pixels per invocation (forward / input gradient)
  TN4: number; // vec4 output channels per invocation
  TMV: number; // vec4 input channels per invocation (weight gradient)
  TN4W: number; // vec4 output channels per invocation (weight gradient)
  WG: number; // workgroup size
  splitTarget: number; // weight gradient: aim for at least this many invocations
  /** Per layer and pass (key `${label}|${pass}`, see choiceKey): the variant that overrides the default. */
  choices?: Record<string, KernelVariant>;
  /** Bias gradient of tiled weight gradients with subgroup sums; default: where the device has subgroups. */
  subgroups?: boolean;
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
  return { ...DEFAULT_TILES, variant: adapter.isCpu ? "register" : "tiled" };
}

/**
 * Tile of the "tiled" variant (kernels/conv_tiled.wgsl): a workgroup computes BM pixels x BN channels,
 * staging K in chunks of BK; each invocation owns TM pixels x 4*TN4 channels, so the workgroup has
 * (BM/TM) * (BN/(4*TN4)) invocations.
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
 * Bytes of workgroup memory conv_tiled.wgsl declares for a block (f32; its A tile has one vec4 of row padding,
 * so this also bounds conv_wgrad_tiled.wgsl's 4*BK*(BM+BN)), times DB when double-buffered.
 */
export function tiledWorkgroupBytes(t: TiledBlock): number {
  return 4 * t.BK * (t.BM + 4 + t.BN) * (t.DB ?? 1);
}

/** Invocations per workgroup of conv_tiled.wgsl and conv_wgrad_tiled.wgsl for a block. */
export function tiledWorkgroupSize(t: TiledBlock): number {
  return (t.BM / t.TM) * (t.BN / 4 / t.TN4);
}

/** The key of a layer's pass in ConvTiles.choices. */
export function choiceKey(label: string, pass: ConvPass): string {
  return `${label}|${pass}`;
}

/** The layer label of a conv op name (convForward: the label; the gradients: label.igrad / label.wgrad). */
function labelOf(name: string): string {
  return name.replace(/\.(igrad|wgrad)$/, "");
}

/** The default variant of a pass for `tiles` (shape `s` of the kernel that runs: for the input grad, the transposed conv). */
export function defaultVariant(tiles: ConvTiles, pass: ConvPass, s: ConvShape): KernelVariant {
  if (tiles.variant === "tiled") return { ...tiledBlock(s.CO), DB: 1, kind: "tiled" };
  if (pass === "weight_grad") return { kind: "register", TM: 4 * tiles.TMV, TN4: tiles.TN4W, WG: tiles.WG };
  return { kind: "register", TM: tiles.TM, TN4: tiles.TN4, WG: tiles.WG };
}

/**
 * The variant an op actually runs: the layer's choice or the default, register blocks shrunk to what the
 * channel counts divide (as the register kernels always did).
 */
export function resolveVariant(tiles: ConvTiles, name: string, pass: ConvPass, s: ConvShape): KernelVariant {
  return fitVariant(
    tiles.choices?.[choiceKey(labelOf(name), pass)] ?? defaultVariant(tiles, pass, s),
    pass,
    s,
  );
}

/** Whether a shape is a stride-1 "same" 3x3 convolution (what the Winograd variants compute). */
export function winogradShape(s: ConvShape): boolean {
  return s.KH === 3 && s.KW === 3 && s.PAD === 1;
}

/** The register variant a Winograd variant stands for where it does not apply (other shapes, weight grads). */
const DIRECT_OF_WINOGRAD: RegisterVariant = { kind: "register", TM: 8, TN4: 2, WG: 64 };

/**
 * A register variant's blocks shrunk to what the shape's channel counts divide (tiled variants: as given);
 * a Winograd variant on a shape it does not compute (not a 3x3 "same" convolution) becomes the default register one.
 */
export function fitVariant(v: KernelVariant, pass: ConvPass, s: ConvShape): KernelVariant {
  if (v.kind === "tiled") return v;
  if (v.kind === "winograd") {
    if (!winogradShape(s)) return fitVariant(DIRECT_OF_WINOGRAD, pass, s);
    const TN4 = largestDivisor(s.CO / 4, [v.TN4, 2, 1]);
    if (pass !== "weight_grad") return { ...v, TN4 };
    return { ...v, TM: 4 * largestDivisor(s.CI / 4, [Math.max(1, v.TM / 4), 2, 1]), TN4 };
  }
  if (pass === "weight_grad") {
    const TMV = largestDivisor(s.CI / 4, [Math.max(1, v.TM / 4), 2, 1]);
    return { ...v, TM: 4 * TMV, TN4: largestDivisor(s.CO / 4, [v.TN4, 2, 1]) };
  }
  return { ...v, TN4: largestDivisor(s.CO / 4, [v.TN4, 2, 1]) };
}

/** Why a variant cannot run on this device (workgroup size or memory), or undefined when it can. */
export function variantUnfit(v: KernelVariant, limits: Record<string, number>): string | undefined {
  const maxInv = Math.min(
    limits.maxComputeInvocationsPerWorkgroup ?? 256,
    limits.maxComputeWorkgroupSizeX ?? 256,
  );
  if (v.kind === "register") return v.WG > maxInv ? `${v.WG} invocations > ${maxInv}` : undefined;
  if (v.kind === "winograd") return v.MT !== 2 && v.MT !== 4 ? `tile ${v.MT} is not 2 or 4` : undefined;
  if (v.TM % 4 || v.BM % v.TM || (v.BN / 4) % v.TN4 || v.BK % 4) return "inconsistent tile";
  const size = tiledWorkgroupSize(v), bytes = tiledWorkgroupBytes(v);
  if (size > maxInv) return `${size} invocations > ${maxInv}`;
  const maxBytes = limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (bytes > maxBytes) return `${bytes} B of workgroup memory > ${maxBytes}`;
  return undefined;
}

/** The largest register block the register kernels are built for (outputs per invocation, each side). */
export const MAX_REGISTER_BLOCK = 32;

/**
 * Why a variant cannot run as `pass` of a convolution of shape `s` on a device with `limits` (the shape of the
 * kernel that runs: for the input gradient, the transposed conv), or undefined when it can. Catches ids that
 * parse but would compile to nonsense (zero or fractional sizes, over-large blocks) before any WGSL is built.
 */
export function variantProblem(
  v: KernelVariant,
  pass: ConvPass,
  s: ConvShape,
  limits: Record<string, number>,
): string | undefined {
  const sizes = v.kind === "register"
    ? { TM: v.TM, TN: 4 * v.TN4, WG: v.WG }
    : v.kind === "winograd"
    ? { MT: v.MT, TM: v.TM, TN: 4 * v.TN4 }
    : {
      BM: v.BM,
      BN: v.BN,
      BK: v.BK,
      TM: v.TM,
      TN: 4 * v.TN4,
    };
  const bad = Object.entries(sizes).filter(([, x]) => !Number.isSafeInteger(x) || x < 1);
  if (bad.length) return `${bad.map(([k, x]) => `${k}=${x}`).join(", ")}: sizes must be positive integers`;
  if (v.kind !== "tiled" && (v.TM > MAX_REGISTER_BLOCK || 4 * v.TN4 > MAX_REGISTER_BLOCK)) {
    return `a ${v.TM}x${4 * v.TN4} register block is larger than the register kernels hold ` +
      `(at most ${MAX_REGISTER_BLOCK}x${MAX_REGISTER_BLOCK})`;
  }
  if (v.kind !== "tiled" && pass === "weight_grad" && v.TM % 4) {
    return `TM=${v.TM}: the weight gradient's register block takes a multiple of 4 input channels`;
  }
  if (v.kind === "tiled" && (v.BM % 4 || v.BN % 4)) return "inconsistent tile (BM and BN are multiples of 4)";
  try {
    checkShape(s);
  } catch (e) {
    return (e as Error).message;
  }
  return variantUnfit(fitVariant(v, pass, s), limits);
}

/**
 * The candidate variants of a pass (the tuner times each that fits the device): the register blocks around
 * the default, the workgroup tiles of tiledBlock, and GPU-sized tiles (64x64 to 128x128 outputs per
 * workgroup, 4x4 to 8x8 per invocation, single or double-buffered).
 */
export function candidateVariants(pass: ConvPass, limits: Record<string, number> = {}): KernelVariant[] {
  const reg = (TM: number, TN4: number): KernelVariant => ({ kind: "register", TM, TN4, WG: 64 });
  const tl = (BM: number, BN: number, BK: number, TM: number, TN4: number, DB: 1 | 2): KernelVariant => ({
    kind: "tiled",
    BM,
    BN,
    BK,
    TM,
    TN4,
    DB,
  });
  const regs = pass === "weight_grad"
    ? [reg(8, 4), reg(4, 4), reg(8, 2), reg(4, 2)]
    : [reg(8, 2), reg(4, 2), reg(8, 4), reg(4, 4)];
  const tiled = [
    tl(64, 64, 16, 4, 1, 1),
    tl(128, 32, 16, 4, 1, 1),
    tl(64, 64, 16, 4, 1, 2),
    tl(64, 64, 16, 8, 2, 1),
    tl(128, 64, 16, 8, 1, 2),
    tl(128, 128, 8, 8, 2, 2),
    tl(128, 128, 16, 8, 2, 1),
  ];
  const wino: KernelVariant[] = pass === "weight_grad"
    ? [{ kind: "winograd", MT: 2, TM: 8, TN4: 4 }, { kind: "winograd", MT: 4, TM: 8, TN4: 4 }]
    : [
      { kind: "winograd", MT: 2, TM: 8, TN4: 2 },
      { kind: "winograd", MT: 4, TM: 8, TN4: 2 },
      { kind: "winograd", MT: 4, TM: 4, TN4: 4 },
    ];
  return [...regs, ...tiled, ...wino].filter((v) => variantUnfit(v, limits) === undefined);
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

function groups(gpu: Gpu, threads: number, wg: number): { grid: [number, number] } {
  const grid = grid2d(Math.ceil(threads / wg), gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return { grid };
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
  return convForwardWith(gpu, p, s, a, resolveVariant(tiles, name, "forward", s), name);
}

/** convForward with an explicit variant (the tuner, the tests). */
export function convForwardWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; w: Binding; b: Binding; y: Binding },
  v: KernelVariant,
  name = "conv_forward",
): Op {
  checkShape(s);
  const { HO, WO } = outSize(s);
  v = fitVariant(v, "forward", s);
  if (v.kind === "winograd") {
    return withVariant(sequence(name, winogradConv(gpu, p, s, a, v, false, name)), v);
  }
  if (v.kind === "tiled") return convForwardTiled(gpu, p, s, a, v, name);
  const { TM, TN4, WG } = v;
  const threads = Math.ceil((s.N * HO * WO) / TM) * (s.CO / 4 / TN4);
  const { grid } = groups(gpu, threads, WG);
  const pipe = gpu.pipeline("conv.wgsl", "conv_forward", { ...s, HO, WO, TM, TN4, WG }, p);
  return withVariant(dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], grid), v);
}

/** Ops carry the id of the kernel variant they run (the run log, the bench). */
export type VariantOp = Op & { variant?: string };

function withVariant(op: Op, v: KernelVariant): VariantOp {
  return Object.assign(op, { variant: variantId(v) });
}

/** Ops run back to back as one (dispatches in a pass are ordered: each sees the writes of the ones before). */
function sequence(name: string, ops: Op[]): Op {
  return {
    name,
    encode: (pass) => ops.forEach((o) => o.encode(pass)),
    warm: (pass) => ops.forEach((o) => o.warm(pass)),
  };
}

/**
 * Multiplies a pass of a layer does with the variant `id` (the bench): T^2 per tile and channel pair for a
 * Winograd variant that ran, else the direct convolution's KH*KW per output and channel pair.
 */
export function convMultiplies(s: ConvShape, pass: ConvPass, id: string | null): number {
  const v = id ? parseVariantId(id) : undefined;
  if (v?.kind === "winograd") {
    const ws = pass === "input_grad" ? transposedShape(s) : s;
    return winogradMultiplies(ws, v.MT);
  }
  const { HO, WO } = outSize(s);
  return s.N * HO * WO * s.KH * s.KW * s.CI * s.CO;
}

function checkTiled(gpu: Gpu, t: TiledVariant, name: string) {
  const why = variantUnfit(t, gpu.device.limits as unknown as Record<string, number>);
  if (why) throw new Error(`${name}: tiled conv ${variantId(t)} does not fit this device: ${why}`);
}

function convForwardTiled(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; w: Binding; b: Binding; y: Binding },
  t: TiledVariant,
  name: string,
): Op {
  const { HO, WO } = outSize(s);
  checkTiled(gpu, t, name);
  const lim = gpu.device.limits;
  const tilesM = Math.ceil((s.N * HO * WO) / t.BM), tilesN = Math.ceil(s.CO / t.BN);
  const grid = grid2d(tilesM * tilesN, lim.maxComputeWorkgroupsPerDimension);
  const { BM, BN, BK, TM, TN4, DB } = t;
  const consts = { ...s, HO, WO, BM, BN, BK, TM, TN4, DB };
  const pipe = gpu.pipeline("conv_tiled.wgsl", "conv_forward", consts, p);
  return withVariant(dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], grid), t);
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
  const v = resolveVariant(tiles, name, "input_grad", transposedShape(s));
  return convInputGradWith(gpu, p, s, a, v, tiles.WG, name);
}

/** convInputGrad with an explicit variant of its forward kernel (the tuner, the tests). */
export function convInputGradWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { dy: Binding; w: Binding; dx: Binding },
  v: KernelVariant,
  WG = DEFAULT_TILES.WG,
  name = "conv_input_grad",
): Op[] {
  checkShape(s);
  const ts = transposedShape(s);
  const count = s.KH * s.KW * s.CI * s.CO;
  const zero = gpu.buffer(s.CI * 4, `${name}.zero_bias`); // buffers start zeroed
  v = fitVariant(v, "input_grad", ts);
  if (v.kind === "winograd") {
    // the filter transform reads w flipped and transposed (no conv_transpose pass)
    const ops = winogradConv(gpu, p, ts, { x: a.dy, w: a.w, b: zero, y: a.dx }, v, true, name);
    return [withVariant(sequence(name, ops), v)];
  }
  const wt = gpu.buffer(count * 4, `${name}.wt`);
  const t = groups(gpu, count, WG);
  const tpipe = gpu.pipeline("conv_transpose.wgsl", "conv_transpose", {
    CI: s.CI,
    CO: s.CO,
    KH: s.KH,
    KW: s.KW,
    WG,
  });
  return [
    dispatch(gpu, `${name}.transpose`, tpipe, [a.w, wt], t.grid),
    convForwardWith(gpu, p, ts, { x: a.dy, w: wt, b: zero, y: a.dx }, v, name),
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
  const v = resolveVariant(tiles, name, "weight_grad", s);
  const subgroups = tiles.subgroups ?? gpu.adapter.subgroups;
  return convWeightGradWith(
    gpu,
    p,
    s,
    a,
    v,
    { WG: tiles.WG, splitTarget: tiles.splitTarget, subgroups },
    name,
  );
}

/**
 * convWeightGrad with an explicit variant (the tuner, the tests). Passes: the weight gradient, the bias
 * gradient's partial sums, and one reduce_splits2 for both sets: a layer with a bias takes 3 dispatches (was
 * 4) with the same bits. Register variants: the bias partials of bias_grad; tiled variants: the workgroup-summed
 * bias kernel (subgroup sums where `subgroups`).
 */
export function convWeightGradWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: { x: Binding; dy: Binding; dw: Binding; db?: Binding },
  v: KernelVariant,
  o: { WG?: number; splitTarget?: number; subgroups?: boolean } = {},
  name = "conv_weight_grad",
): Op[] {
  checkShape(s);
  v = fitVariant(v, "weight_grad", s);
  if (v.kind === "winograd") {
    const ops = winogradWeightGrad(gpu, p, s, { x: a.x, dy: a.dy, dw: a.dw }, v, name);
    const { HO, WO } = outSize(s);
    const bias = a.db
      ? biasGrad(gpu, p, { dy: a.dy, db: a.db, M: s.N * HO * WO, C: s.CO }, o.WG, `${name}.b`)
      : [];
    return [withVariant(sequence(`${name}.w`, ops), v), ...bias];
  }
  const WG = o.WG ?? DEFAULT_TILES.WG, splitTarget = o.splitTarget ?? DEFAULT_TILES.splitTarget;
  const { HO, WO } = outSize(s);
  const ops: Op[] = [];
  const K = s.N * HO * WO;
  const wcount = s.KH * s.KW * s.CI * s.CO;
  // The bias partial sums: as biasGrad splits them (same chunks, same bits).
  const KSPLITB = a.db ? splitCount(K, s.CO / 4, 4096) : 0;
  const bpart = a.db && KSPLITB > 1 ? gpu.buffer(KSPLITB * s.CO * 4, `${name}.b.partial`) : a.db;
  let KSPLIT: number;
  let wop: Op;
  const wpart = (k: number) => k === 1 ? a.dw : gpu.buffer(k * wcount * 4, `${name}.partial`);
  let wbuf: Binding;
  if (v.kind === "tiled") {
    // kernels/conv_wgrad_tiled.wgsl: rows KH*KW*CI x CO columns in BM x BN tiles, the pixels split into KSPLIT chunks.
    checkTiled(gpu, v, name);
    const size = tiledWorkgroupSize(v);
    const tileCount = Math.ceil(wcount / s.CO / v.BM) * Math.ceil(s.CO / v.BN);
    KSPLIT = splitCount(K, tileCount * size, splitTarget);
    const grid = grid2d(tileCount * KSPLIT, gpu.device.limits.maxComputeWorkgroupsPerDimension);
    const { BM, BN, BK, TM, TN4, DB } = v;
    const consts = { ...s, HO, WO, BM, BN, BK, TM, TN4, DB, KSPLIT };
    const pipe = gpu.pipeline("conv_wgrad_tiled.wgsl", "conv_wgrad", consts, p);
    wbuf = wpart(KSPLIT);
    wop = dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, wbuf], grid);
    ops.push(withVariant(wop, v));
    if (a.db) {
      ops.push(
        biasGradWg(gpu, p, { dy: a.dy, part: bpart!, M: K, C: s.CO, KSPLIT: KSPLITB }, o.subgroups, name),
      );
    }
  } else {
    const TMV = v.TM / 4, TN4 = v.TN4;
    const blocks = (s.CO / 4 / TN4) * s.KH * s.KW * (s.CI / 4 / TMV);
    KSPLIT = splitCount(K, blocks, splitTarget);
    const g = groups(gpu, blocks * KSPLIT, v.WG);
    const consts = { ...s, HO, WO, TMV, TN4, KSPLIT, WG: v.WG };
    const pipe = gpu.pipeline("conv_wgrad.wgsl", "conv_wgrad", consts, p);
    wbuf = wpart(KSPLIT);
    wop = dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, wbuf], g.grid);
    ops.push(withVariant(wop, v));
    if (a.db) {
      // conv_bias_grad.wgsl's bias_grad into the partials (the reduce below is shared with the weights)
      const gb = groups(gpu, (s.CO / 4) * KSPLITB, WG);
      const bconsts = { M: K, CO: s.CO, KSPLIT: KSPLITB, WG };
      const bpipe = gpu.pipeline("conv_bias_grad.wgsl", "bias_grad", bconsts, p);
      ops.push(dispatch(gpu, `${name}.b`, bpipe, [a.dy, bpart!], gb.grid));
    }
  }
  // One dispatch sums the split partials of both gradients (sets with one split were written in place).
  const sets: { part: Binding; out: Binding; count: number; k: number }[] = [];
  if (KSPLIT > 1) sets.push({ part: wbuf, out: a.dw, count: wcount, k: KSPLIT });
  if (a.db && KSPLITB > 1) sets.push({ part: bpart!, out: a.db, count: s.CO, k: KSPLITB });
  if (sets.length === 1) {
    const [r] = sets;
    ops.push(reduceSplits(gpu, r.part as GPUBuffer, r.out, r.count, r.k, WG, `${name}.reduce`));
  } else if (sets.length === 2) ops.push(reduceSplits2(gpu, sets[0], sets[1], WG, `${name}.reduce`));
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
    { M: a.M, CO: a.C, KSPLIT, WG },
    p,
  );
  if (KSPLIT === 1) return [dispatch(gpu, name, pipe, [a.dy, a.db], g.grid)];
  const part = gpu.buffer(KSPLIT * a.C * 4, `${name}.partial`);
  return [
    dispatch(gpu, name, pipe, [a.dy, part], g.grid),
    reduceSplits(gpu, part, a.db, a.C, KSPLIT, WG, `${name}.reduce`),
  ];
}

/** Workgroup size of the workgroup-summed bias gradient (a power of two). */
const BIAS_WG = 256;

/**
 * The bias gradient's KSPLIT partial sums into `part` ([KSPLIT][C] f32, or db itself when KSPLIT = 1), one
 * workgroup of BIAS_WG invocations per (chunk, 4 channels), summed with subgroupAdd where `subgroups` (kernels/
 * conv_bias_grad_sg.wgsl) or by a tree in workgroup memory (bias_grad_wg in conv_bias_grad.wgsl).
 */
export function biasGradWg(
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

function reduceSplits2(
  gpu: Gpu,
  a: { part: Binding; out: Binding; count: number; k: number },
  b: { part: Binding; out: Binding; count: number; k: number },
  WG: number,
  name: string,
): Op {
  const L4 = a.count / 4, L4B = b.count / 4;
  const BOFF = Math.ceil(L4 / WG) * WG;
  const g = groups(gpu, BOFF + L4B, WG);
  const consts = { L4, KSPLIT: a.k, L4B, KSPLITB: b.k, BOFF, WG };
  const pipe = gpu.pipeline("reduce_splits2.wgsl", "reduce_splits2", consts);
  return dispatch(gpu, name, pipe, [a.part, a.out, b.part, b.out], g.grid);
}

function reduceSplits(
  gpu: Gpu,
  part: Binding,
  out: Binding,
  count: number,
  KSPLIT: number,
  WG: number,
  name: string,
): Op {
  const L4 = count / 4;
  const g = groups(gpu, L4, WG);
  const pipe = gpu.pipeline("reduce_splits.wgsl", "reduce_splits", { L4, KSPLIT, WG });
  return dispatch(gpu, name, pipe, [part, out], g.grid);
}
