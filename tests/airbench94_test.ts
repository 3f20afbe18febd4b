// experiments/airbench94.ts (airbench94 with BatchNorm): the network from its makeNet against the PyTorch
// fixture tests/fixtures/net_bn.safetensors (made by `tests/torch_bn.py fixture`): training-mode logits,
// loss, every gradient, parameters and running statistics after two Nesterov SGD steps with the recipe's
// groups (norm biases at lr x bias_scaler), eval-mode logits; then a tiny end-to-end run on generated data.

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { INPUT_SHAPE } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import { getF32, loadSafetensors } from "../lib/io/safetensors.ts";
import { submitSteps } from "../lib/gpu/steps.ts";
import { Trainer } from "../lib/train/trainer.ts";
import { hyp, makeNet } from "../experiments/airbench94.ts";
import { trainTinyEndToEnd } from "./synthetic.ts";
import { assertClose, fixtureSgd, sgdSteps, testGpu, toInput } from "./util.ts";
import { inGroup } from "../lib/train/optim.ts";

const FIXTURES = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures");

Deno.test("airbench94 (BatchNorm) net matches PyTorch: train/eval logits, loss, gradients, 2 steps + running stats", async () => {
  const fx = loadSafetensors(join(FIXTURES, "net_bn.safetensors"));
  const t = fx.tensors, meta = fx.metadata;
  const N = Number(meta.batch);
  const widths = JSON.parse(meta.widths) as number[];
  const bias_scaler = Number(meta.bias_scaler);
  const h = {
    ...hyp.defaults,
    opt: { ...hyp.defaults.opt, bias_scaler },
    net: { ...hyp.defaults.net, widths, batchnorm_momentum: Number(meta.batchnorm_momentum) },
  };
  const gpu = await testGpu();
  const graph = new Graph(makeNet(h), INPUT_SHAPE);
  // tests/torch_bn.py's make_optimizer: airbench's param groups, the norm biases at lr x bias_scaler with
  // weight decay wd / bias_scaler
  const [lr, weightDecay] = [Number(meta.lr), Number(meta.weight_decay)];
  const optimizers = fixtureSgd({ momentum: Number(meta.momentum), weightDecay }, [
    { params: inGroup("norm_bias"), lr: "lr_biases", weight_decay: weightDecay / bias_scaler },
  ]);
  const trainer = new Trainer(gpu, graph, {
    precision: "f32",
    batch: N,
    steps: 2,
    loss: { labelSmoothing: 0.2 },
    optimizers,
  });
  const { layout, state, net, table, step } = trainer;
  const evalNet = trainer.evalNet(N);
  await gpu.checkCompile();
  assert.deepEqual(layout.entries.map((e) => e.name), JSON.parse(meta.state_dict));
  assert.ok(layout.entries.some((e) => e.name === "2.norm1.running_var" && e.store === "buffers"));
  assert.equal(layout.get("2.norm1.weight").store, "frozen");
  assert.equal(layout.get("2.norm2.bias").group, "norm_bias");

  const params: Record<string, Float32Array> = {};
  for (const e of layout.entries) params[e.name] = getF32(t, `param.${e.name}`);
  state.load(params);
  gpu.write(net.x, toInput(getF32(t, "input"), N));
  gpu.write(evalNet.x, toInput(getF32(t, "input"), N));
  gpu.write(step.labels, Uint32Array.from(t.labels.data as Int32Array));
  gpu.poison(net.output);
  gpu.poison(state.grads);
  table.write(sgdSteps(step, 2, { lr, lr_biases: lr * bias_scaler }));
  const ops = step.ops();
  const errors: Record<string, number> = {};
  const check = (got: ArrayLike<number>, key: string) => {
    errors[key] = assertClose(got, getF32(t, key), 1e-4, `net_bn ${key}`);
  };
  const stepped = layout.entries.filter((e) => e.store !== "frozen");

  // Step 1: forward (logits stay in net.output through the backward), loss, gradients, update.
  submitSteps(gpu, table, 0, 1, ops);
  check(await gpu.readF32(net.output), "logits");
  check([(await gpu.readF32(step.stats, 0, 1))[0]], "loss");
  const grads = await state.readGrads();
  for (const e of layout.trained) check(grads[e.name].data, `grad.${e.name}`);
  let now = await state.read();
  for (const e of stepped) check(now[e.name].data, `step1.${e.name}`);
  // Step 2 uses the momentum buffer and running statistics from step 1.
  submitSteps(gpu, table, 1, 2, ops);
  check(await gpu.readF32(net.output), "logits2");
  check(await gpu.readF32(step.stats, 8, 1), "loss2");
  now = await state.read();
  for (const e of stepped) check(now[e.name].data, `step2.${e.name}`);
  for (const e of layout.entries.filter((e) => e.store === "frozen")) {
    assertClose(now[e.name].data, getF32(t, `param.${e.name}`), 0, `frozen ${e.name}`);
  }
  // Eval mode: the running statistics, which the eval forward leaves as they are.
  gpu.submit([{ ops: evalNet.forwardOps }]);
  check(await gpu.readF32(evalNet.output), "eval_logits");
  now = await state.read();
  for (const e of stepped) check(now[e.name].data, `step2.${e.name}`);
  const worst = Object.entries(errors).sort((a, b) => b[1] - a[1])[0];
  console.log(
    `net_bn: ${Object.keys(errors).length} tensors, max relative error ${worst[1].toExponential(2)} (${
      worst[0]
    })`,
  );
});

Deno.test("experiments/airbench94.ts trains a tiny BatchNorm net end to end and saves PyTorch-named weights", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench94-e2e-" });
  try {
    const { log, weights } = await trainTinyEndToEnd("experiments/airbench94.ts", dir);
    assert.equal(log.status, "done");
    assert.equal(log.experiment, "experiments/airbench94.ts");
    assert.equal(log.config.opt.bias_scaler, 64);
    assert.equal(log.config.stepsPerRun, 30); // ceil(20 steps per epoch x 1.5)
    assert.equal(log.runs[0].epochs.length, 2);
    assert.ok(log.runs[0].tta_val_acc > 0.3, `learns above chance: ${log.runs[0].tta_val_acc}`);
    assert.ok(
      log.network.some((n: { torch: string }) =>
        n.torch.startsWith("nn.BatchNorm2d(8, eps=1e-12, momentum=0.4")
      ),
    );
    const w = loadSafetensors(weights).tensors;
    for (
      const k of [
        "0.weight",
        "0.bias",
        "2.conv1.weight",
        "2.norm1.weight",
        "2.norm1.bias",
        "2.norm1.running_mean",
      ]
    ) {
      assert.ok(w[k], `weights hold ${k}`);
    }
    assert.ok(w["4.norm2.running_var"] && w["7.weight"]);
    assert.equal(w["2.conv1.bias"], undefined, "the block convolutions have no bias");
    assert.deepEqual(
      [...getF32(w, "3.norm2.weight")],
      new Array(8).fill(1),
      "frozen BatchNorm weight stays 1",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
