// BatchNorm2d kernels (lib/nn/batchnorm.ts) against the float64 references, on fresh random inputs, with
// every output poisoned with NaN first; per-channel parameters bound as 256-byte aligned sub-ranges of flat
// buffers (and checked to stay inside them); both precisions; bit-for-bit determinism; and the backward
// reference checked against the forward's directional derivative (no finite differences).

import assert from "node:assert/strict";
import {
  BatchNorm2d,
  batchNormBackward,
  batchNormEvalForward,
  batchNormLimits,
  batchNormTrainForward,
} from "../lib/nn/batchnorm.ts";
import { DEFAULT_TILES } from "../lib/nn/conv.ts";
import type { Gpu, Op } from "../lib/gpu/gpu.ts";
import type { Precision } from "../lib/gpu/kernels.ts";
import type { LayerCtx } from "../lib/nn/module.ts";
import {
  batchNormBackwardRef,
  batchNormEvalForwardRef,
  type BatchNormShape,
  batchNormTrainForwardRef,
} from "../lib/reference/batchnorm.ts";
import {
  assertClose,
  download,
  freshSeed,
  POISON,
  POISON_2,
  poisoned,
  precisions,
  quantize,
  randn,
  testGpu,
  testRng,
  TOL,
  upload,
} from "./util.ts";

const GUARD_BITS = 0x40e00000; // 7.0f: fills the parameter buffer around the bound ranges
const MOMENTUM = 0.4; // airbench94's BatchNorm momentum (PyTorch convention)

// ------------------------------------------------------------------------------------------------ helpers

/** C f32 values per slot, each slot a 256-byte aligned sub-range of one buffer filled with `fill` elsewhere. */
class Flat {
  readonly buffer: GPUBuffer;
  private readonly stride: number;

  constructor(gpu: Gpu, readonly C: number, readonly slots: number, readonly fill: number) {
    this.stride = (Math.ceil((C * 4) / 256) + 1) * 256; // a gap after every slot
    this.buffer = gpu.buffer(256 + slots * this.stride);
    gpu.device.queue.writeBuffer(this.buffer, 0, new Uint32Array(this.buffer.size / 4).fill(fill));
  }

  offset(k: number): number {
    return 256 + k * this.stride;
  }

  bind(k: number): GPUBufferBinding {
    return { buffer: this.buffer, offset: this.offset(k), size: this.C * 4 };
  }

  set(gpu: Gpu, k: number, v: ArrayLike<number>) {
    gpu.write(this.buffer, Float32Array.from(v), this.offset(k));
  }

  /** All slots' values; throws when a word outside the slots changed. */
  async read(gpu: Gpu, label: string): Promise<Float64Array[]> {
    const words = new Uint32Array(await gpu.read(this.buffer));
    const inSlot = (w: number) => w >= 64 && (w * 4 - 256) % this.stride < this.C * 4;
    const at = words.findIndex((w, i) => !inSlot(i) && w !== this.fill);
    assert.equal(at, -1, `${label}: word ${at} outside the bound ranges changed`);
    const f = new Float32Array(words.buffer);
    return Array.from({ length: this.slots }, (_, k) => {
      const at = this.offset(k) / 4;
      return Float64Array.from(f.subarray(at, at + this.C));
    });
  }
}

function assertNear(actual: number, expected: number, label: string) {
  assert.ok(
    Math.abs(actual - expected) <= 1e-6 * Math.abs(expected),
    `${label}: got ${actual}, expected ${expected}`,
  );
}

function rows(s: BatchNormShape): number {
  return s.N * s.H * s.W;
}

function shapeTag(s: BatchNormShape): string {
  return `${s.N}x${s.H}x${s.W}x${s.C}`;
}

/** Run with lowered split / grid limits (many chunks and 2-D grids on small tensors). */
async function withLimits<T>(lim: Partial<typeof batchNormLimits>, fn: () => Promise<T>): Promise<T> {
  const saved = { ...batchNormLimits };
  Object.assign(batchNormLimits, lim);
  try {
    return await fn();
  } finally {
    Object.assign(batchNormLimits, saved);
  }
}

