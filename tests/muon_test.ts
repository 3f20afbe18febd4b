// The Muon optimizer on the GPU (lib/train/muon.ts) against float64 PyTorch (tests/fixtures/muon.safetensors,
// from tests/torch_muon_fixtures.py) and the float64 TS references (lib/reference/muon.ts) on fresh inputs.
// The GPU works on HWIO weights with padded input channels; the references on PyTorch's OIHW view: agreement
// shows that Newton-Schulz on the stored (transposed, permuted, padded) layout is torch's.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Gpu } from "../lib/gpu/gpu.ts";
import { hwioToOihw, oihwToHwio } from "../lib/nn/model.ts";
import { type ConvWeightShape, MUON_NS, muonOps, muonPlan, newtonSchulzOps } from "../lib/train/muon.ts";
import { muonStepRef, newtonSchulzRef } from "../lib/reference/muon.ts";
import { readSafetensors, type SafetensorsTensor } from "../lib/io/safetensors.ts";
import { packSteps } from "../lib/gpu/steps.ts";
import { assertClose, freshSeed, quantize, randn, testGpu, testRng } from "./util.ts";

// Measured worst errors (relative to the output's max-abs) are a few 1e-6 for Newton-Schulz in f32 and below
// 1e-6 for the weights after a step; the tolerances leave about 10x.
const NS_TOL = 3e-5;
const STEP_TOL = 1e-5;
const REF_TOL = 1e-12; // the float64 TS reference against float64 torch

const fixture = readSafetensors(readFileSync(new URL("./fixtures/muon.safetensors", import.meta.url)));

function f64(name: string): { t: SafetensorsTensor; data: Float64Array } {
  const t = fixture[name];
  assert.ok(t, `muon.safetensors: missing ${name}`);
  assert.equal(t.dtype, "F64");
  return { t, data: t.data as Float64Array };
}

/** The stored shape of an OIHW weight: input channels padded to a multiple of 4, as lib/nn/model.ts stores them. */
function stored([O, I, KH, KW]: number[]): ConvWeightShape {
  return { O, I, KH, KW, ciPad: Math.ceil(I / 4) * 4 };
}

function dims(s: ConvWeightShape): number[] {
  return [s.O, s.I, s.KH, s.KW];
}

async function runNewtonSchulz(gpu: Gpu, oihw: ArrayLike<number>, shape: ConvWeightShape) {
  const input = gpu.bufferFrom(oihwToHwio(oihw, dims(shape), shape.ciPad));
  const output = gpu.buffer(muonPlan(shape).count * 4);
  gpu.poison(output);
  const { ops, stats } = newtonSchulzOps(gpu, { input, output, shape });
  await gpu.checkCompile();
  gpu.run(ops);
  const hwio = await gpu.readF32(output);
  assertPadZero(hwio, shape, "newton-schulz output");
  return { oihw: hwioToOihw(hwio, dims(shape), shape.ciPad), stats: await gpu.readF32(stats) };
}

/** Rows of padded input channels hold exact zeros. */
function assertPadZero(hwio: Float32Array, s: ConvWeightShape, label: string) {
  const at = hwio.subarray(0, s.KH * s.KW * s.ciPad * s.O).findIndex((v, i) =>
    Math.floor(i / s.O) % s.ciPad >= s.I && v !== 0
  );
  assert.equal(at, -1, `${label}: padded row ${Math.floor(at / s.O)} holds ${hwio[at]}`);
}

Deno.test("muon: Newton-Schulz on HWIO weights matches float64 torch (fixture) and the float64 reference", async () => {
  const gpu = await testGpu();
  for (let k = 0; fixture[`ns.${k}.input`]; k++) {
    const { t, data: input } = f64(`ns.${k}.input`);
    const expected = f64(`ns.${k}.output`).data;
    const shape = stored(t.shape);
    const tag = `[${t.shape.join("x")}${muonPlan(shape).transposed ? " transposed" : ""}]`;
    const O = t.shape[0];
    assertClose(
      newtonSchulzRef(input, O, input.length / O),
      expected,
      REF_TOL,
      `ns reference vs torch ${tag}`,
    );
    const { oihw } = await runNewtonSchulz(gpu, input, shape);
    assertClose(oihw, expected, NS_TOL, `ns fixture ${tag}`);
  }
});

