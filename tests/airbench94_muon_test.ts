// experiments/airbench94_muon.ts: its network, optimizers (SGD + Muon through lib/train/optim.ts's seam) and
// plan against the PyTorch fixture tests/fixtures/net_muon.safetensors (made by `tests/torch_muon_train.py
// fixture`): training-mode logits, loss, every gradient, parameters and running statistics after two steps
// (the second with the whitening bias detached), eval-mode logits; Muon on a Linear weight against the
// float64 reference; then a tiny end-to-end run on generated data.

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { INPUT_SHAPE, NetState, ParamLayout } from "../lib/nn/model.ts";
import { Muon } from "../lib/train/muon.ts";
import { Graph, Named } from "../lib/nn/module.ts";
import { named } from "../lib/train/optim.ts";
import { muonStepRef } from "../lib/reference/muon.ts";
import { getF32, loadSafetensors } from "../lib/io/safetensors.ts";
import { StepSlots, StepTable, submitSteps } from "../lib/gpu/steps.ts";
import { Trainer } from "../lib/train/trainer.ts";
import { Flatten, GlobalMaxPool, Linear } from "../lib/nn/layers.ts";
import { hyp, makeNet, optimizers, plan } from "../experiments/airbench94_muon.ts";
import { trainTinyEndToEnd } from "./synthetic.ts";
import { assertClose, freshSeed, randn, testGpu, testRng, toInput } from "./util.ts";

const FIXTURES = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures");
// f32 against float64 torch, Newton-Schulz included: measured worst 5.3e-6 (the printed summary); 10x margin
const TOL = 5e-5;

Deno.test("airbench94_muon net, SGD + Muon and plan match PyTorch: logits, loss, gradients, 2 steps, eval", async () => {
  const fx = loadSafetensors(join(FIXTURES, "net_muon.safetensors"));
  const t = fx.tensors, meta = fx.metadata;
  const N = Number(meta.batch), th = JSON.parse(meta.hyp);
  // The fixture's plan: whiten_bias_steps = ceil(1 epoch x 1 step) = 1, total = ceil(4 epochs x 1 step) = 4.
  const h = {
    ...hyp.defaults,
    opt: {
      ...hyp.defaults.opt,
      batch_size: N,
      weight_decay: th.weight_decay,
      whiten_bias_epochs: Number(meta.whiten_bias_steps),
      train_epochs: Number(meta.total_steps),
    },
    net: { ...hyp.defaults.net, widths: JSON.parse(meta.widths), batchnorm_momentum: th.batchnorm_momentum },
  };
  assert.deepEqual(
    [th.bias_lr, th.head_lr, th.muon_lr, th.sgd_momentum, th.muon_momentum, th.label_smoothing],
    [h.opt.bias_lr, h.opt.head_lr, h.opt.muon_lr, h.opt.momentum, h.opt.muon_momentum, h.opt.label_smoothing],
  );
  const gpu = await testGpu();
  const trainer = new Trainer(gpu, new Graph(makeNet(h), INPUT_SHAPE), {
    precision: "f32",
    batch: N,
    steps: 2,
    loss: { labelSmoothing: h.opt.label_smoothing },
    optimizers: optimizers(h),
  });
  const { layout, state, net, table, step } = trainer;
  const evalNet = trainer.evalNet(N);
  await gpu.checkCompile();
  assert.deepEqual(layout.entries.map((e) => e.name), JSON.parse(meta.state_dict));
  assert.deepEqual(step.optimizerOpsBy.map((o) => o.opt.name), ["sgd", "muon"]);
  assert.equal(layout.get("layers.1.norm1.weight").store, "frozen");

  const params: Record<string, Float32Array> = {};
  for (const e of layout.entries) params[e.name] = getF32(t, `param.${e.name}`);
  state.load(params);
  for (const n of [net, evalNet]) gpu.write(n.x, toInput(getF32(t, "input"), N));
  gpu.write(step.labels, Uint32Array.from(t.labels.data as Int32Array));
  gpu.poison(net.output);
  gpu.poison(state.grads);
  const total = Number(meta.total_steps);
  table.write(step.pack(plan(h, 1, total).slice(0, 2), { stepsPerEpoch: 1, batchStart: () => 0 }));
  const ops = step.ops();
  const errors: Record<string, number> = {};
  const check = (got: ArrayLike<number>, key: string) => {
    errors[key] = assertClose(got, getF32(t, key), TOL, `net_muon ${key}`);
  };
  const stepped = layout.entries.filter((e) => e.store !== "frozen");

  submitSteps(gpu, table, 0, 1, ops);
  check(await gpu.readF32(net.output), "logits");
  check([(await gpu.readF32(step.stats, 0, 1))[0]], "loss");
  const grads = await state.readGrads();
  for (const e of layout.trained) check(grads[e.name].data, `grad.${e.name}`);
  let now = await state.read();
  for (const e of stepped) check(now[e.name].data, `step1.${e.name}`);
  const whitenBias = now["whiten.bias"].data.slice();
  // Step 2: the whitening bias is gated off (its grad detached in torch), every other lr x 0.75.
  submitSteps(gpu, table, 1, 2, ops);
  check(await gpu.readF32(net.output), "logits2");
  check(await gpu.readF32(step.stats, 8, 1), "loss2");
  now = await state.read();
  for (const e of stepped) check(now[e.name].data, `step2.${e.name}`);
  assert.deepEqual(now["whiten.bias"].data, whitenBias, "the gated whitening bias does not move");
  for (const e of layout.entries.filter((e) => e.store === "frozen")) {
    assertClose(now[e.name].data, getF32(t, `param.${e.name}`), 0, `frozen ${e.name}`);
  }
  gpu.submit([{ ops: evalNet.forwardOps }]);
  check(await gpu.readF32(evalNet.output), "eval_logits");
  const worst = Object.entries(errors).sort((a, b) => b[1] - a[1])[0];
  console.log(
    `net_muon: ${Object.keys(errors).length} tensors, max relative error ${worst[1].toExponential(2)} (${
      worst[0]
    })`,
  );
});

