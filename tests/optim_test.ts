// The optimizer seam (lib/train/optim.ts): every trained parameter claimed by exactly one optimizer group,
// one SGD dispatch per run of neighbouring parameters with the same settings, and per-group lr slots,
// momentum, weight decay and Nesterov against the float64 reference on a real layout.

import assert from "node:assert/strict";
import { INPUT_SHAPE, NetState, ParamLayout } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import {
  claimParams,
  inGroup,
  Lookahead,
  named,
  ofRank,
  type Optimizer,
  optimizerOps,
  SGD,
  stepSlotsOf,
} from "../lib/train/optim.ts";
import { sgdStepRef } from "../lib/reference/ops.ts";
import { packSteps, StepTable } from "../lib/gpu/steps.ts";
import { hyp, makeNet, optimizers as mainOptimizers } from "../main.ts";
import { hyp as bnHyp, makeNet as makeBnNet, optimizers as bnOptimizers } from "../experiments/airbench94.ts";
import { assertClose, freshSeed, randn, testGpu, testRng } from "./util.ts";

const smallMain = () =>
  new ParamLayout(
    new Graph(makeNet({ ...hyp.defaults, net: { ...hyp.defaults.net, widths: [4, 8, 8] } }), INPUT_SHAPE),
  );

Deno.test("optim: each trained parameter is claimed by exactly one group (one error naming it otherwise)", () => {
  const layout = smallMain();
  const sgd = (groups: Parameters<typeof SGD>[0]) => [SGD(groups, { momentum: 0.9, nesterov: true })];
  assert.throws(
    () =>
      claimParams(
        layout,
        sgd([{ params: ofRank(4), lr: "a" }, { params: named("2.conv1.weight"), lr: "b" }, {
          params: "rest",
          lr: "c",
        }]),
      ),
    /parameter 2\.conv1\.weight is claimed by sgd group 0 and by sgd group 1/,
  );
  assert.throws(
    () => claimParams(layout, sgd([{ params: ofRank(4), lr: "a", label: "filters" }])),
    /parameter 0\.bias is claimed by no optimizer group/,
  );
  assert.throws(
    () => claimParams(layout, sgd([{ params: inGroup("norm_bias"), lr: "a" }, { params: "rest", lr: "b" }])),
    /sgd group 0 claims no trained parameter/,
  );
  assert.throws(
    () => claimParams(layout, [...sgd([{ params: "rest", lr: "a" }]), ...sgd([{ params: "rest", lr: "a" }])]),
    /two parameter groups take "rest"/,
  );
  const claimed = claimParams(layout, sgd([{ params: "rest", lr: "b" }, { params: ofRank(4), lr: "a" }]));
  assert.deepEqual(claimed[0][1].map((e) => e.name), [
    "2.conv1.weight",
    "2.conv2.weight",
    "3.conv1.weight",
    "3.conv2.weight",
    "4.conv1.weight",
    "4.conv2.weight",
  ]);
  assert.equal(claimed[0][0].length + claimed[0][1].length, layout.trained.length);
});

Deno.test("optim: main.ts is one SGD dispatch and one lookahead; the BatchNorm net two of each", async () => {
  const gpu = await testGpu();
  const count = (opts: Optimizer[], layout: ParamLayout) => {
    const state = new NetState(gpu, layout);
    const ctx = { gpu, state, stepBuf: new StepTable(gpu, 1).current, slots: stepSlotsOf(opts) };
    return optimizerOps(ctx, opts).map(({ opt, ops }) => `${opt.name}:${ops.length}`);
  };
  assert.deepEqual(count(mainOptimizers(hyp.defaults), smallMain()), ["sgd:1", "lookahead:1"]);
  const bn = new ParamLayout(
    new Graph(
      makeBnNet({ ...bnHyp.defaults, net: { ...bnHyp.defaults.net, widths: [4, 8, 8] } }),
      INPUT_SHAPE,
    ),
  );
  assert.deepEqual(count(bnOptimizers(bnHyp.defaults), bn), ["sgd:2", "lookahead:2"]);
});

Deno.test("optim: per-group lr slots, momentum, weight decay, Nesterov and gate vs the float64 reference", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("optim groups"));
  const layout = smallMain();
  const state = new NetState(gpu, layout);
  const table = new StepTable(gpu, 1);
  const groups = [
    { params: ofRank(4), lr: "lr_filters" },
    { params: inGroup("whiten_bias"), lr: "lr_whiten", gate: "whiten_bias", momentum: 0.5, nesterov: false },
    { params: "rest" as const, lr: "lr_rest", weight_decay: 0.03 },
  ];
  const opts = [SGD(groups, { momentum: 0.85, nesterov: true, weight_decay: 0.01 })];
  const slots = stepSlotsOf(opts);
  const ops = optimizerOps({ gpu, state, stepBuf: table.current, slots }, opts).flatMap((o) => o.ops);
  await gpu.checkCompile();
  const claimed = claimParams(layout, opts)[0];
  const p = Float64Array.from(randn(layout.sizes.params, rand).map(Math.fround));
  const m = new Float64Array(p.length);
  gpu.write(state.params, Float32Array.from(p));
  gpu.write(state.mom, new Float32Array(p.length));
  const settings = [
    { momentum: Math.fround(0.85), nesterov: true, weightDecay: Math.fround(0.01) },
    { momentum: Math.fround(0.5), nesterov: false, weightDecay: Math.fround(0.01) },
    { momentum: Math.fround(0.85), nesterov: true, weightDecay: Math.fround(0.03) },
  ];
  for (let step = 0; step < 3; step++) {
    const lrs = groups.map(() => Math.fround(0.01 + rand() * 0.1));
    const whitenTrains = step === 0;
    const g = Float64Array.from(randn(p.length, rand).map(Math.fround));
    gpu.write(state.grads, Float32Array.from(g));
    const values = Object.fromEntries(groups.map((gr, i) => [gr.lr, lrs[i]]));
    const packed = slots.pack([{ values, on: { whiten_bias: whitenTrains } }], {
      stepsPerEpoch: 1,
      batchStart: () => 0,
    });
    gpu.write(table.current, new Uint8Array(packSteps(packed)));
    gpu.run(ops);
    claimed.forEach((entries, i) => {
      if (i === 1 && !whitenTrains) return;
      for (const e of entries) {
        const [a, b] = [e.offset, e.offset + e.count];
        const pe = p.subarray(a, b), me = m.subarray(a, b);
        sgdStepRef(pe, g.subarray(a, b), me, { lr: lrs[i], ...settings[i] });
      }
    });
    const got = await gpu.readF32(state.params);
    for (const entries of claimed) {
      for (const e of entries) {
        const [a, b] = [e.offset, e.offset + e.count];
        assertClose(got.subarray(a, b), p.subarray(a, b), 1e-6, `step ${step} ${e.name}`);
      }
    }
  }
});

Deno.test("optim: Lookahead declares its decay and event; SGD its lr slots and gates", () => {
  const opts = [
    SGD([{ params: inGroup("whiten_bias"), lr: "lr", gate: "wb" }, { params: "rest", lr: "lr2" }], {
      momentum: 0.9,
      nesterov: true,
    }),
    Lookahead({ decay: "ema_decay", on: "ema" }),
  ];
  const slots = stepSlotsOf(opts);
  assert.deepEqual([slots.value("lr"), slots.value("lr2"), slots.value("ema_decay")], [0, 1, 2]);
  assert.deepEqual([slots.gate("wb"), slots.gate("ema")], [1, 2]);
});
