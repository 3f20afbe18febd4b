// GELU, max pooling, pool -> GELU, linear head, cross-entropy, accuracy count, scale-add, SGD and EMA against
// the float64 references, on fresh random inputs, with every output buffer poisoned before the run.

import assert from "node:assert/strict";
import {
  addTensors,
  countCorrect,
  crossEntropy,
  emaUpdate,
  geluBackward,
  geluForward,
  linearBackward,
  linearForward,
  maxpoolBackward,
  maxpoolForward,
  opsLimits,
  poolGeluBackward,
  poolGeluForward,
  poolOutSize,
  scaleAdd,
  sgdStep,
} from "../lib/nn/ops.ts";
import type { Gpu } from "../lib/gpu/gpu.ts";
import type { Precision } from "../lib/gpu/kernels.ts";
import { packSteps, STEP_SLOTS } from "../lib/gpu/steps.ts";
import {
  countCorrectRef,
  crossEntropyRef,
  emaUpdateRef,
  geluBackwardRef,
  geluForwardRef,
  linearBackwardRef,
  linearForwardRef,
  maxpoolBackwardRef,
  maxpoolForwardRef,
  poolGeluBackwardRef,
  poolGeluForwardRef,
  type PoolShape,
  scaleAddRef,
  sgdStepRef,
} from "../lib/reference/ops.ts";
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

interface StepFields {
  step?: number;
  epoch?: number;
  batchStart?: number;
  flags?: number;
  values?: number[];
}

/** The Step uniform of kernels/shared/step.wgsl (lib/gpu/steps.ts packSteps), unset fields 0. */
function packStep(s: StepFields): Uint8Array {
  return new Uint8Array(packSteps([{
    step: s.step ?? 0,
    epoch: s.epoch ?? 0,
    batchStart: s.batchStart ?? 0,
    flags: s.flags ?? 0,
    values: s.values,
  }]));
}

async function readU32(gpu: Gpu, buf: GPUBuffer): Promise<Uint32Array> {
  return new Uint32Array(await gpu.read(buf));
}

function assertBitsEqual(a: ArrayLike<number>, b: ArrayLike<number>, label: string) {
  let at = 0;
  while (at < a.length && Object.is(a[at], b[at])) at++;
  assert.equal(at, a.length, `${label}: element ${at} changed (${b[at]} -> ${a[at]})`);
}

function quantizeInPlace(x: Float64Array, p: Precision) {
  x.set(quantize(x, p));
}

/** Run with opsLimits lowered so that even small dispatches take the 2-D grid path. */
async function withSmallGrid(fn: () => Promise<void>) {
  const saved = opsLimits.maxGroupsPerDim;
  opsLimits.maxGroupsPerDim = 3;
  try {
    await fn();
  } finally {
    opsLimits.maxGroupsPerDim = saved;
  }
}

// ---------------------------------------------------------------------------------------------------- GELU

async function checkGelu(gpu: Gpu, rand: () => number, p: Precision, n: number) {
  const x = randn(n, rand, 3), dy = randn(n, rand);
  // The tolerance is relative to the output's max-abs: keep one element away from the far negative tail,
  // where 1 + erf(x / sqrt 2) cancels (as in PyTorch's f32 GELU), so a tiny tensor cannot be all tail.
  x[0] = 0.5 + rand();
  dy[0] = 1;
  quantizeInPlace(x, p);
  quantizeInPlace(dy, p);
  const y = poisoned(gpu, n, p), dx = poisoned(gpu, n, p);
  const xb = upload(gpu, x, p), dyb = upload(gpu, dy, p);
  gpu.run([geluForward(gpu, p, { x: xb, y, n }), geluBackward(gpu, p, { x: xb, dy: dyb, dx, n })]);
  await gpu.checkCompile();
  assertClose(await download(gpu, y, n, p), geluForwardRef(x), TOL[p], `gelu forward ${p} [n=${n}]`);
  assertClose(await download(gpu, dx, n, p), geluBackwardRef(x, dy), TOL[p], `gelu backward ${p} [n=${n}]`);
}

