// Plain TS reference of the loader (kernels/loader.wgsl), written as the recipe's steps on whole images:
// normalise, mirror once, reflect-pad, crop, mirror the epoch. Outputs are in the storage precision
// (Float32Array or Float16Array), NHWC [count][32][32][4] with channel 3 = 0, so tests compare bits.

import type { Precision } from "../gpu/kernels.ts";
import { CIFAR_MEAN, CIFAR_STD, type EpochPlan, INPUT_ELEMS, SIDE, type View } from "../data/loader.ts";

type Planes = Float64Array[]; // 3 planes [h][w] of side s, row-major
export interface RefBatch {
  x: Float32Array | Float16Array;
  y: Uint32Array;
}

function normalised(images: Uint8Array, img: number): Planes {
  return [0, 1, 2].map((c) => {
    const p = new Float64Array(SIDE * SIDE);
    const base = (img * 3 + c) * SIDE * SIDE;
    for (let i = 0; i < SIDE * SIDE; i++) p[i] = (images[base + i] / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c];
    return p;
  });
}

function mirror(planes: Planes, s: number): Planes {
  return planes.map((p) => p.map((_, i) => p[i - (i % s) + (s - 1 - (i % s))]));
}

/** torch.nn.functional.pad(x, (pad,)*4, 'reflect'): the edge is not repeated (-1 -> 1). */
function reflectPad(planes: Planes, pad: number): Planes {
  const s = SIDE + 2 * pad;
  const src = (i: number) => (i < 0 ? -i : i >= SIDE ? 2 * (SIDE - 1) - i : i);
  return planes.map((p) => {
    const out = new Float64Array(s * s);
    for (let r = 0; r < s; r++) {
      for (let c = 0; c < s; c++) out[r * s + c] = p[src(r - pad) * SIDE + src(c - pad)];
    }
    return out;
  });
}

/** The 32x32 window at (top, left) of planes of side s. */
function crop(planes: Planes, s: number, top: number, left: number): Planes {
  return planes.map((p) => {
    const out = new Float64Array(SIDE * SIDE);
    for (let r = 0; r < SIDE; r++) {
      for (let c = 0; c < SIDE; c++) out[r * SIDE + c] = p[(top + r) * s + left + c];
    }
    return out;
  });
}

function emit(out: RefBatch, slot: number, planes: Planes, label: number): void {
  for (let i = 0; i < SIDE * SIDE; i++) {
    for (let c = 0; c < 3; c++) out.x[slot * INPUT_ELEMS + i * 4 + c] = planes[c][i];
    out.x[slot * INPUT_ELEMS + i * 4 + 3] = 0;
  }
  out.y[slot] = label;
}

function alloc(count: number, precision: Precision): RefBatch {
  const len = count * INPUT_ELEMS;
  return {
    x: precision === "f16" ? new Float16Array(len) : new Float32Array(len),
    y: new Uint32Array(count),
  };
}

/** Training batch `batchIndex` of an epoch, given its plan and the loader's translate. */
export function referenceTrainBatch(
  images: Uint8Array,
  labels: Uint8Array,
  plan: EpochPlan,
  batchIndex: number,
  batchSize: number,
  translate: number,
  precision: Precision,
): RefBatch {
  const out = alloc(batchSize, precision);
  for (let j = 0; j < batchSize; j++) {
    const img = plan.perm[batchIndex * batchSize + j];
    let planes = normalised(images, img);
    if (plan.flips[img]) planes = mirror(planes, SIDE);
    const padded = reflectPad(planes, translate);
    const [dy, dx] = [plan.shifts[2 * img], plan.shifts[2 * img + 1]];
    planes = crop(padded, SIDE + 2 * translate, translate + dy, translate + dx);
    if (plan.flipAll) planes = mirror(planes, SIDE);
    emit(out, j, planes, labels[img]);
  }
  return out;
}

/** One view of test images start..start+count-1: translate by (dy, dx) with reflect padding, then mirror. */
export function referenceEvalView(
  images: Uint8Array,
  labels: Uint8Array,
  start: number,
  count: number,
  view: View,
  precision: Precision,
): RefBatch {
  const out = alloc(count, precision);
  const pad = Math.max(Math.abs(view.dy), Math.abs(view.dx));
  for (let j = 0; j < count; j++) {
    const padded = reflectPad(normalised(images, start + j), pad);
    let planes = crop(padded, SIDE + 2 * pad, pad + view.dy, pad + view.dx);
    if (view.flip) planes = mirror(planes, SIDE);
    emit(out, j, planes, labels[start + j]);
  }
  return out;
}
