// airbench94, BatchNorm-free variant, trained end to end on WebGPU: CIFAR-10 to ~90.6% test accuracy.
// This file is the experiment: the hyperparameters, the network, the optimizers and their per-step plan, and
// the training loop. Copy it, change it, run it: `deno run -A main.ts --help` lists the flags; each
// invocation writes one JSON log under logs/ that holds this file's text, the command line and the
// fingerprint of every library and kernel file.

import { type Experiment, main, type Run } from "./lib/cli/experiment.ts";
import { hyperparameters, param } from "./lib/io/hyp.ts";
import { Conv2d, Flatten, GELU, GlobalMaxPool, Linear, MaxPool2d, Mul } from "./lib/nn/layers.ts";
import { Named, Sequential } from "./lib/nn/module.ts";
import { inGroup, Lookahead, type Optimizer, SGD } from "./lib/train/optim.ts";
import { Rng } from "./lib/data/rng.ts";
import { decoupledHyperparameters, lookaheadDecays, triangleSchedule } from "./lib/train/schedule.ts";
import type { PlanStep } from "./lib/gpu/steps.ts";
import { WHITEN_WIDTH, whiteningWeights } from "./lib/data/whiten.ts";

// ---------------------------------------------------------------------------------------------------------
// Hyperparameters (the reference's defaults): each key is a flag (--key-name, or its `flag`), with its help
// and bounds next to the value

export const hyp = hyperparameters({
  opt: {
    train_epochs: param(11, "training epochs (may be fractional)", { flag: "epochs", above: 0 }),
    batch_size: param(384, "training batch size", { int: true, min: 1 }),
    lr: param(10.0, "learning rate per 1024 examples (decoupled)", { above: 0 }),
    momentum: param(0.85, "Nesterov momentum", { min: 0, below: 1 }),
    weight_decay: param(0.001, "weight decay per 1024 examples (decoupled from the lr)", { min: 0 }),
    label_smoothing: param(0.2, "label smoothing of the cross-entropy", { min: 0, max: 1 }),
    whiten_bias_epochs: param(3, "epochs during which the whitening bias trains", { int: true, min: 0 }),
  },
  aug: {
    flip: param(true, "random flip once, then alternate every epoch"),
    translate: param(2, "random translation range in pixels (reflect padding)", {
      int: true,
      min: 0,
      max: 8,
    }),
  },
  net: {
    widths: param([64, 256, 256], "channel widths of the conv blocks, one per block (kernels load vec4s)", {
      int: true,
      min: 4,
      multipleOf: 4,
    }),
    scaling_factor: param(1 / 9, "output scaling factor of the logits", { flag: "scale", f32: true }),
    tta_level: param(2, "test-time augmentation: 0 none, 1 mirror, 2 mirror + translate", {
      flag: "tta",
      choices: [0, 1, 2],
    }),
  },
});
export type Hyp = typeof hyp.defaults;
const WHITEN_IMAGES = 5000; // training images the whitening covariance is estimated from
const WHITEN_EPS = 5e-4;

// ---------------------------------------------------------------------------------------------------------
// Network (state-dict names as PyTorch's nn.Sequential: 0.weight, 2.conv1.weight, ..., 7.weight)

const conv = (cin: number, cout: number) => Conv2d(cin, cout, 3, { padding: "same", bias: true });

function ConvGroup(cin: number, cout: number) {
  return Named({
    conv1: conv(cin, cout),
    pool: MaxPool2d(2),
    activ: GELU(),
    conv2: conv(cout, cout),
    activ2: GELU(),
  });
}

