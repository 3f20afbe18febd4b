// Convolution ops of a network's layers: forward, input gradient and weight/bias gradient (NHWC activations,
// HWIO f32 weights). Each layer's pass runs a kernel variant (lib/nn/conv_variants.ts: register blocks,
// tiles, Winograd): the session's default (ConvTiles) or the layer's choice (ConvTiles.choices, filled by the
// tuner, lib/nn/tune.ts, or by --variants LOG).

import type { AdapterReport } from "../gpu/adapter.ts";
import type { Gpu, Op } from "../gpu/gpu.ts";
import type { Precision } from "../gpu/kernels.ts";
import {
  checkShape,
  type ConvOpOptions,
  type ConvPass,
  type ConvShape,
  DEFAULT_SPLIT_TARGET,
  DEFAULT_WG,
  type ForwardBuffers,
  type InputGradBuffers,
  type TileDefaults,
  transposedShape,
  type WeightGradBuffers,
} from "./conv_base.ts";
import { convKind, fitVariant, type KernelVariant, type KindName } from "./conv_variants.ts";

/**
 * How a session's convolutions run by default: `variant` is the kind ("register" on CPU adapters, "tiled" on
 * real GPUs; only kinds with a fromTiles default qualify), TM, TN4, TMV, TN4W and WG its register blocks;
 * splitTarget applies to every split-K weight gradient. A layer's pass can take any other variant through
 * `choices` (lib/nn/tune.ts fills it).
 */
export interface ConvTiles extends TileDefaults {
  variant: KindName;
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
  WG: DEFAULT_WG,
  splitTarget: DEFAULT_SPLIT_TARGET,
};

/** The tiles for an adapter: register blocking on CPU adapters, workgroup-memory tiling on real GPUs. */
export function tilesFor(adapter: AdapterReport): ConvTiles {
  return { ...DEFAULT_TILES, variant: adapter.isCpu ? "register" : "tiled" };
}

/** The key of a layer's pass in ConvTiles.choices. */
export function choiceKey(label: string, pass: ConvPass): string {
  return `${label}|${pass}`;
}

/** The default variant of a pass for `tiles` (shape `s` of the kernel that runs: for the input grad, the transposed conv). */
export function defaultVariant(tiles: ConvTiles, pass: ConvPass, s: ConvShape): KernelVariant {
  const kind = convKind(tiles.variant);
  if (!kind.fromTiles) throw new Error(`conv: variant kind ${tiles.variant} has no default of the tiles`);
  return kind.fromTiles(tiles, pass, s);
}

/** The variant layer `label`'s `pass` runs: its choice or the default, fitted to the shape `s` that runs. */
export function resolveVariant(tiles: ConvTiles, label: string, pass: ConvPass, s: ConvShape): KernelVariant {
  return fitVariant(tiles.choices?.[choiceKey(label, pass)] ?? defaultVariant(tiles, pass, s), pass, s);
}

/** y = conv(x, w) + b of layer `label` (the op's name), in the variant the tiles give it. */
export function convForward(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: ForwardBuffers,
  tiles: ConvTiles = DEFAULT_TILES,
  label = "conv",
): Op {
  checkShape(s);
  return convForwardWith(gpu, p, s, a, resolveVariant(tiles, label, "forward", s), label);
}

/** convForward with an explicit variant (the tuner, the tests). */
export function convForwardWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: ForwardBuffers,
  v: KernelVariant,
  name = "conv",
): Op {
  checkShape(s);
  v = fitVariant(v, "forward", s);
  return convKind(v.kind).forward(gpu, p, s, a, v, name);
}

/** dx = conv_transpose(dy, w) of layer `label` (ops `${label}.igrad`...), in the variant the tiles give it. */
export function convInputGrad(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: InputGradBuffers,
  tiles: ConvTiles = DEFAULT_TILES,
  label = "conv",
): Op[] {
  checkShape(s);
  const v = resolveVariant(tiles, label, "input_grad", transposedShape(s));
  return convInputGradWith(gpu, p, s, a, v, { WG: tiles.WG }, `${label}.igrad`);
}

/**
 * convInputGrad with an explicit variant of its forward kernel (the tuner, the tests). dy NHWC
 * [N][HO][WO][CO], dx NHWC [N][H][W][CI].
 */
export function convInputGradWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: InputGradBuffers,
  v: KernelVariant,
  o: ConvOpOptions = {},
  name = "conv.igrad",
): Op[] {
  checkShape(s);
  v = fitVariant(v, "input_grad", transposedShape(s));
  return convKind(v.kind).inputGrad(gpu, p, s, a, v, o, name);
}

/**
 * dw (HWIO f32, written) and optionally db ([CO] f32, written) of layer `label` (ops `${label}.wgrad`...)
 * from x (NHWC act, the conv input) and dy (NHWC act, the gradient of the conv output), in the variant the
 * tiles give it. Split partial sums are reduced in a fixed order: deterministic.
 */
export function convWeightGrad(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: WeightGradBuffers,
  tiles: ConvTiles = DEFAULT_TILES,
  label = "conv",
): Op[] {
  checkShape(s);
  const v = resolveVariant(tiles, label, "weight_grad", s);
  const o = {
    WG: tiles.WG,
    splitTarget: tiles.splitTarget,
    subgroups: tiles.subgroups ?? gpu.adapter.subgroups,
  };
  return convWeightGradWith(gpu, p, s, a, v, o, `${label}.wgrad`);
}

/**
 * convWeightGrad with an explicit variant (the tuner, the tests). Direct kinds: the weight gradient, the bias
 * gradient's partial sums (register: bias_grad's; tiled: the workgroup-summed bias kernel, subgroup sums
 * where `o.subgroups`) and one reduce for both sets: a layer with a bias takes 3 dispatches.
 */
export function convWeightGradWith(
  gpu: Gpu,
  p: Precision,
  s: ConvShape,
  a: WeightGradBuffers,
  v: KernelVariant,
  o: ConvOpOptions = {},
  name = "conv.wgrad",
): Op[] {
  checkShape(s);
  v = fitVariant(v, "weight_grad", s);
  return convKind(v.kind).weightGrad(gpu, p, s, a, v, o, name);
}
