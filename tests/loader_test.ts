import assert from "node:assert/strict";
import { type Gpu, type Op, POISON_WORD } from "../lib/gpu/gpu.ts";
import { type Precision } from "../lib/gpu/kernels.ts";
import {
  batchBytes,
  EvalLoader,
  IMAGE_BYTES,
  INPUT_ELEMS,
  TrainLoader,
  type View,
} from "../lib/data/loader.ts";
import { type RefBatch, referenceEvalView, referenceTrainBatch } from "../lib/reference/loader.ts";
import { packSteps, STEP_BYTES } from "../lib/gpu/steps.ts";
import { freshSeed, precisions, testGpu, testRng } from "./util.ts";

const N = 37; // odd sizes: 4 full training batches of 8 (5 images dropped), test batches 16, 16, 5
const BATCH = 8;
const EVAL_BATCH = 16;
const EPOCHS = 3;
const SPLIT_BYTES = 20 * IMAGE_BYTES; // forces 20 + 17 images over the two image buffers

function randomSet(seed: number, n = N): { images: Uint8Array; labels: Uint8Array } {
  const rand = testRng(seed);
  const images = new Uint8Array(n * IMAGE_BYTES);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(rand() * 256);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) labels[i] = Math.floor(rand() * 10);
  return { images, labels };
}

function outputs(gpu: Gpu, batch: number, precision: Precision): { x: GPUBuffer; y: GPUBuffer } {
  const bytes = batchBytes(batch, precision);
  return { x: gpu.buffer(bytes.x, "x"), y: gpu.buffer(bytes.y, "y") };
}

/** Run one op on NaN-poisoned outputs; returns the raw bytes of `count` images and labels. */
async function runOp(
  gpu: Gpu,
  op: Op,
  out: { x: GPUBuffer; y: GPUBuffer },
  count: number,
  precision: Precision,
): Promise<{ x: Uint8Array; y: Uint32Array; tail: Uint32Array }> {
  gpu.poison(out.x);
  gpu.poison(out.y);
  gpu.run([op]);
  const xBytes = batchBytes(count, precision).x;
  return {
    x: new Uint8Array(await gpu.read(out.x, 0, xBytes)),
    y: new Uint32Array(await gpu.read(out.y, 0, count * 4)),
    tail: new Uint32Array(await gpu.read(out.x, xBytes)), // what lies past the written images
  };
}