export function makeNet(h: Hyp = hyp.defaults) {
  const widths = h.net.widths;
  return Sequential(
    // 2x2 whitening filters from data (frozen); their bias trains for the first whiten_bias_epochs epochs.
    Conv2d(3, WHITEN_WIDTH, 2, {
      padding: 0,
      bias: true,
      frozenWeight: true,
      weightInit: "external",
      biasGroup: "whiten_bias",
    }),
    GELU(),
    ...widths.map((w, i) => ConvGroup(i === 0 ? WHITEN_WIDTH : widths[i - 1], w)),
    GlobalMaxPool(), // nn.MaxPool2d(3) for three blocks
    Flatten(),
    Linear(widths[widths.length - 1], 10, { bias: false }),
    Mul(h.net.scaling_factor),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Optimizers (airbench's param_configs) and the per-step plan that drives them on the GPU

/** The decoupled lr and weight decay as PyTorch's SGD takes them (lr / kilostep scale, ...). */
const torchSgd = (h: Hyp) =>
  decoupledHyperparameters({
    lr: h.opt.lr,
    momentum: h.opt.momentum,
    weightDecay: h.opt.weight_decay,
    batchSize: h.opt.batch_size,
  });

export function optimizers(h: Hyp): Optimizer[] {
  const sgd = { momentum: h.opt.momentum, nesterov: true, weight_decay: torchSgd(h).sgdWeightDecay };
  return [
    SGD([
      // the whitening bias trains only in the steps the plan turns its gate on (its first epochs)
      { params: inGroup("whiten_bias"), lr: "lr", gate: "whiten_bias" },
      { params: "rest", lr: "lr" },
    ], sgd),
    Lookahead(), // the EMA of the weights, every 5 steps (decay "lookahead", event "lookahead")
  ];
}

/** Per step: the lr (triangle schedule), the whitening-bias gate, the lookahead events and their decay. */
export function plan(h: Hyp, stepsPerEpoch: number, total: number): PlanStep[] {
  const { lrSgd } = torchSgd(h);
  const lr = triangleSchedule(total, 0.2, 0.07, 0.23);
  const lookahead = lookaheadDecays(total, 5);
  return Array.from({ length: total }, (_, s) => ({
    values: { lr: lrSgd * lr[s], lookahead: lookahead[s] ?? 0 },
    on: {
      whiten_bias: Math.floor(s / stepsPerEpoch) < h.opt.whiten_bias_epochs,
      lookahead: lookahead[s] !== undefined,
    },
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Training: one run

async function trainRun(r: Run<Hyp>): Promise<void> {
  const h = r.hyp, rng = new Rng(r.seed), bs = h.opt.batch_size;
  // PyTorch's init, then the whitening filters from the first 5000 training images (float64 + Jacobi, timed).
  const params = r.initialParams(rng.fork("init"));
  const images = r.s.trainImages, n = Math.min(WHITEN_IMAGES, r.s.trainN);
  params["0.weight"] = r.host(() => Float32Array.from(whiteningWeights(images, n, WHITEN_EPS).weight));
  const loader = r.trainLoader(rng.fork("data").u32());
  const total = r.s.stepsPerRun;
  await r.start(loader, plan(h, loader.stepsPerEpoch, total), params);

  for (let epoch = 0; epoch < Math.ceil(h.opt.train_epochs); epoch++) {
    // ---- training: the lr schedule, whitening-bias gate and lookahead are in the plan, on the GPU
    const last = await r.trainUntil(Math.min(total, (epoch + 1) * loader.stepsPerEpoch), epoch);
    // ---- evaluation (not timed): the last batch's loss/accuracy and the test accuracy without TTA
    const val_acc = await r.evaluate(0);
    r.epochRow({ epoch, train_loss: last.loss / bs, train_acc: last.correct / bs, val_acc });
  }
  // ---- final evaluation with test-time augmentation (timed, as the reference)
  r.finish(await r.evaluate(h.net.tta_level, true));
}

export const experiment: Experiment<Hyp> = {
  url: import.meta.url,
  title: "airbench94 (BatchNorm-free) on WebGPU: train CIFAR-10 and report test accuracy.",
  hyp,
  defaults: { runs: 25, seed: 0, precision: "auto", logDir: "logs", quiet: false, verify: true },
  makeNet,
  optimizers,
  loss: (h) => ({ labelSmoothing: h.opt.label_smoothing }),
  trainRun,
};

if (import.meta.main) await main(experiment);