Deno.test("gelu forward and backward", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("gelu"));
  for (const p of precisions(gpu)) {
    for (const n of [4, 12, 1000, 20004]) await checkGelu(gpu, rand, p, n);
    await withSmallGrid(async () => {
      for (const n of [1284, 5004]) await checkGelu(gpu, rand, p, n); // 2-D grids: 6 and 20 workgroups
    });
  }
});

Deno.test("add: elementwise sum (residual forward, gradient accumulation), also of a buffer with itself", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("add"));
  for (const p of precisions(gpu)) {
    for (const n of [4, 1000, 20004]) {
      const a = quantize(randn(n, rand), p), b = quantize(randn(n, rand), p);
      const ab = upload(gpu, a, p), bb = upload(gpu, b, p);
      const y = poisoned(gpu, n, p), y2 = poisoned(gpu, n, p);
      gpu.run([addTensors(gpu, p, { a: ab, b: bb, y, n }), addTensors(gpu, p, { a: ab, b: ab, y: y2, n })]);
      await gpu.checkCompile();
      assertClose(await download(gpu, y, n, p), a.map((v, i) => v + b[i]), TOL[p], `add ${p} [n=${n}]`);
      assertClose(await download(gpu, y2, n, p), a.map((v) => 2 * v), TOL[p], `add self ${p} [n=${n}]`);
    }
  }
});

Deno.test("gelu and pooling reject tensors that are not whole vec4s", async () => {
  const gpu = await testGpu();
  const b = gpu.buffer(64);
  assert.throws(() => geluForward(gpu, "f32", { x: b, y: b, n: 7 }), /n=7 must be a multiple of 4/);
  assert.throws(
    () => maxpoolForward(gpu, "f32", { x: b, y: b, N: 1, H: 2, W: 2, C: 3, K: 2 }),
    /C=3 must be a multiple of 4/,
  );
});

// ------------------------------------------------------------------------------------------------ max pool

// (Each shape compiles its own pipelines, which is most of the test time on lavapipe: keep the list short.)
const POOL_SHAPES: PoolShape[] = [
  { N: 2, H: 31, W: 31, C: 8, K: 2 }, // vec4 channels, odd size (floor drops the last row and column)
  { N: 3, H: 7, W: 6, C: 4, K: 2 }, // one vec4 of channels, odd height, even width
  { N: 3, H: 3, W: 3, C: 20, K: 3 }, // the final MaxPool2d(3): 3x3 -> 1x1
  { N: 2, H: 5, W: 8, C: 12, K: 3 }, // partial windows on both edges
];

/** Continuous values, or small integers (many ties: the first maximum must win). */
function poolInput(n: number, rand: () => number, p: Precision, ties: boolean): Float64Array {
  const x = randn(n, rand, ties ? 1.2 : 1);
  return quantize(ties ? x.map(Math.round) : x, p);
}

async function checkPool(gpu: Gpu, rand: () => number, p: Precision, s: PoolShape, ties: boolean) {
  const { HO, WO } = poolOutSize(s.H, s.W, s.K);
  const nx = s.N * s.H * s.W * s.C, ny = s.N * HO * WO * s.C;
  const tag = `[${s.N}x${s.H}x${s.W}x${s.C} K=${s.K}${ties ? " ties" : ""}]`;
  const x = poolInput(nx, rand, p, ties), dy = quantize(randn(ny, rand), p);
  const xb = upload(gpu, x, p), dyb = upload(gpu, dy, p);
  const y = poisoned(gpu, ny, p), dx = poisoned(gpu, nx, p);
  gpu.run([
    maxpoolForward(gpu, p, { x: xb, y, ...s }),
    maxpoolBackward(gpu, p, { x: xb, dy: dyb, dx, ...s }),
  ]);
  await gpu.checkCompile();
  assertClose(await download(gpu, y, ny, p), maxpoolForwardRef(x, s), TOL[p], `maxpool forward ${p} ${tag}`);
  assertClose(
    await download(gpu, dx, nx, p),
    maxpoolBackwardRef(x, dy, s),
    TOL[p],
    `maxpool backward ${p} ${tag}`,
  );
}