function assertBitsEqual(actual: { x: Uint8Array; y: Uint32Array }, ref: RefBatch, label: string): void {
  assert.deepEqual([...actual.y], [...ref.y], `${label}: labels`);
  const expected = new Uint8Array(ref.x.buffer, ref.x.byteOffset, ref.x.byteLength);
  assert.equal(actual.x.length, expected.length, `${label}: x length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual.x[i] !== expected[i]) {
      const el = Math.floor(i / ref.x.BYTES_PER_ELEMENT);
      const got = new (ref.x.constructor as Float32ArrayConstructor)(actual.x.buffer)[el];
      const [img, pix, c] = [Math.floor(el / INPUT_ELEMS), Math.floor(el / 4) % 1024, el % 4];
      assert.fail(
        `${label}: image ${img} pixel (${pix >> 5}, ${pix & 31}) channel ${c}: got ${got}, ` +
          `expected ${ref.x[el]}`,
      );
    }
  }
}

function stepUniform(gpu: Gpu): GPUBuffer {
  return gpu.uniform(new Uint8Array(STEP_BYTES), "step");
}
function setStep(gpu: Gpu, buf: GPUBuffer, epoch: number, batchStart: number): void {
  const step = { step: 0, epoch, batchStart, flags: 0 };
  gpu.write(buf, new Uint8Array(packSteps([step]))); // struct Step
}

Deno.test("loader: training batches match the reference bit for bit (3 epochs, 1 or 2 buffers)", async () => {
  const gpu = await testGpu();
  const seed = freshSeed("loader train");
  const data = randomSet(seed);
  for (const precision of precisions(gpu)) {
    for (const maxBindingBytes of [undefined, SPLIT_BYTES]) {
      const loader = new TrainLoader(gpu, data.images, data.labels, {
        batchSize: BATCH,
        flip: true,
        translate: 2,
        seed,
        precision,
        epochs: EPOCHS,
        maxBindingBytes,
      });
      assert.equal(loader.split, maxBindingBytes ? 20 : N);
      assert.equal(loader.stepsPerEpoch, 4);
      const step = stepUniform(gpu), out = outputs(gpu, BATCH, precision);
      const op = loader.gatherOp(step, out.x, out.y);
      await gpu.checkCompile();
      for (let e = 0; e < EPOCHS; e++) {
        const plan = loader.planFor(e);
        for (let b = 0; b < loader.stepsPerEpoch; b++) {
          setStep(gpu, step, e, loader.batchStart(e, b));
          const got = await runOp(gpu, op, out, BATCH, precision);
          const ref = referenceTrainBatch(data.images, data.labels, plan, b, BATCH, 2, precision);
          assertBitsEqual(got, ref, `${precision} split=${loader.split} epoch ${e} batch ${b}`);
        }
      }
      loader.destroy();
    }
  }
});

Deno.test("loader: plan draws: flip once, alternate by epoch; shifts in range; perms valid", async () => {
  const gpu = await testGpu();
  const seed = freshSeed("loader plan");
  const data = randomSet(seed);
  const loader = new TrainLoader(gpu, data.images, data.labels, {
    batchSize: BATCH,
    flip: true,
    translate: 2,
    seed,
    precision: "f32",
    epochs: 2.5, // a fractional run still plans its last epoch
  });
  assert.equal(loader.epochs, 3);
  const plans = [0, 1, 2].map((e) => loader.planFor(e));
  const flipped = plans[0].flips.reduce((a, v) => a + v, 0);
  assert.ok(flipped > 0 && flipped < N, `first-epoch flips: ${flipped} of ${N}`);
  const seen = new Set<string>();
  for (const [e, plan] of plans.entries()) {
    assert.deepEqual(plan.flips, plans[0].flips, "the first-epoch flip is kept");
    assert.equal(plan.flipAll, e % 2 === 1);
    assert.deepEqual([...plan.perm].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
    for (const s of plan.shifts) assert.ok(s >= -2 && s <= 2);
    for (let i = 0; i < N; i++) seen.add(`${plan.shifts[2 * i]},${plan.shifts[2 * i + 1]}`);
  }
  assert.ok(seen.size >= 20, `only ${seen.size} of 25 shifts drawn in ${3 * N} draws`);
  assert.notDeepEqual(plans[0].perm, plans[1].perm);
  assert.notDeepEqual(plans[0].shifts, plans[1].shifts);
  assert.throws(() => loader.batchStart(3, 0), /planned/);
  assert.throws(() => loader.batchStart(0, 4), /outside/);
  assert.equal(loader.batchStart(2, 3), 2 * N + 3 * BATCH);
  loader.destroy();

  const plain = new TrainLoader(gpu, data.images, data.labels, {
    batchSize: BATCH,
    flip: false,
    translate: 0,
    seed,
    precision: "f32",
    epochs: 2,
  });
  const p1 = plain.planFor(1);
  assert.ok(p1.flips.every((f) => f === 0) && !p1.flipAll && p1.shifts.every((s) => s === 0));
  plain.destroy();
});

Deno.test("loader: on the GPU each image is mirrored on odd epochs relative to even ones", async () => {
  const gpu = await testGpu();
  const seed = freshSeed("loader alternate");
  const data = randomSet(seed);
  const loader = new TrainLoader(gpu, data.images, data.labels, {
    batchSize: BATCH,
    flip: true,
    translate: 0, // no crops: epochs differ only by order and the alternating flip
    seed,
    precision: "f32",
    epochs: EPOCHS,
  });
  const step = stepUniform(gpu), out = outputs(gpu, BATCH, "f32");
  const op = loader.gatherOp(step, out.x, out.y);
  // byImage[e][i]: image i's pixels in epoch e (images that were dropped stay undefined).
  const byImage: Float32Array[][] = [];
  for (let e = 0; e < EPOCHS; e++) {
    byImage.push([]);
    const perm = loader.planFor(e).perm;
    for (let b = 0; b < loader.stepsPerEpoch; b++) {
      setStep(gpu, step, e, loader.batchStart(e, b));
      const x = new Float32Array((await runOp(gpu, op, out, BATCH, "f32")).x.buffer);
      for (let j = 0; j < BATCH; j++) {
        byImage[e][perm[b * BATCH + j]] = x.slice(j * INPUT_ELEMS, (j + 1) * INPUT_ELEMS);
      }
    }
  }
  const mirrored = (a: Float32Array) => a.map((_, k) => a[(k & ~127) + (31 - ((k >> 2) & 31)) * 4 + (k & 3)]);
  let compared = 0;
  for (let i = 0; i < N; i++) {
    const [a, b, c] = [byImage[0][i], byImage[1][i], byImage[2][i]];
    if (a && c) assert.deepEqual(c, a, `image ${i}: epochs 0 and 2 agree`);
    if (a && b) {
      assert.deepEqual(b, mirrored(a), `image ${i}: epoch 1 is the mirror of epoch 0`);
      compared++;
    }
  }
  assert.ok(compared > 0);
  loader.destroy();
});

Deno.test("loader: same seed gives identical batches, different seeds differ", async () => {
  const gpu = await testGpu();
  const seed = freshSeed("loader seeds");
  const data = randomSet(seed);
  const opts = { batchSize: BATCH, flip: true, translate: 2, precision: "f32" as const, epochs: 2 };
  const batch = async (s: number) => {
    const loader = new TrainLoader(gpu, data.images, data.labels, { ...opts, seed: s });
    const step = stepUniform(gpu), out = outputs(gpu, BATCH, "f32");
    setStep(gpu, step, 1, loader.batchStart(1, 2));
    const got = await runOp(gpu, loader.gatherOp(step, out.x, out.y), out, BATCH, "f32");
    loader.destroy();
    return got;
  };
  const [a, b, c] = [await batch(seed), await batch(seed), await batch((seed + 1) >>> 0)];
  assert.deepEqual(a.x, b.x);
  assert.deepEqual(a.y, b.y);
  assert.notDeepEqual(a.x, c.x);
});

Deno.test("loader: test views match the reference bit for bit, partial last batch", async () => {
  const gpu = await testGpu();
  const seed = freshSeed("loader eval");
  const data = randomSet(seed);
  const views: View[] = [
    { flip: false, dy: 0, dx: 0 },
    { flip: true, dy: 0, dx: 0 },
    { flip: false, dy: -1, dx: -1 }, // the recipe's TTA crops: padded[0:32, 0:32] ...
    { flip: true, dy: 1, dx: 1 }, // ... and padded[2:34, 2:34], mirrored
    { flip: true, dy: 3, dx: -2 },
  ];
  for (const precision of precisions(gpu)) {
    for (const maxBindingBytes of [undefined, SPLIT_BYTES]) {
      const loader = new EvalLoader(gpu, data.images, data.labels, {
        batchSize: EVAL_BATCH,
        precision,
        maxBindingBytes,
      });
      assert.equal(loader.numBatches, 3);
      assert.deepEqual([0, 1, 2].map((b) => loader.batchCount(b)), [16, 16, 5]);
      const out = outputs(gpu, EVAL_BATCH, precision);
      for (let b = 0; b < loader.numBatches; b++) {
        const count = loader.batchCount(b);
        for (const view of views) {
          const got = await runOp(gpu, loader.viewOp(b, view, out.x, out.y), out, count, precision);
          const ref = referenceEvalView(data.images, data.labels, b * EVAL_BATCH, count, view, precision);
          assertBitsEqual(got, ref, `${precision} split=${loader.split} batch ${b} ${JSON.stringify(view)}`);
          assert.ok(got.tail.every((w) => w === POISON_WORD), "nothing written past the batch's images");
        }
      }
      await gpu.checkCompile();
      loader.destroy();
    }
  }
  // The default batch is the recipe's 2000.
  const whole = new EvalLoader(gpu, data.images, data.labels, { precision: "f32" });
  assert.equal(whole.batchSize, 2000);
  assert.equal(whole.batchCount(0), N);
  whole.destroy();
});

Deno.test("loader: clear errors for sets that do not fit in two buffers and bad options", async () => {
  const gpu = await testGpu();
  const data = randomSet(1);
  const base = { batchSize: BATCH, flip: true, translate: 2, seed: 1, precision: "f32" as const, epochs: 1 };
  assert.throws(
    () => new TrainLoader(gpu, data.images, data.labels, { ...base, maxBindingBytes: 18 * IMAGE_BYTES }),
    /do not fit in two storage buffers/,
  );
  assert.throws(
    () =>
      new EvalLoader(gpu, data.images, data.labels, { precision: "f32", maxBindingBytes: 10 * IMAGE_BYTES }),
    /do not fit/,
  );
  assert.throws(
    () => new TrainLoader(gpu, data.images, data.labels, { ...base, translate: 32 }),
    /translate/,
  );
  assert.throws(() => new TrainLoader(gpu, data.images.subarray(1), data.labels, base), /image bytes/);
  const ev = new EvalLoader(gpu, data.images, data.labels, { precision: "f32" });
  const out = outputs(gpu, 4, "f32");
  assert.throws(() => ev.viewOp(0, { flip: false, dy: 0, dx: 0 }, out.x, out.y), /x has/);
  ev.destroy();
});