Deno.test("Muon through the seam: a Linear weight ([out][in] storage) matches the float64 reference", async () => {
  // A head on a 1x1 map: the only trained parameter is the Linear weight, which Muon takes as torch's [10,
  // C].
  const gpu = await testGpu();
  const C = 24, seed = freshSeed("muon linear");
  const graph = new Graph(Named({ pool: GlobalMaxPool(), flat: Flatten(), head: Linear(C, 10) }), {
    H: 2,
    W: 2,
    C,
  });
  const layout = new ParamLayout(graph);
  const state = new NetState(gpu, layout);
  const e = layout.get("head.weight");
  const rng = testRng(seed);
  const p0 = Float32Array.from(randn(10 * C, rng, 0.2));
  const grads = [1, 2].map(() => Float32Array.from(randn(10 * C, rng, 0.01)));
  state.load({ "head.weight": p0 });
  const opt = Muon([{ params: named("head.weight"), lr: "lr" }], { momentum: 0.6, nesterov: true });
  const slots = new StepSlots(opt.values, opt.gates);
  const table = new StepTable(gpu, 2);
  const lrs = [0.24, 0.18];
  table.write(
    slots.pack(lrs.map((lr) => ({ values: { lr } })), { stepsPerEpoch: 2, batchStart: () => 0 }),
  );
  const ops = opt.ops({ gpu, state, stepBuf: table.current, slots }, [[e]]);
  await gpu.checkCompile();
  const p = Float64Array.from(p0), buf = new Float64Array(p.length);
  for (let s = 0; s < 2; s++) {
    gpu.write(state.grads, grads[s], e.offset * 4);
    submitSteps(gpu, table, s, s + 1, ops);
    muonStepRef(p, grads[s], buf, 10, { lr: lrs[s], momentum: 0.6, nesterov: true });
    const got = (await state.read())["head.weight"].data;
    assertClose(got, p, 1e-5, `muon linear step ${s + 1} [seed ${seed}]`);
  }
});

Deno.test("experiments/airbench94_muon.ts trains a tiny net end to end and saves CifarNet-named weights", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench94-muon-e2e-" });
  try {
    const { log, weights } = await trainTinyEndToEnd("experiments/airbench94_muon.ts", dir);
    assert.equal(log.status, "done");
    assert.equal(log.experiment, "experiments/airbench94_muon.ts");
    assert.equal(log.config.opt.muon_lr, 0.24);
    assert.equal(log.config.stepsPerRun, 30); // ceil(20 steps per epoch x 1.5)
    assert.equal(log.runs[0].epochs.length, 2);
    assert.ok(log.runs[0].tta_val_acc > 0.3, `learns above chance: ${log.runs[0].tta_val_acc}`);
    const w = loadSafetensors(weights).tensors;
    const names = Object.keys(w).filter((k) => k !== "__metadata__").sort();
    const block = (i: number) =>
      ["conv1.weight", "conv2.weight"].concat(
        ...["norm1", "norm2"].map((n) =>
          ["weight", "bias", "running_mean", "running_var"].map((k) => `${n}.${k}`)
        ),
      ).map((k) => `layers.${i}.${k}`);
    assert.deepEqual(
      names,
      ["whiten.weight", "whiten.bias", ...block(1), ...block(2), ...block(3), "head.weight"].sort(),
    );
    assert.deepEqual([...getF32(w, "layers.2.norm2.weight")], new Array(8).fill(1), "frozen BN weight is 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