interface Inputs {
  s: BatchNormShape;
  eps: number;
  x: Float64Array;
  dy: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/** x = shift_c + scale_c * N(0, 1) per channel (shift up to `shift`), all quantized to what the GPU stores. */
function makeInputs(rand: () => number, p: Precision, s: BatchNormShape, eps: number, shift: number): Inputs {
  const n = rows(s) * s.C;
  const shifts = Float64Array.from({ length: s.C }, () => (2 * rand() - 1) * shift);
  const scales = Float64Array.from({ length: s.C }, () => 0.3 + 2 * rand());
  const x = randn(n, rand).map((v, i) => shifts[i % s.C] + scales[i % s.C] * v);
  const f32 = (v: Float64Array) => quantize(v, "f32");
  return {
    s,
    eps,
    x: quantize(x, p),
    dy: quantize(randn(n, rand), p),
    weight: f32(randn(s.C, rand)),
    bias: f32(randn(s.C, rand)),
    runningMean: f32(randn(s.C, rand)),
    runningVar: f32(Float64Array.from({ length: s.C }, () => 0.2 + 2 * rand())),
  };
}

interface Outputs {
  y: Float64Array;
  yEval: Float64Array;
  mean: Float64Array;
  invstd: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
  dx: Float64Array;
  dxNoDw: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
  dbiasNoDw: Float64Array;
}

/**
 * One submit: eval forward (original running statistics), training forward, backward with and without
 * dweight; every output poisoned first (with NaN `poison`). Returns everything read back (weight and bias
 * checked unchanged).
 */
async function runAll(gpu: Gpu, p: Precision, inp: Inputs, poison = POISON): Promise<Outputs> {
  const { s, eps } = inp;
  const n = rows(s) * s.C, tag = `${p} [${shapeTag(s)}]`;
  const params = new Flat(gpu, s.C, 4, GUARD_BITS); // weight, bias, running mean, running var
  [inp.weight, inp.bias, inp.runningMean, inp.runningVar].forEach((v, k) => params.set(gpu, k, v));
  const grads = new Flat(gpu, s.C, 3, poison); // dweight, dbias, dbias without dweight
  const [weight, bias, runningMean, runningVar] = [0, 1, 2, 3].map((k) => params.bind(k));
  const x = upload(gpu, inp.x, p), dy = upload(gpu, inp.dy, p);
  const [y, yEval, dx, dxNoDw] = [0, 1, 2, 3].map(() => poisoned(gpu, n, p, "", poison));
  const mean = poisoned(gpu, s.C, "f32", "", poison), invstd = poisoned(gpu, s.C, "f32", "", poison);
  const ops: Op[] = [
    batchNormEvalForward(gpu, p, { x, y: yEval, weight, bias, runningMean, runningVar, ...s, eps }),
    ...batchNormTrainForward(gpu, p, {
      x,
      y,
      weight,
      bias,
      mean,
      invstd,
      runningMean,
      runningVar,
      ...s,
      eps,
      momentum: MOMENTUM,
    }),
    ...batchNormBackward(gpu, p, {
      x,
      dy,
      dx,
      weight,
      mean,
      invstd,
      dweight: grads.bind(0),
      dbias: grads.bind(1),
      ...s,
    }),
    ...batchNormBackward(gpu, p, { x, dy, dx: dxNoDw, weight, mean, invstd, dbias: grads.bind(2), ...s }),
  ];
  await gpu.checkCompile();
  gpu.run(ops);
  const pv = await params.read(gpu, `params ${tag}`);
  assert.deepEqual([pv[0], pv[1]], [inp.weight, inp.bias], `weight and bias unchanged ${tag}`);
  const gv = await grads.read(gpu, `grads ${tag}`);
  return {
    y: await download(gpu, y, n, p),
    yEval: await download(gpu, yEval, n, p),
    mean: Float64Array.from(await gpu.readF32(mean)),
    invstd: Float64Array.from(await gpu.readF32(invstd)),
    runningMean: pv[2],
    runningVar: pv[3],
    dx: await download(gpu, dx, n, p),
    dxNoDw: await download(gpu, dxNoDw, n, p),
    dweight: gv[0],
    dbias: gv[1],
    dbiasNoDw: gv[2],
  };
}

// ------------------------------------------------------------------------------------ against references

async function checkCase(gpu: Gpu, p: Precision, inp: Inputs, note: string) {
  const { s } = inp;
  const tag = `${p} [${shapeTag(s)}${note}]`;
  const got = await runAll(gpu, p, inp);
  const ref = batchNormTrainForwardRef(inp.x, s, { ...inp, momentum: MOMENTUM });
  assertClose(got.y, ref.y, TOL[p], `batchnorm train forward y ${tag}`);
  assertClose(got.mean, ref.mean, TOL.f32, `batchnorm train forward mean ${tag}`);
  assertClose(got.invstd, ref.invstd, TOL.f32, `batchnorm train forward invstd ${tag}`);
  assertClose(got.runningMean, ref.runningMean, TOL.f32, `batchnorm running mean ${tag}`);
  assertClose(got.runningVar, ref.runningVar, TOL.f32, `batchnorm running var ${tag}`);
  assertClose(got.yEval, batchNormEvalForwardRef(inp.x, s, inp), TOL[p], `batchnorm eval forward ${tag}`);
  // The backward sees the forward's saved statistics, as in training.
  const bref = batchNormBackwardRef(inp.x, inp.dy, s, { ...inp, mean: got.mean, invstd: got.invstd });
  assertClose(got.dx, bref.dx, TOL[p], `batchnorm backward dx ${tag}`);
  assertClose(got.dweight, bref.dweight, TOL.f32, `batchnorm backward dweight ${tag}`);
  assertClose(got.dbias, bref.dbias, TOL.f32, `batchnorm backward dbias ${tag}`);
  assertClose(got.dxNoDw, bref.dx, TOL[p], `batchnorm backward dx (no dweight) ${tag}`);
  assertClose(got.dbiasNoDw, bref.dbias, TOL.f32, `batchnorm backward dbias (no dweight) ${tag}`);
}

interface Case {
  s: BatchNormShape;
  eps: number;
  shift?: number; // per-channel means up to this (variance without cancellation)
  limits?: Partial<typeof batchNormLimits>;
  why: string;
}

// (Each shape compiles its own pipelines, most of the test time on lavapipe: keep the list short.)
const CASES: Case[] = [
  { s: { N: 3, H: 5, W: 7, C: 12 }, eps: 1e-12, why: "odd shape, one chunk" },
  { s: { N: 3, H: 5, W: 7, C: 12 }, eps: 1e-5, limits: { rowsPerThread: 1 }, why: "2 chunks, empty lanes" },
  {
    s: { N: 4, H: 9, W: 11, C: 8 },
    eps: 1e-12,
    shift: 30,
    limits: { rowsPerThread: 1, maxGroupsPerDim: 3 },
    why: "4 chunks of 99 rows, 2-D grids, |mean| >> std",
  },
  { s: { N: 8, H: 15, W: 15, C: 256 }, eps: 1e-12, why: "8 chunks, 4 lanes" },
  { s: { N: 16, H: 31, W: 31, C: 64 }, eps: 1e-12, shift: 5, why: "16 chunks, 16 lanes" },
  { s: { N: 1, H: 2, W: 3, C: 1032 }, eps: 1e-12, why: "2 channel blocks, the last partial" },
];

Deno.test("batchnorm: train forward, running stats, eval forward, backward vs float64", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("batchnorm"));
  for (const p of precisions(gpu)) {
    for (const c of CASES) {
      const inp = makeInputs(rand, p, c.s, c.eps, c.shift ?? 0);
      await withLimits(c.limits ?? {}, () => checkCase(gpu, p, inp, ` ${c.why}`));
    }
  }
});

