// The registry of convolution variant kinds: one ConvKind record per kind (lib/nn/conv_base.ts), everything
// else (ids in the run log and the tuning cache, the tuner's candidates, the checks of --variants and of the
// cache, the ops, the bench's multiplies, the kernels the cache key hashes) goes through it.
//
// Adding a kind: its record (variant type, kernel files, id and parse, checks, candidates, ops) in its own
// file, one line in CONV_KINDS and KernelVariant below, its kernels, and its tests
// (tests/conv_variants_test.ts checks every record's consistency; test the ops against the float64 reference
// as tests/conv_test.ts and tests/winograd_test.ts do).

import type { ConvKind, ConvPass, ConvShape } from "./conv_base.ts";
import { directMultiplies, shapeProblem } from "./conv_base.ts";
import { REGISTER_KIND, type RegisterVariant } from "./conv_register.ts";
import { TILED_KIND, type TiledVariant } from "./conv_tiled.ts";
import { WINOGRAD_KIND, type WinogradVariant } from "./winograd.ts";

/** A kernel variant of any kind: a plain value with a stable id (variantId). */
export type KernelVariant = RegisterVariant | TiledVariant | WinogradVariant;

/** Every kind, in the order the tuner times their candidates. */
export const CONV_KINDS = [REGISTER_KIND, TILED_KIND, WINOGRAD_KIND] as const;

/** A kind's name ("register", "tiled", "winograd"). */
export type KindName = KernelVariant["kind"];

/** The record of a kind by name; throws naming the known ones for any other. */
export function convKind(name: string): ConvKind<KernelVariant> {
  const k = CONV_KINDS.find((k) => k.name === name);
  if (!k) throw new Error(`conv: unknown variant kind ${JSON.stringify(name)} (${kindNames().join(", ")})`);
  // a kind's methods take its own variants; every caller hands it a variant of that kind
  return k as unknown as ConvKind<KernelVariant>;
}

/** The names of the kinds, or of those that can be a session's default (ConvTiles.variant: fromTiles). */
export function kindNames(defaultsOnly = false): KindName[] {
  return CONV_KINDS.filter((k) => !defaultsOnly || k.fromTiles).map((k) => k.name);
}

/** Stable string id of a variant, e.g. "register-8x8-wg64", "tiled-128x128x8-8x8-db2", "winograd-f4-8x8". */
export function variantId(v: KernelVariant): string {
  return convKind(v.kind).id(v);
}

/** The variant of an id (the inverse of variantId); throws on anything else. */
export function parseVariantId(id: string): KernelVariant {
  for (const k of CONV_KINDS) {
    const v = k.parse(id);
    if (v) return v;
  }
  throw new Error(`conv: unknown kernel variant id ${JSON.stringify(id)}`);
}

/**
 * The variant that runs `pass` on shape `s` (the shape of the kernel that runs: for the input gradient, the
 * transposed conv): register blocks shrunk to what the channel counts divide, tiles as given, a Winograd
 * variant on a shape it does not compute the default register one.
 */
export function fitVariant(v: KernelVariant, pass: ConvPass, s: ConvShape): KernelVariant {
  return convKind(v.kind).fit(v, pass, s) as KernelVariant;
}

/** Why a variant cannot run on this device (workgroup size or memory), or undefined when it can. */
export function variantUnfit(v: KernelVariant, limits: Record<string, number>): string | undefined {
  return convKind(v.kind).unfit(v, limits);
}

/**
 * Why a variant cannot run as `pass` of a convolution of shape `s` on a device with `limits` (the shape of
 * the kernel that runs: for the input gradient, the transposed conv), or undefined when it can. Catches ids
 * that parse but would compile to nonsense (zero or fractional sizes, over-large blocks) before any WGSL is
 * built.
 */
export function variantProblem(
  v: KernelVariant,
  pass: ConvPass,
  s: ConvShape,
  limits: Record<string, number>,
): string | undefined {
  return convKind(v.kind).invalid(v, pass) ?? shapeProblem(s) ?? variantUnfit(fitVariant(v, pass, s), limits);
}

/** The candidate variants of a pass, every kind's, that fit a device with `limits` (the tuner times each). */
export function candidateVariants(pass: ConvPass, limits: Record<string, number> = {}): KernelVariant[] {
  const all = CONV_KINDS.flatMap((k): KernelVariant[] => k.candidates(pass));
  return all.filter((v) => variantUnfit(v, limits) === undefined);
}

/**
 * Multiplies a pass of a layer of shape `s` does with the variant `id` that ran (the bench): T^2 per tile and
 * channel pair for a Winograd variant, the direct convolution's KH*KW per output and channel pair otherwise.
 */
export function convMultiplies(s: ConvShape, pass: ConvPass, id: string | null): number {
  if (id === null) return directMultiplies(s);
  const v = parseVariantId(id);
  return convKind(v.kind).multiplies(s, pass, v);
}

/** Every kind's kernel files, sorted, each once (what the tuner's cache key hashes: lib/nn/tune.ts). */
export function kindFiles(): string[] {
  return [...new Set(CONV_KINDS.flatMap((k) => k.files))].sort();
}
