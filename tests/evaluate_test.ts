// The evaluator's two ways to submit (lib/train/evaluate.ts): one submit per batch (GPUs) and one awaited
// submit per TTA view of a batch (CPU adapters, so an interrupt waits for one view), at different batch
// sizes, count the same correct images of a random network on random images, at every TTA level; the
// predicted classes (the page's confusion matrix) are the same either way and are what the accuracy counts.

import assert from "node:assert/strict";
import { IMAGE_BYTES } from "../lib/data/cifar_batches.ts";
import { tilesFor } from "../lib/nn/conv.ts";
import { Evaluator } from "../lib/train/evaluate.ts";
import { initParams, INPUT_SHAPE, Net, NetState, ParamLayout } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import { hyp, makeNet } from "../main.ts";
import { testGpu, testRng } from "./util.ts";

Deno.test("evaluation: per-view submits and smaller batches give the same accuracy at every TTA level", async () => {
  const gpu = await testGpu();
  const rand = testRng(11);
  const graph = new Graph(
    makeNet({ ...hyp.defaults, net: { ...hyp.defaults.net, widths: [8, 8, 8] } }),
    INPUT_SHAPE,
  );
  const layout = new ParamLayout(graph);
  const state = new NetState(gpu, layout);
  const params = initParams(layout, rand);
  for (const e of layout.entries) {
    if (e.init === "external") params[e.name] = params[e.name].map(() => (rand() - 0.5) * 2);
  }
  state.load(params);
  const n = 130; // not a multiple of either batch: the last batch is partial
  const test = {
    images: Uint8Array.from({ length: n * IMAGE_BYTES }, () => Math.floor(rand() * 256)),
    labels: Uint8Array.from({ length: n }, () => Math.floor(rand() * 10)),
    n,
  };
  const tiles = tilesFor(gpu.adapter);
  const make = (batch: number, perView: boolean) =>
    new Evaluator(gpu, "f32", new Net(gpu, "f32", graph, state, batch, tiles, false), test, perView);
  const whole = make(n, false), views = make(48, true);
  try {
    for (const level of [0, 1, 2]) {
      const a = await whole.accuracy(level);
      const b = await views.accuracy(level, undefined, () => {});
      assert.ok(a * n === Math.round(a * n), `${a} is a count over ${n}`);
      assert.equal(b, a, `TTA level ${level}`);
      // The page's predictions (its confusion matrix) are the classes this accuracy counted, either way.
      const p = await whole.predictions(level);
      assert.deepEqual(await views.predictions(level), p, `predictions, TTA level ${level}`);
      assert.equal(
        p.filter((c, i) => c === test.labels[i]).length,
        a * n,
        `predictions, TTA level ${level}`,
      );
    }
  } finally {
    whole.destroy();
    views.destroy();
  }
});