Deno.test("batchnorm: same bits on two runs", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("batchnorm determinism"));
  for (const p of precisions(gpu)) {
    for (const s of [{ N: 16, H: 31, W: 31, C: 64 }, { N: 4, H: 9, W: 11, C: 8 }]) {
      const inp = makeInputs(rand, p, s, 1e-12, 2);
      const lim = s.C === 8 ? { rowsPerThread: 1 } : {};
      // The second run's outputs poisoned with another NaN; and a NaN (an element no run wrote: the inputs
      // are finite) fails on its own, as NaN payloads do not survive the read back into numbers.
      const a = await withLimits(lim, () => runAll(gpu, p, inp, POISON));
      const b = await withLimits(lim, () => runAll(gpu, p, inp, POISON_2));
      for (const k of Object.keys(a) as (keyof Outputs)[]) {
        const at = a[k].findIndex((v, i) => !Object.is(v, b[k][i]) || Number.isNaN(v));
        assert.equal(at, -1, `${k} ${p} [${shapeTag(s)}]: element ${at} differs (${a[k][at]}, ${b[k][at]})`);
      }
    }
  }
});

Deno.test("batchnorm: a constant channel has variance exactly 0 (y = bias)", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("batchnorm constant"));
  const s = { N: 2, H: 7, W: 5, C: 8 };
  for (const p of precisions(gpu)) {
    const inp = makeInputs(rand, p, s, 1e-12, 100);
    for (let i = 3; i < inp.x.length; i += s.C) inp.x[i] = 37.25; // exact in f16 and f32
    const got = await withLimits({ rowsPerThread: 1 }, () => runAll(gpu, p, inp));
    const yb = quantize([inp.bias[3]], p)[0];
    for (let i = 3; i < got.y.length; i += s.C) assert.equal(got.y[i], yb, `y of the constant channel ${p}`);
    assert.equal(got.mean[3], 37.25);
    assertNear(got.invstd[3], 1 / Math.sqrt(Math.fround(1e-12)), `invstd of the constant channel ${p}`);
    assertNear(
      got.runningVar[3],
      (1 - MOMENTUM) * inp.runningVar[3],
      `running var of the constant channel ${p}`,
    );
  }
});