Deno.test("maxpool forward and backward", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("maxpool"));
  for (const p of precisions(gpu)) {
    for (const s of POOL_SHAPES) {
      await checkPool(gpu, rand, p, s, false);
      await checkPool(gpu, rand, p, s, true);
    }
    await withSmallGrid(() => checkPool(gpu, rand, p, { N: 4, H: 15, W: 15, C: 12, K: 2 }, true));
  }
});

async function checkPoolGelu(gpu: Gpu, rand: () => number, p: Precision, s: PoolShape, ties: boolean) {
  const { HO, WO } = poolOutSize(s.H, s.W, 2);
  const nx = s.N * s.H * s.W * s.C, ny = s.N * HO * WO * s.C;
  const tag = `[${s.N}x${s.H}x${s.W}x${s.C}${ties ? " ties" : ""}]`;
  const shape = { N: s.N, H: s.H, W: s.W, C: s.C };
  const x = poolInput(nx, rand, p, ties), dy = quantize(randn(ny, rand), p);
  const xb = upload(gpu, x, p), dyb = upload(gpu, dy, p);
  const pre = poisoned(gpu, ny, p), y = poisoned(gpu, ny, p), dx = poisoned(gpu, nx, p);
  gpu.run([
    poolGeluForward(gpu, p, { x: xb, pre, y, ...shape }),
    poolGeluBackward(gpu, p, { x: xb, pre, dy: dyb, dx, ...shape }),
  ]);
  await gpu.checkCompile();
  const ref = poolGeluForwardRef(x, shape);
  assertClose(await download(gpu, pre, ny, p), ref.pre, TOL[p], `pool-gelu forward pre ${p} ${tag}`);
  assertClose(await download(gpu, y, ny, p), ref.y, TOL[p], `pool-gelu forward ${p} ${tag}`);
  const dxRef = poolGeluBackwardRef(x, ref.pre, dy, shape);
  assertClose(await download(gpu, dx, nx, p), dxRef, TOL[p], `pool-gelu backward ${p} ${tag}`);
}

Deno.test("pool -> gelu fused forward and backward", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("pool-gelu"));
  for (const p of precisions(gpu)) {
    for (const s of POOL_SHAPES.filter((s) => s.K === 2)) {
      await checkPoolGelu(gpu, rand, p, s, false);
      await checkPoolGelu(gpu, rand, p, s, true);
    }
    await withSmallGrid(() => checkPoolGelu(gpu, rand, p, { N: 4, H: 15, W: 15, C: 4, K: 2 }, false));
  }
});

// --------------------------------------------------------------------------------------------- linear head

const SCALE = 1 / 9;
const PARAM_OFFSET = 512; // bytes: w and dw are bound as sub-ranges of larger flat f32 buffers