Deno.test("muon: Newton-Schulz and the Frobenius norm on fresh inputs vs float64", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("newton-schulz"));
  // (64, 64, 3, 3): a recipe layer (K = 576, 147,456 floats: 576 partial sums, more than one workgroup's
  // worth)
  const shapes = [[64, 64, 3, 3], [40, 4, 3, 3], [13, 5, 3, 3], [9, 2, 2, 2], [1, 3, 1, 1], [6, 1, 1, 1]];
  for (const s of shapes) {
    const shape = stored(s);
    const input = quantize(randn(s.reduce((a, b) => a * b), rand, 0.5 + rand()), "f32");
    const tag = `[${s.join("x")}]`;
    const { oihw, stats } = await runNewtonSchulz(gpu, input, shape);
    assertClose(oihw, newtonSchulzRef(input, s[0], input.length / s[0]), NS_TOL, `ns fresh ${tag}`);
    const sumsq = input.reduce((a, v) => a + v * v, 0);
    assertClose([stats[0], stats[1]], [sumsq, sumsq], 1e-6, `frobenius sum of squares ${tag}`);
    assertClose([stats[2]], [1 / (Math.sqrt(sumsq) + MUON_NS.eps)], 1e-6, `frobenius scale ${tag}`);
  }
});

interface MuonCase {
  shape: ConvWeightShape;
  p0: ArrayLike<number>;
  grads: ArrayLike<number>[];
  lrs: number[];
  momentum: number;
  nesterov: boolean;
  lrSlot: number;
}

const SENTINEL = 64; // floats before and after the tensor: its range starts 256 bytes into the flat buffers

/**
 * Runs len(grads) Muon steps on the GPU with the tensor bound as a range of larger buffers (garbage in the
 * gradient's padded rows); returns params and momentum after each step (OIHW) and checks the rest untouched.
 */
async function runMuon(gpu: Gpu, c: MuonCase, rand: () => number) {
  const { shape } = c;
  const count = muonPlan(shape).count, total = count + 2 * SENTINEL;
  const range = (buffer: GPUBuffer) => ({ buffer, offset: SENTINEL * 4, size: count * 4 });
  const around = (x: Float32Array) => {
    const flat = new Float32Array(randn(total, rand));
    flat.set(x, SENTINEL);
    return flat;
  };
  const pInit = around(oihwToHwio(c.p0, dims(shape), shape.ciPad));
  const mInit = around(new Float32Array(count));
  const [params, grads, mom] = [gpu.bufferFrom(pInit), gpu.buffer(total * 4), gpu.bufferFrom(mInit)];
  const values = new Array(16).fill(999); // every other slot: a value the update must not read
  const step = (lr: number) => {
    values[c.lrSlot] = lr;
    return new Uint8Array(packSteps([{ ...ZERO_STEP, values }]));
  };
  const stepBuf = gpu.uniform(step(0));
  const { ops } = muonOps(gpu, {
    ...c,
    params: range(params),
    grads: range(grads),
    mom: range(mom),
    stepBuf,
    label: "muon_test",
  });
  await gpu.checkCompile();
  const after: { p: Float32Array; buf: Float32Array }[] = [];
  for (let s = 0; s < c.grads.length; s++) {
    const g = oihwToHwio(c.grads[s], dims(shape), shape.ciPad);
    for (let i = 0; i < count; i++) if (Math.floor(i / shape.O) % shape.ciPad >= shape.I) g[i] = 1 + rand();
    gpu.write(grads, around(g));
    gpu.write(stepBuf, step(c.lrs[s]));
    gpu.run(ops);
    const [p, m] = [await gpu.readF32(params), await gpu.readF32(mom)];
    for (const [name, got, init] of [["params", p, pInit], ["momentum", m, mInit]] as const) {
      const outside = [...Array(SENTINEL).keys()].flatMap((j) => [j, total - 1 - j]);
      const at = outside.find((i) => !Object.is(got[i], init[i]));
      assert.equal(at, undefined, `muon wrote ${name}[${at}] outside the tensor's range`);
      assertPadZero(got.subarray(SENTINEL, SENTINEL + count), shape, `muon ${name} step ${s}`);
    }
    const oihw = (x: Float32Array) =>
      hwioToOihw(x.subarray(SENTINEL, SENTINEL + count), dims(shape), shape.ciPad);
    after.push({ p: oihw(p), buf: oihw(m) });
  }
  return after;
}