Deno.test("batchnorm rejects bad shapes and short bindings", async () => {
  const gpu = await testGpu();
  const b = gpu.buffer(4096);
  const shape = { N: 1, H: 1, W: 1, C: 8 };
  const fwd = { x: b, y: b, weight: b, bias: b, mean: b, invstd: b, runningMean: b, runningVar: b };
  const args = { ...fwd, eps: 1e-5, momentum: 0.4 };
  assert.throws(
    () => batchNormTrainForward(gpu, "f32", { ...args, ...shape, C: 6 }),
    /C=6 must be a multiple/,
  );
  assert.throws(() => batchNormTrainForward(gpu, "f32", { ...args, ...shape }), /more than one value/);
  const bwd = { x: b, dy: b, dx: b, weight: b, mean: b, invstd: b, dbias: b, ...shape };
  assert.throws(() => batchNormBackward(gpu, "f32", bwd), /more than one value/);
  const short = { buffer: b, offset: 256, size: 16 };
  assert.throws(
    () => batchNormTrainForward(gpu, "f32", { ...args, ...shape, N: 2, weight: short }),
    /weight holds 16 bytes, needs 32/,
  );
  batchNormEvalForward(gpu, "f32", { ...args, ...shape }); // one row is fine in eval mode
  await gpu.checkCompile();
});

// ---------------------------------------------------------------------- the backward reference, exactly

/**
 * The backward reference is the adjoint of the forward: for any direction (vx, vw, vb),
 * sum dy * J(vx, vw, vb) = sum dx * vx + sum dweight * vw + sum dbias * vb, with J the forward's directional
 * derivative, derived independently here (float64, no finite differences).
 */
