// The per-step plan of main.ts against the recipe's formulas: lr = lr_sgd * triangle[step], the whitening
// bias trains for whiten_bias_epochs epochs, lookahead every 5 steps with decay alpha[current_steps], and at
// the last step net = ema (decay 1.0, or the regular update when the last step is a multiple of 5). And how a
// plan becomes the GPU step table (lib/gpu/steps.ts StepSlots).

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { hyp as defaults, optimizers, plan } from "../main.ts";
import { stepSlotsOf } from "../lib/train/optim.ts";
import { StepSlots } from "../lib/gpu/steps.ts";

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
  const h = defaults.defaults;
  const steps = plan(h, 130, 1430);
  assert.equal(steps.length, 1430);
  steps.forEach((s, i) => {
    // lr_sgd * LambdaLR(triangle)[i] (float64 product of the recipe's float32 schedule)
    assert.equal(s.values.lr, dec.lr_sgd * ref.lr_schedule[i]);
    assert.equal(s.on?.whiten_bias, i < 3 * 130, `whitening bias gate at step ${i}`);
    const done = i + 1;
    assert.equal(s.on?.lookahead, done % 5 === 0, `lookahead at step ${i}`);
    if (done % 5 === 0) assert.equal(s.values.lookahead, ref.alpha_schedule[done]);
  });
  // 1430 is a multiple of 5: the last step's regular update (then net = ema is a no-op).
  assert.equal(steps[1429].values.lookahead, ref.alpha_schedule[1430]);
});

Deno.test("plan: fractional epochs and a last step that is not a multiple of 5 (net = ema)", () => {
  const h = defaults.defaults;
  h.opt.train_epochs = 3.7;
  h.opt.whiten_bias_epochs = 1;
  const steps = plan(h, 10, 37);
  assert.equal(steps.length, 37);
  assert.equal(steps[36].on?.lookahead, true);
  assert.equal(steps[36].values.lookahead, 1.0);
  assert.equal(steps[34].values.lookahead, Math.fround(0.95 ** 5 * Math.fround(Math.fround(35 / 37) ** 3)));
  assert.equal(
    steps.map((s) => s.on?.whiten_bias).lastIndexOf(true),
    9,
    "the whitening bias trains in epoch 0",
  );
});

Deno.test("plan -> step table: slots and flag bits by name, epoch and batch from the loader", () => {
  const h = defaults.defaults;
  const slots = stepSlotsOf(optimizers(h));
  const table = slots.pack(plan(h, 10, 37), loaderLike(10, 100, 10));
  const [lr, decay] = [slots.value("lr"), slots.value("lookahead")];
  const [wb, la] = [slots.gate("whiten_bias"), slots.gate("lookahead")];
  assert.notEqual(wb, la);
  assert.equal(table[36].step, 36);
  assert.equal(table[36].epoch, 3);
  assert.equal(table[36].batchStart, 3 * 100 + 6 * 10);
  assert.equal(table[36].flags, la, "last step: lookahead on, whitening bias off");
  assert.equal(table[3].flags, wb);
  assert.equal(table[4].flags, wb | la);
  assert.equal(table[36].values![decay], 1);
  assert.equal(table[0].values![lr], plan(h, 10, 37)[0].values.lr);
});

Deno.test("plan -> step table: unknown names, a value no step sets, too many slots are errors", () => {
  const slots = new StepSlots(["lr", "lr_bias"], ["whiten_bias"]);
  const loader = loaderLike(2, 4, 2);
  assert.throws(() => slots.pack([{ values: { lr: 1, lr_bais: 2 } }], loader), /no per-step value "lr_bais"/);
  assert.throws(
    () => slots.pack([{ values: { lr: 1, lr_bias: 1 }, on: { whiten: false } }], loader),
    /no gate "whiten" \(declared: whiten_bias\)/,
  );
  assert.throws(() => slots.pack([{ values: { lr: 1 } }], loader), /the plan sets no per-step value lr_bias/);
  const names = Array.from({ length: 17 }, (_, i) => `v${i}`);
  assert.throws(() => new StepSlots(names, []), /17 per-step values .* a Step holds 16/);
  assert.equal(new StepSlots([], Array.from({ length: 32 }, (_, i) => `g${i}`)).gate("g31"), 2 ** 31);
});