async function checkLinear(gpu: Gpu, rand: () => number, p: Precision, N: number, C: number) {
  const tag = `[N=${N} C=${C}]`;
  const x = quantize(randn(N * C, rand), p);
  const w = quantize(randn(10 * C, rand, 1 / Math.sqrt(C)), "f32");
  const dl = quantize(randn(N * 10, rand), "f32");
  const xb = upload(gpu, x, p), dlb = upload(gpu, dl, "f32");
  const params = gpu.buffer(PARAM_OFFSET + 10 * C * 4 + 256);
  gpu.poison(params);
  gpu.write(params, new Float32Array(w), PARAM_OFFSET);
  const wBind = { buffer: params, offset: PARAM_OFFSET, size: 10 * C * 4 };
  const grads = gpu.buffer(PARAM_OFFSET + 10 * C * 4 + 256);
  gpu.poison(grads);
  const dwBind = { buffer: grads, offset: PARAM_OFFSET, size: 10 * C * 4 };
  const logits = poisoned(gpu, N * 10, "f32"), dx = poisoned(gpu, N * C, p);
  gpu.run([
    linearForward(gpu, p, { x: xb, w: wBind, logits, N, C, scale: SCALE }),
    ...linearBackward(gpu, p, { x: xb, w: wBind, dlogits: dlb, dx, dw: dwBind, N, C, scale: SCALE }),
  ]);
  await gpu.checkCompile();
  const ref = linearBackwardRef(x, w, dl, N, C, SCALE);
  const got = await gpu.readF32(logits);
  assertClose(got, linearForwardRef(x, w, N, C, SCALE), TOL[p], `linear forward ${p} ${tag}`);
  assertClose(await download(gpu, dx, N * C, p), ref.dx, TOL[p], `linear backward dx ${p} ${tag}`);
  const dw = await gpu.readF32(grads, PARAM_OFFSET, 10 * C);
  assertClose(dw, ref.dw, TOL[p], `linear backward dw ${p} ${tag}`);
  // dw is written inside its range only
  const around = new Uint32Array(await gpu.read(grads));
  for (const i of [PARAM_OFFSET / 4 - 1, PARAM_OFFSET / 4 + 10 * C]) {
    assert.equal(around[i], POISON, "dw range");
  }
}

Deno.test("linear head forward and backward", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("linear"));
  for (const p of precisions(gpu)) {
    // (at least 3 dx elements: a single sum of 10 products may cancel below the f32 tolerance)
    for (const [N, C] of [[1, 5], [7, 13], [100, 37], [384, 256]]) {
      await checkLinear(gpu, rand, p, N, C);
    }
    await withSmallGrid(() => checkLinear(gpu, rand, p, 9, 130)); // 9 rows, 5 dx workgroups
  }
});

// ------------------------------------------------------------------------------------------ loss, accuracy

/** Random logits with some exact ties in the row maximum (argmax must pick the first). */
function randomLogits(N: number, rand: () => number): Float64Array {
  const z = quantize(randn(N * 10, rand, 3), "f32");
  for (let n = 0; n < N; n += 5) {
    let at = 0;
    for (let k = 1; k < 10; k++) if (z[n * 10 + k] > z[n * 10 + at]) at = k;
    z[n * 10 + Math.floor(rand() * 10)] = z[n * 10 + at];
  }
  return z;
}

function randomLabels(N: number, rand: () => number): Uint32Array {
  return Uint32Array.from({ length: N }, () => Math.floor(rand() * 10));
}

Deno.test("cross-entropy with label smoothing: loss, dlogits, correct count", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("cross-entropy"));
  const STEPS = 6;
  for (const [N, eps] of [[1, 0.2], [7, 0], [300, 0.1], [384, 0.2]]) {
    const tag = `[N=${N} eps=${eps}]`;
    const z = randomLogits(N, rand), labels = randomLabels(N, rand);
    // make some rows correct so the count is not always ~N/10
    for (let n = 0; n < N; n += 3) {
      let at = 0;
      for (let k = 1; k < 10; k++) if (z[n * 10 + k] > z[n * 10 + at]) at = k;
      labels[n] = at;
    }
    const step = Math.floor(rand() * STEPS);
    const stats = poisoned(gpu, 2 * STEPS, "f32"), dlogits = poisoned(gpu, N * 10, "f32");
    const stepBuf = gpu.uniform(packStep({ step, flags: 2, values: [0.5] }));
    const ops = crossEntropy(gpu, {
      logits: upload(gpu, z, "f32"),
      labels: gpu.bufferFrom(labels),
      dlogits,
      stats,
      stepBuf,
      N,
      smoothing: eps,
    });
    await gpu.checkCompile();
    gpu.run(ops);
    const ref = crossEntropyRef(z, labels, N, eps);
    assertClose(await gpu.readF32(dlogits), ref.dlogits, TOL.f32, `cross-entropy dlogits f32 ${tag}`);
    const st = await gpu.readF32(stats);
    assertClose([st[2 * step]], [ref.loss], TOL.f32, `cross-entropy loss f32 ${tag}`);
    assert.equal(st[2 * step + 1], ref.correct, `cross-entropy correct count ${tag}`);
    const words = new Uint32Array(st.buffer);
    for (let i = 0; i < 2 * STEPS; i++) {
      if (i >> 1 !== step) assert.equal(words[i], POISON, `cross-entropy stats of other steps ${tag}`);
    }
  }
});