Deno.test("batchnorm backward reference is the adjoint of the forward's derivative", () => {
  const rand = testRng(freshSeed("batchnorm adjoint"));
  for (const s of [{ N: 2, H: 3, W: 5, C: 4 }, { N: 3, H: 4, W: 4, C: 12 }]) {
    const M = rows(s), C = s.C, n = M * C, eps = 1e-3;
    const x = randn(n, rand, 2), dy = randn(n, rand), w = randn(C, rand), b = randn(C, rand);
    const vx = randn(n, rand), vw = randn(C, rand), vb = randn(C, rand);
    const zeros = new Float64Array(C);
    const stats = { runningMean: zeros, runningVar: zeros, eps, momentum: MOMENTUM };
    const f = batchNormTrainForwardRef(x, s, { weight: w, bias: b, ...stats });
    const g = batchNormBackwardRef(x, dy, s, { weight: w, mean: f.mean, invstd: f.invstd });
    const dmean = new Float64Array(C), dvar = new Float64Array(C);
    for (let i = 0; i < n; i++) dmean[i % C] += vx[i] / M;
    for (let i = 0; i < n; i++) dvar[i % C] += (2 / M) * (x[i] - f.mean[i % C]) * (vx[i] - dmean[i % C]);
    let lhs = 0, rhs = 0, scale = 0;
    for (let i = 0; i < n; i++) {
      const c = i % C, inv = f.invstd[c];
      const dinv = -0.5 * inv * inv * inv * dvar[c];
      const xhat = (x[i] - f.mean[c]) * inv;
      const dxhat = (vx[i] - dmean[c]) * inv + (x[i] - f.mean[c]) * dinv;
      lhs += dy[i] * (dxhat * w[c] + xhat * vw[c] + vb[c]);
      rhs += g.dx[i] * vx[i];
      scale += Math.abs(g.dx[i] * vx[i]);
    }
    for (let c = 0; c < C; c++) {
      rhs += g.dweight[c] * vw[c] + g.dbias[c] * vb[c];
      scale += Math.abs(g.dweight[c] * vw[c]) + Math.abs(g.dbias[c] * vb[c]);
    }
    assert.ok(Math.abs(lhs - rhs) <= 1e-12 * scale, `adjoint [${shapeTag(s)}]: ${lhs} != ${rhs}`);
  }
});

// ------------------------------------------------------------------------------------------------ the layer

/** What the layer test binds: the input, the layer's tensors in `flat` (slot k holds names[k]), the bias gradient. */
interface LayerBindings {
  gpu: Gpu;
  s: BatchNormShape;
  x: Float64Array;
  flat: Flat;
  names: string[];
  dbias: Flat;
}

/** The context the network would hand BatchNorm2d "2.norm1" (f32), in train or eval mode, writing `y`. */
function layerCtx(b: LayerBindings, training: boolean, y: GPUBuffer): LayerCtx {
  const { gpu, s, flat, names, dbias } = b;
  const scratch = new Map<string, GPUBuffer>();
  return {
    gpu,
    p: "f32",
    batch: s.N,
    tiles: DEFAULT_TILES,
    label: "2.norm1",
    training,
    inputs: [{ buf: upload(gpu, b.x, "f32"), shape: { H: s.H, W: s.W, C: s.C }, dtype: "act" }],
    output: { buf: y, shape: { H: s.H, W: s.W, C: s.C }, dtype: "act" },
    param: (local) => flat.bind(names.indexOf(local)),
    grad: (local) => {
      assert.equal(local, "bias", "only the bias has a gradient");
      return dbias.bind(0);
    },
    trains: (local) => local === "bias",
    scratch: (key, bytes) => scratch.get(key) ?? scratch.set(key, gpu.buffer(bytes)).get(key)!,
  };
}

