// Shared helpers for kernel tests: fresh random inputs, tolerance checks relative to the output's max-abs,
// uploads in either precision, and one GPU per test process.

import assert from "node:assert/strict";
import { Gpu, POISON_WORD } from "../lib/gpu/gpu.ts";
import { type Precision } from "../lib/gpu/kernels.ts";
import { inGroup, type Optimizer, SGD, type SgdGroup } from "../lib/train/optim.ts";
import type { StepValues } from "../lib/gpu/steps.ts";
import type { TrainStep } from "../lib/train/train_step.ts";

let gpuPromise: Promise<Gpu> | undefined;
/** One device for the whole test process (creating devices repeatedly is slow on lavapipe). */
export function testGpu(): Promise<Gpu> {
  gpuPromise ??= Gpu.create();
  return gpuPromise;
}

/** Seed from the clock, printed so a failure can be replayed with TEST_SEED=... */
export function freshSeed(label: string): number {
  const env = Deno.env.get("TEST_SEED");
  const seed = env ? Number(env) : (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;
  if (Deno.env.get("TEST_VERBOSE")) console.log(`${label}: TEST_SEED=${seed}`);
  return seed;
}

/** Small deterministic generator for test data (mulberry32). */
export function testRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal(0, scale) samples as a Float64Array (Box-Muller). */
export function randn(n: number, rand: () => number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12), v = rand();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** Values as stored on the GPU for this precision (so the float64 reference sees exactly the same inputs). */
export function quantize(x: ArrayLike<number>, precision: Precision): Float64Array {
  const out = new Float64Array(x.length);
  const round = precision === "f16" ? Math.f16round : Math.fround;
  for (let i = 0; i < x.length; i++) out[i] = round(x[i]);
  return out;
}

export function toTyped(x: ArrayLike<number>, precision: Precision): Float32Array | Float16Array {
  return precision === "f16" ? Float16Array.from(x) : Float32Array.from(x);
}

export function upload(gpu: Gpu, x: ArrayLike<number>, precision: Precision, label = ""): GPUBuffer {
  return gpu.bufferFrom(toTyped(x, precision), label);
}

export async function download(
  gpu: Gpu,
  buf: GPUBuffer,
  count: number,
  precision: Precision,
): Promise<Float64Array> {
  const bytes = await gpu.read(buf, 0, count * (precision === "f16" ? 2 : 4));
  const arr = precision === "f16" ? new Float16Array(bytes) : new Float32Array(bytes);
  return Float64Array.from(arr);
}

/** gpu.poison's 32-bit word: NaN in f32 and in both f16 halves. */
export const POISON = POISON_WORD;
/**
 * A second poison for the "same bits twice" checks: NaN in f32 and in both f16 halves, and unlike POISON in
 * some byte of every f32 and every f16 element, so an output left unwritten by both runs differs between
 * them.
 */
export const POISON_2 = 0x7fd57e5b;

/**
 * A buffer of `count` elements of the precision, filled with NaN (gpu.poison's word, or `word`) so unwritten
 * outputs fail the check.
 */
export function poisoned(
  gpu: Gpu,
  count: number,
  precision: Precision,
  label = "",
  word = POISON,
): GPUBuffer {
  const buf = gpu.buffer(count * (precision === "f16" ? 2 : 4), label);
  if (word === POISON) gpu.poison(buf);
  else gpu.write(buf, new Uint32Array(buf.size / 4).fill(word));
  return buf;
}

export const TOL: Record<Precision, number> = { f32: 1e-5, f16: 1e-2 };

/**
 * Largest |actual - expected| relative to max |expected|; throws when it exceeds tol or when any value is
 * not finite (a NaN means the kernel left an element unwritten). Returns the error for the closing report.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  label: string,
): number {
  assert.equal(
    actual.length,
    expected.length,
    `${label}: length ${actual.length} != expected ${expected.length}`,
  );
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
  const denom = maxAbs > 0 ? maxAbs : 1;
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    // a value that is not finite (an element left unwritten) is the worst error; the first one is reported
    const e = Number.isFinite(actual[i]) ? Math.abs(actual[i] - expected[i]) / denom : Infinity;
    if (e > worst) [worst, at] = [e, i];
  }
  assert.ok(
    worst < Infinity,
    `${label}: element ${at} is ${actual[at]} (expected ${expected[at]}): not written?`,
  );
  assert.ok(
    worst <= tol,
    `${label}: max relative error ${worst.toExponential(3)} > ${tol} at ${at} ` +
      `(got ${actual[at]}, expected ${expected[at]}, max-abs ${maxAbs})`,
  );
  recordError(label, worst, tol);
  return worst;
}

// Largest error per check label over the test run, and its largest fraction of the tolerance (a check whose
// errors come near its tolerance on fresh inputs would be flaky); printed with ERROR_REPORT=1.
const worstSeen = new Map<string, { err: number; ofTol: number }>();
function recordError(label: string, err: number, tol: number) {
  const key = label.replace(/\s*\[.*\]$/, "");
  const w = worstSeen.get(key) ?? { err: 0, ofTol: 0 };
  worstSeen.set(key, { err: Math.max(w.err, err), ofTol: Math.max(w.ofTol, tol > 0 ? err / tol : 0) });
}
globalThis.addEventListener("unload", () => {
  if (!Deno.env.get("ERROR_REPORT")) return;
  for (const [k, v] of [...worstSeen].sort()) {
    console.log(`max-rel-error ${k}: ${v.err.toExponential(2)} (${v.ofTol.toFixed(2)} of its tolerance)`);
  }
});

/** Precisions this adapter can test. */
export function precisions(gpu: Gpu): Precision[] {
  return gpu.f16 ? ["f32", "f16"] : ["f32"];
}

/** NCHW [N][3][32][32] -> the network's NHWC input with a zero 4th channel. */
export function toInput(nchw: ArrayLike<number>, N: number): Float32Array {
  const out = new Float32Array(N * 32 * 32 * 4);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 1024; i++) out[(n * 1024 + i) * 4 + c] = nchw[(n * 3 + c) * 1024 + i];
    }
  }
  return out;
}

/**
 * The PyTorch fixtures' optimizer: torch.optim.SGD(momentum, weight_decay, nesterov=True) at the per-step lr
 * "lr", the whitening bias in its own group gated by "whiten_bias" (as main.ts declares it), no lookahead;
 * `groups` (e.g. the BatchNorm biases at another lr) come before the rest.
 */
export function fixtureSgd(
  o: { momentum: number; weightDecay: number },
  groups: SgdGroup[] = [],
): Optimizer[] {
  return [SGD([
    { params: inGroup("whiten_bias"), lr: "lr", gate: "whiten_bias" },
    ...groups,
    { params: "rest", lr: "lr" },
  ], { momentum: o.momentum, nesterov: true, weight_decay: o.weightDecay })];
}

/** `n` steps of a training step's plan with the same per-step values, the whitening bias training. */
export function sgdSteps(step: TrainStep, n: number, values: Record<string, number>): StepValues[] {
  const plan = Array.from({ length: n }, () => ({ values, on: { whiten_bias: true } }));
  return step.pack(plan, { stepsPerEpoch: n, batchStart: () => 0 });
}