Deno.test("count correct", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("count correct"));
  for (const N of [1, 13, 2000]) {
    const z = randomLogits(N, rand), labels = randomLabels(N, rand);
    for (let n = 0; n < N; n += 2) {
      let at = 0;
      for (let k = 1; k < 10; k++) if (z[n * 10 + k] > z[n * 10 + at]) at = k;
      labels[n] = at;
    }
    const out = poisoned(gpu, 4, "f32");
    const slot = Math.floor(rand() * 4);
    gpu.run([
      countCorrect(gpu, { logits: upload(gpu, z, "f32"), labels: gpu.bufferFrom(labels), out, slot, N }),
    ]);
    await gpu.checkCompile();
    const got = await readU32(gpu, out);
    assert.equal(got[slot], countCorrectRef(z, labels, N), `count correct [N=${N}]`);
    for (let i = 0; i < 4; i++) if (i !== slot) assert.equal(got[i], POISON, "count correct other slots");
  }
});

Deno.test("scale-add", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("scale-add"));
  const check = async (n: number) => {
    const acc = randn(n, rand), x = randn(n, rand);
    acc[0] = x[0] = 1; // with a, b > 0: one output of size >= 0.25 (the tolerance is relative to the max-abs)
    quantizeInPlace(acc, "f32");
    quantizeInPlace(x, "f32");
    const a = Math.fround(0.25 + rand()), b = Math.fround(0.25 + rand());
    const accb = upload(gpu, acc, "f32");
    gpu.run([scaleAdd(gpu, { acc: accb, x: upload(gpu, x, "f32"), n, a, b })]);
    await gpu.checkCompile();
    assertClose(
      await download(gpu, accb, n, "f32"),
      scaleAddRef(acc, x, a, b),
      TOL.f32,
      `scale-add f32 [n=${n}]`,
    );
  };
  for (const n of [1, 10, 1003, 20000]) await check(n);
  await withSmallGrid(() => check(2560 + 7));
  // a = 0 starts an average: whatever acc held (here NaN) is overwritten
  const n = 1001, x = quantize(randn(n, rand), "f32"), acc = poisoned(gpu, n, "f32");
  gpu.run([scaleAdd(gpu, { acc, x: upload(gpu, x, "f32"), n, a: 0, b: 0.5 })]);
  assertClose(
    await download(gpu, acc, n, "f32"),
    scaleAddRef(new Float64Array(n), x, 0, 0.5),
    TOL.f32,
    "scale-add f32",
  );
});

// ------------------------------------------------------------------------------------------------ SGD, EMA

/** Step slot values: `at` gets `v`, the others junk (a kernel reading the wrong slot fails its check). */
function slotValues(at: number, v: number, rand: () => number): number[] {
  return Array.from({ length: STEP_SLOTS }, (_, i) => (i === at ? v : 100 + rand()));
}

