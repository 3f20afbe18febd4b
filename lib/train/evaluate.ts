// Test-set evaluation with test-time augmentation (the recipe's `infer`), all on the GPU.
//
// level 0: net(x); level 1: mirror(x) = 0.5 net(x) + 0.5 net(flip x);
// level 2: 0.5 mirror(x) + 0.5 mean(mirror(pad1-reflect crop at (0,0)), mirror(crop at (2,2))),
//   i.e. the views shifted by (-1,-1) and (+1,+1).
// The recipe evaluates in batches of 2000; every image is independent, so we use the largest batch whose
// activations fit the adapter's storage-binding limit (same result).

import type { CifarSplit } from "../data/cifar_batches.ts";
import { type Gpu, type Op, warmUp } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import { EvalLoader, type View } from "../data/loader.ts";
import { type Net } from "../nn/model.ts";
import { countCorrect, scaleAdd } from "../nn/ops.ts";
import type { GpuTimer } from "../gpu/timer.ts";

/** Views and their weights in the final logits for each TTA level. */
export function ttaViews(level: number): { view: View; weight: number }[] {
  const mirror = (dy: number, dx: number, w: number) => [
    { view: { flip: false, dy, dx }, weight: w / 2 },
    { view: { flip: true, dy, dx }, weight: w / 2 },
  ];
  if (level === 0) return [{ view: { flip: false, dy: 0, dx: 0 }, weight: 1 }];
  if (level === 1) return mirror(0, 0, 1);
  if (level === 2) return [...mirror(0, 0, 0.5), ...mirror(-1, -1, 0.25), ...mirror(1, 1, 0.25)];
  throw new Error(`TTA level ${level}: expected 0, 1 or 2`);
}

export class Evaluator {
  private readonly loader: EvalLoader;
  private readonly labels: GPUBuffer;
  private readonly acc: GPUBuffer; // f32 [B][10] weighted sum of the views' logits
  private readonly correct: GPUBuffer; // u32 per batch
  private readonly batches = new Map<number, Op[][][]>(); // per level: per batch, per view: its ops

  /**
   * `viewSubmits`: one submit per view of a batch, each awaited (CPU adapters, where a batch's views take
   * seconds: an interrupt waits for one view only); else one submit per batch.
   */
  constructor(
    readonly gpu: Gpu,
    p: Precision,
    readonly net: Net,
    test: CifarSplit,
    readonly viewSubmits = false,
  ) {
    this.loader = new EvalLoader(gpu, test.images, test.labels, { precision: p, batchSize: net.batch });
    this.labels = gpu.buffer(net.batch * 4, "eval.labels");
    this.acc = gpu.buffer(net.batch * 10 * 4, "eval.logits");
    this.correct = gpu.buffer(this.loader.numBatches * 4, "eval.correct");
  }

  get n(): number {
    return this.loader.n;
  }

  private ops(level: number): Op[][][] {
    let cached = this.batches.get(level);
    if (cached) return cached;
    const { gpu, net } = this;
    const views = ttaViews(level);
    cached = [];
    for (let b = 0; b < this.loader.numBatches; b++) {
      const groups: Op[][] = views.map(({ view, weight }, i) => [
        this.loader.viewOp(b, view, net.x, this.labels),
        ...net.forwardOps,
        scaleAdd(gpu, { acc: this.acc, x: net.output, n: net.batch * 10, a: i === 0 ? 0 : 1, b: weight }),
      ]);
      const count = this.loader.batchCount(b);
      groups[groups.length - 1].push(
        countCorrect(gpu, { logits: this.acc, labels: this.labels, out: this.correct, slot: b, N: count }),
      );
      cached.push(groups);
    }
    this.batches.set(level, cached);
    return cached;
  }

  /** Accuracy on the whole test set; one submit per batch, `onBatch` called after each for progress. */
  async accuracy(
    level: number,
    timer?: GpuTimer,
    onBatch?: (done: number, total: number) => void,
  ): Promise<number> {
    const all = this.ops(level);
    for (let b = 0; b < all.length; b++) {
      await this.submit(all[b], timer);
      if (onBatch) {
        await this.gpu.sync();
        onBatch(b + 1, all.length);
      }
    }
    const counts = new Uint32Array(await this.gpu.read(this.correct));
    return counts.reduce((a, c) => a + c, 0) / this.loader.n;
  }

  /**
   * The predicted class of every test image (its index in the split): the argmax of the views' weighted
   * logits, the sum `accuracy` scores. Reads each batch's logits back (the page's confusion matrix).
   */
  async predictions(level: number): Promise<Uint8Array> {
    const all = this.ops(level), out = new Uint8Array(this.loader.n);
    for (let b = 0; b < all.length; b++) {
      await this.submit(all[b]);
      const count = this.loader.batchCount(b), logits = await this.gpu.readF32(this.acc, 0, count * 10);
      for (let j = 0; j < count; j++) {
        let best = 0;
        for (let c = 1; c < 10; c++) if (logits[j * 10 + c] > logits[j * 10 + best]) best = c;
        out[this.loader.batchStart(b) + j] = best;
      }
    }
    return out;
  }

  /** One batch's views: one submit, or one awaited submit per view (viewSubmits). */
  private async submit(views: Op[][], timer?: GpuTimer): Promise<void> {
    if (!this.viewSubmits) {
      this.gpu.run(views.flat(), timer?.writes(true, true));
      return;
    }
    for (const ops of views) {
      this.gpu.run(ops, timer?.writes(true, true));
      await this.gpu.sync();
    }
  }

  /**
   * Compile every pipeline of this level (see warmUp) by running its first batch: every batch uses the same
   * pipelines (cached by kernel and constants), so the rest would only cost time. Does not change the
   * parameters.
   */
  warm(level: number): Promise<void> {
    return warmUp(this.gpu, this.ops(level)[0].flat());
  }

  destroy(): void {
    this.loader.destroy();
  }
}
