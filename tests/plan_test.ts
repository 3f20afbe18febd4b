// The per-step plan of main.ts against the recipe's formulas: lr = lr_sgd * triangle[step], the whitening
// bias trains for whiten_bias_epochs epochs, lookahead every 5 steps with decay alpha[current_steps], and at the
// last step net = ema (decay 1.0, or the regular update when the last step is a multiple of 5).

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { hyp as defaults } from "../main.ts";
import { planSteps } from "../lib/train.ts";
import { STEP_EMA, STEP_WHITEN_BIAS } from "../lib/steps.ts";

const FIXTURE = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures", "schedule.json");
const loaderLike = (spe: number, n: number, batch: number) => ({
  stepsPerEpoch: spe,
  batchStart: (epoch: number, b: number) => epoch * n + b * batch,
});

Deno.test("plan: the default 11-epoch run (1430 steps) follows the recipe step by step", () => {
  const fx = JSON.parse(Deno.readTextFileSync(FIXTURE));
  const ref = fx.cases.find((c: { total_train_steps: number }) => c.total_train_steps === 1430);
  const dec = fx.decoupled.find((d: { batch_size: number; lr: number }) =>
    d.batch_size === 384 && d.lr === 10
  );
  const h = structuredClone(defaults);
  const steps = planSteps(h.opt, loaderLike(130, 50000, 384), 1430);
  assert.equal(steps.length, 1430);
  steps.forEach((s, i) => {
    assert.equal(s.step, i);
    assert.equal(s.epoch, Math.floor(i / 130));
    assert.equal(s.batchStart, s.epoch * 50000 + (i % 130) * 384);
    // lr_sgd * LambdaLR(triangle)[i] (float64 product of the recipe's float32 schedule)
    assert.equal(s.lr, dec.lr_sgd * ref.lr_schedule[i]);
    assert.equal(s.weightDecay, dec.sgd_weight_decay);
    assert.equal(s.momentum, 0.85);
    assert.equal((s.flags & STEP_WHITEN_BIAS) !== 0, i < 3 * 130, `whitening bias gate at step ${i}`);
    const done = i + 1;
    assert.equal((s.flags & STEP_EMA) !== 0, done % 5 === 0, `lookahead at step ${i}`);
    if (done % 5 === 0) assert.equal(s.emaDecay, ref.alpha_schedule[done]);
  });
  // 1430 is a multiple of 5: the last step's regular update (then net = ema is a no-op).
  assert.equal(steps[1429].emaDecay, ref.alpha_schedule[1430]);
});

Deno.test("plan: fractional epochs and a last step that is not a multiple of 5 (net = ema)", () => {
  const h = structuredClone(defaults);
  h.opt.train_epochs = 3.7;
  h.opt.whiten_bias_epochs = 1;
  const steps = planSteps(h.opt, loaderLike(10, 100, 10), 37);
  assert.equal(steps.length, 37);
  assert.equal(steps[36].epoch, 3);
  assert.equal(steps[36].batchStart, 3 * 100 + 6 * 10);
  assert.equal(steps[36].flags & STEP_EMA, STEP_EMA);
  assert.equal(steps[36].emaDecay, 1.0);
  assert.equal(steps[34].emaDecay, Math.fround(0.95 ** 5 * Math.fround(Math.fround(35 / 37) ** 3)));
  assert.deepEqual(
    steps.map((s) => (s.flags & STEP_WHITEN_BIAS) !== 0).lastIndexOf(true),
    9,
    "the whitening bias trains only in epoch 0",
  );
});