Deno.test("sgd: Nesterov and plain momentum vs torch's formula, lr from its slot, gate bit", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("sgd"));
  const cases: {
    n: number;
    nesterov: boolean;
    lrSlot: number;
    gate?: { start: number; end: number; bit: number };
  }[] = [
    { n: 1037, nesterov: true, lrSlot: 0, gate: { start: 100, end: 137, bit: 1 } },
    { n: 5000, nesterov: false, lrSlot: 5 },
    { n: 300, nesterov: true, lrSlot: 15, gate: { start: 0, end: 64, bit: 2 ** 31 } },
    { n: 777, nesterov: false, lrSlot: 2, gate: { start: 700, end: 777, bit: 4 } },
  ];
  for (const { n, nesterov, lrSlot, gate } of cases) {
    const tag = `[n=${n} nesterov=${nesterov} slot ${lrSlot}${
      gate ? ` gate ${gate.start}-${gate.end}` : ""
    }]`;
    const momentum = Math.fround(0.5 + rand() * 0.4), weightDecay = Math.fround(rand() * 0.05);
    const p = quantize(randn(n, rand), "f32");
    const m = new Float64Array(n); // torch starts without a buffer; a zero buffer gives the same first step
    const pb = upload(gpu, p, "f32"), mb = upload(gpu, m, "f32");
    const gb = gpu.buffer(n * 4);
    const stepBuf = gpu.uniform(packStep({}));
    const settings = { lrSlot, momentum, weightDecay, nesterov, gate };
    const op = sgdStep(gpu, { params: pb, grads: gb, mom: mb, n, stepBuf, ...settings });
    await gpu.checkCompile();
    let frozen: Float32Array | undefined;
    for (let step = 0; step < 6; step++) {
      const trainGate = step < 3; // the whitening bias trains for the first epochs only
      const lr = Math.fround(0.01 + rand() * 0.1);
      const g = quantize(randn(n, rand), "f32");
      gpu.write(gb, new Float32Array(g));
      const otherBits = (gate ? ~gate.bit : ~0) >>> 0; // every other flag on: only the gate's bit counts
      const flags = (trainGate && gate ? gate.bit : 0) | (step % 2 ? otherBits : 0);
      gpu.write(stepBuf, packStep({ step, flags: flags >>> 0, values: slotValues(lrSlot, lr, rand) }));
      gpu.run([op]);
      sgdStepRef(p, g, m, { lr, weightDecay, momentum, nesterov }, gate && { ...gate, trainGate });
      const got = await gpu.readF32(pb);
      assertClose(got, p, TOL.f32, `sgd params f32 ${tag}`);
      assertClose(await gpu.readF32(mb), m, TOL.f32, `sgd momentum f32 ${tag}`);
      if (gate && step === 2) frozen = got.slice(gate.start, gate.end);
      if (gate && frozen && step > 2) {
        assertBitsEqual(got.slice(gate.start, gate.end), frozen, `sgd gate ${tag}`);
      }
    }
  }
});

Deno.test("sgd: bad settings are refused before any dispatch", async () => {
  const gpu = await testGpu();
  const b = gpu.buffer(64), stepBuf = gpu.uniform(packStep({}));
  const base = {
    params: b,
    grads: b,
    mom: b,
    n: 16,
    stepBuf,
    lrSlot: 0,
    momentum: 0.9,
    weightDecay: 0,
    nesterov: true,
  };
  assert.throws(() => sgdStep(gpu, { ...base, lrSlot: STEP_SLOTS }), /lr slot 16 not in \[0, 16\)/);
  assert.throws(() => sgdStep(gpu, { ...base, momentum: 1 }), /momentum 1 must be in \[0, 1\)/);
  assert.throws(() => sgdStep(gpu, { ...base, momentum: 0 }), /Nesterov momentum needs momentum > 0/);
  assert.throws(
    () => sgdStep(gpu, { ...base, gate: { start: 0, end: 4, bit: 3 } }),
    /gate bit 3 is not one flag bit/,
  );
  assert.throws(() => sgdStep(gpu, { ...base, gate: { start: 0, end: 17, bit: 1 } }), /outside \[0, 16\)/);
});