Deno.test("BatchNorm2d layer: state dict, train mode (batch stats, running update, backward), eval mode", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("batchnorm layer"));
  const s: BatchNormShape = { N: 3, H: 5, W: 4, C: 8 }, n = rows(s) * s.C, eps = 1e-12, momentum = 0.4;
  const layer = BatchNorm2d(s.C, { momentum, eps, biasGroup: "norm_bias" });
  assert.deepEqual(
    layer.params.map((q) => [q.name, q.role, q.init, q.group ?? ""]),
    [
      ["weight", "frozen", "ones", ""],
      ["bias", "param", "zeros", "norm_bias"],
      ["running_mean", "buffer", "zeros", ""],
      ["running_var", "buffer", "ones", ""],
    ],
  );
  assert.throws(() => BatchNorm2d(6), /multiple of 4/);
  const x = quantize(randn(n, rand, 2).map((v, i) => v + (i % s.C) - 3), "f32");
  const dy = quantize(randn(n, rand), "f32");
  const v = {
    weight: quantize(randn(s.C, rand, 0.3).map((w) => 1 + w), "f32"),
    bias: quantize(randn(s.C, rand), "f32"),
    running_mean: quantize(randn(s.C, rand), "f32"),
    running_var: quantize(randn(s.C, rand).map((r) => 0.5 + r * r), "f32"),
  };
  const flat = new Flat(gpu, s.C, 4, GUARD_BITS), names = Object.keys(v) as (keyof typeof v)[];
  names.forEach((k, i) => flat.set(gpu, i, v[k]));
  const dbias = new Flat(gpu, s.C, 1, GUARD_BITS);
  const ctxOf = (training: boolean, y: GPUBuffer) => layerCtx({ gpu, s, x, flat, names, dbias }, training, y);
  const run = (ops: Op[]) => gpu.submit([{ ops }]);

  // Train mode: batch statistics, the running statistics updated once, then the backward (no dweight).
  const y = poisoned(gpu, n, "f32"), train = ctxOf(true, y);
  run(layer.forward(train));
  const ref = batchNormTrainForwardRef(x, s, {
    weight: v.weight,
    bias: v.bias,
    runningMean: v.running_mean,
    runningVar: v.running_var,
    eps,
    momentum,
  });
  assertClose(await download(gpu, y, n, "f32"), ref.y, TOL.f32, "layer train y");
  const [, , rm, rv] = await flat.read(gpu, "layer train");
  assertClose(rm, ref.runningMean, TOL.f32, "layer running_mean");
  assertClose(rv, ref.runningVar, TOL.f32, "layer running_var");
  const dx = poisoned(gpu, n, "f32");
  const back = layer.backward(train, upload(gpu, dy, "f32"), [true], () => dx);
  run(back.ops);
  assert.equal(back.dx[0], dx);
  const bref = batchNormBackwardRef(x, dy, s, { weight: v.weight, mean: ref.mean, invstd: ref.invstd });
  assertClose(await download(gpu, dx, n, "f32"), bref.dx, TOL.f32, "layer dx");
  assertClose((await dbias.read(gpu, "layer dbias"))[0], bref.dbias, TOL.f32, "layer dbias");

  // Eval mode: the running statistics (as updated), which stay as they are.
  const ye = poisoned(gpu, n, "f32"), evalCtx = ctxOf(false, ye);
  run(layer.forward(evalCtx));
  const eref = batchNormEvalForwardRef(x, s, {
    weight: v.weight,
    bias: v.bias,
    runningMean: rm,
    runningVar: rv,
    eps,
  });
  assertClose(await download(gpu, ye, n, "f32"), eref, TOL.f32, "layer eval y");
  const [, , rm2, rv2] = await flat.read(gpu, "layer eval");
  assert.deepEqual([rm2, rv2], [rm, rv], "eval mode leaves the running statistics unchanged");
  assert.throws(() => layer.backward(evalCtx, ye, [true], () => dx), /no backward in an evaluation net/);
});