const ZERO_STEP = {
  step: 0,
  epoch: 0,
  batchStart: 0,
  flags: 0,
};

Deno.test("muon: two optimizer steps match float64 torch's Muon.step (fixture)", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("muon fixture"));
  for (let k = 0; fixture[`muon.${k}.p0`]; k++) {
    const { t, data: p0 } = f64(`muon.${k}.p0`);
    const [lr1, lr2, momentum, nesterov] = f64(`muon.${k}.hyper`).data;
    const shape = stored(t.shape);
    const c: MuonCase = {
      shape,
      p0,
      grads: [f64(`muon.${k}.g1`).data, f64(`muon.${k}.g2`).data],
      lrs: [lr1, lr2],
      momentum,
      nesterov: nesterov === 1,
      lrSlot: 3 + k,
    };
    const after = await runMuon(gpu, c, rand);
    const tag = `[${t.shape.join("x")}${muonPlan(shape).transposed ? " transposed" : ""}]`;
    // the float64 reference reproduces torch
    const [p, buf] = [Float64Array.from(p0), new Float64Array(p0.length)];
    for (let s = 0; s < 2; s++) {
      muonStepRef(p, c.grads[s], buf, t.shape[0], { lr: c.lrs[s], momentum, nesterov: c.nesterov });
      assertClose(p, f64(`muon.${k}.p${s + 1}`).data, REF_TOL, `muon reference vs torch params ${tag}`);
      assertClose(after[s].p, f64(`muon.${k}.p${s + 1}`).data, STEP_TOL, `muon fixture params ${tag}`);
      assertClose(after[s].buf, f64(`muon.${k}.buf${s + 1}`).data, STEP_TOL, `muon fixture momentum ${tag}`);
    }
  }
});

Deno.test("muon: steps on fresh inputs vs the float64 reference; reruns give the same bits", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("muon fresh"));
  const shapes = [[24, 12, 3, 3], [40, 4, 3, 3], [11, 3, 3, 3], [8, 6, 1, 1]];
  for (const [k, s] of shapes.entries()) {
    const n = s.reduce((a, b) => a * b);
    const c: MuonCase = {
      shape: stored(s),
      p0: quantize(randn(n, rand, 0.1), "f32"),
      grads: [0, 1, 2].map(() => quantize(randn(n, rand, 0.01 + rand()), "f32")),
      lrs: [0, 1, 2].map(() => Math.fround(0.05 + rand() * 0.3)),
      momentum: Math.fround(0.5 + rand() * 0.45),
      nesterov: k % 2 === 0,
      lrSlot: (k * 5) % 16,
    };
    const tag = `[${s.join("x")}${c.nesterov ? " nesterov" : ""}]`;
    const after = await runMuon(gpu, c, rand);
    const [p, buf] = [Float64Array.from(c.p0), new Float64Array(n)];
    for (let step = 0; step < c.grads.length; step++) {
      muonStepRef(p, c.grads[step], buf, s[0], { ...c, lr: c.lrs[step] });
      assertClose(after[step].p, p, STEP_TOL, `muon fresh params ${tag}`);
      assertClose(after[step].buf, buf, STEP_TOL, `muon fresh momentum ${tag}`);
    }
    const again = await runMuon(gpu, c, rand);
    for (const [step, { p: q }] of again.entries()) {
      assert.ok(
        q.every((v, i) => Object.is(v, after[step].p[i])),
        `muon rerun ${tag} step ${step}: same bits`,
      );
    }
  }
});