Deno.test("ema (lookahead): event off, lerp both branches, decay 1; decay from its slot", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("ema"));
  for (const [n, decaySlot, eventBit] of [[5, 0, 2], [2001, 9, 8]]) {
    const p = quantize(randn(n, rand), "f32"), e = quantize(randn(n, rand), "f32");
    const pb = upload(gpu, p, "f32"), eb = upload(gpu, e, "f32");
    const stepBuf = gpu.uniform(packStep({}));
    const op = emaUpdate(gpu, { params: pb, ema: eb, n, stepBuf, decaySlot, eventBit });
    await gpu.checkCompile();
    const decayStep = (decay: number, flags: number) =>
      gpu.write(stepBuf, packStep({ flags, values: slotValues(decaySlot, decay, rand) }));
    // event off (every other flag on): nothing changes, bit for bit
    decayStep(0.5, ~eventBit >>> 0);
    gpu.run([op]);
    assertBitsEqual(await gpu.readF32(pb), Float32Array.from(p), "ema off params");
    assertBitsEqual(await gpu.readF32(eb), Float32Array.from(e), "ema off buffer");
    for (const decay of [0.3, 0.8, Math.fround(0.95 ** 5 * 0.4)]) {
      // new params between updates (the optimizer ran), then the lookahead update
      const fresh = quantize(randn(n, rand), "f32");
      p.set(fresh);
      gpu.write(pb, new Float32Array(fresh));
      decayStep(decay, eventBit);
      gpu.run([op]);
      emaUpdateRef(p, e, Math.fround(decay));
      assertClose(await gpu.readF32(pb), p, TOL.f32, `ema params f32 [n=${n}]`);
      assertClose(await gpu.readF32(eb), e, TOL.f32, `ema buffer f32 [n=${n}]`);
    }
    // decay 1 (the final update): ema unchanged bit for bit, params = ema
    const emaBefore = await gpu.readF32(eb);
    gpu.write(pb, new Float32Array(randn(n, rand)));
    decayStep(1, eventBit);
    gpu.run([op]);
    assertBitsEqual(await gpu.readF32(eb), emaBefore, "ema decay 1 buffer");
    assertBitsEqual(await gpu.readF32(pb), emaBefore, "ema decay 1 params");
  }
});

Deno.test("loss and linear weight gradient are deterministic (same bits twice)", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("ops determinism"));
  const N = 384, C = 256;
  const xb = upload(gpu, randn(N * C, rand), "f32"), wb = upload(gpu, randn(10 * C, rand, 0.1), "f32");
  const zb = upload(gpu, randn(N * 10, rand, 3), "f32"), labels = gpu.bufferFrom(randomLabels(N, rand));
  const stepBuf = gpu.uniform(packStep({}));
  const runs: Uint8Array[][] = [];
  // Each run's outputs poisoned with another NaN: an element neither run writes differs too.
  for (const word of [POISON, POISON_2]) {
    const dl = poisoned(gpu, N * 10, "f32", "", word), stats = poisoned(gpu, 2, "f32", "", word);
    const dx = poisoned(gpu, N * C, "f32", "", word), dw = poisoned(gpu, 10 * C, "f32", "", word);
    gpu.run([
      ...crossEntropy(gpu, { logits: zb, labels, dlogits: dl, stats, stepBuf, N, smoothing: 0.2 }),
      ...linearBackward(gpu, "f32", { x: xb, w: wb, dlogits: dl, dx, dw, N, C, scale: SCALE }),
    ]);
    const bytes: Uint8Array[] = [];
    for (const b of [stats, dl, dx, dw]) bytes.push(new Uint8Array(await gpu.read(b)));
    runs.push(bytes);
  }
  ["stats", "dlogits", "dx", "dw"].forEach((name, i) => {
    const at = runs[0][i].findIndex((v, j) => v !== runs[1][i][j]);
    assert.equal(at, -1, `${name} differs between two runs (element ${at >> 2})`);
  });
});
