// airbench94 with BatchNorm (KellerJordan/cifar10-airbench legacy/airbench94.py, 94.01% in 3.83 s on an
// A100), trained end to end on WebGPU with the same layer API, data, log and weights as main.ts. This file is
// the experiment: the hyperparameters, the network, the optimizers and their plan, and the training loop.
// `deno run -A experiments/airbench94.ts --help` lists the flags.

import { BatchNorm2d } from "../lib/nn/batchnorm.ts";
import { type Experiment, main, type Run } from "../lib/cli/experiment.ts";
import { hyperparameters, param } from "../lib/io/hyp.ts";
import { Conv2d, Flatten, GELU, GlobalMaxPool, Linear, MaxPool2d, Mul } from "../lib/nn/layers.ts";
import { Named, Sequential } from "../lib/nn/module.ts";
import { inGroup, Lookahead, type Optimizer, SGD } from "../lib/train/optim.ts";
import { Rng } from "../lib/data/rng.ts";
import { decoupledHyperparameters, lookaheadDecays, triangleSchedule } from "../lib/train/schedule.ts";
import type { PlanStep } from "../lib/gpu/steps.ts";
import { WHITEN_WIDTH, whiteningWeights } from "../lib/data/whiten.ts";

// ---------------------------------------------------------------------------------------------------------
// Hyperparameters (the reference's defaults): each key is a flag (--key-name, or its `flag`), with its help
// and bounds next to the value

export const hyp = hyperparameters({
  opt: {
    train_epochs: param(9.9, "training epochs (may be fractional)", { flag: "epochs", above: 0 }),
    batch_size: param(1024, "training batch size", { int: true, min: 1 }),
    lr: param(11.5, "learning rate per 1024 examples (decoupled)", { above: 0 }),
    momentum: param(0.85, "Nesterov momentum", { min: 0, below: 1 }),
    weight_decay: param(0.0153, "weight decay per 1024 examples (decoupled from the lr)", { min: 0 }),
    bias_scaler: param(64.0, "scales up the lr (not the weight decay) of the BatchNorm biases", { above: 0 }),
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
    batchnorm_momentum: param(0.6, "airbench's BatchNorm momentum (PyTorch's is 1 - this)", {
      min: 0,
      below: 1,
    }),
    scaling_factor: param(1 / 9, "output scaling factor of the logits", { flag: "scale", f32: true }),
    tta_level: param(2, "test-time augmentation: 0 none, 1 mirror, 2 mirror + translate", {
      flag: "tta",
      choices: [0, 1, 2],
    }),
  },
});
export type BnHyp = typeof hyp.defaults;
const WHITEN_IMAGES = 5000; // training images the whitening covariance is estimated from
const WHITEN_EPS = 5e-4;
const BN_EPS = 1e-12;

// ---------------------------------------------------------------------------------------------------------
// Network (state-dict names as PyTorch's nn.Sequential: 0.weight, 2.conv1.weight, 2.norm1.bias, ...,
// 7.weight)

const conv = (cin: number, cout: number) => Conv2d(cin, cout, 3, { padding: "same", bias: false });

function ConvGroup(cin: number, cout: number, h: BnHyp) {
  // airbench's BatchNorm(momentum=m) is nn.BatchNorm2d(momentum=1-m), weight frozen at 1, bias trained.
  const norm = () =>
    BatchNorm2d(cout, { momentum: 1 - h.net.batchnorm_momentum, eps: BN_EPS, biasGroup: "norm_bias" });
  return Named({
    conv1: conv(cin, cout),
    pool: MaxPool2d(2),
    norm1: norm(),
    activ: GELU(),
    conv2: conv(cout, cout),
    norm2: norm(),
    activ2: GELU(), // the same nn.GELU() attribute applied twice (no state)
  });
}

export function makeNet(h: BnHyp = hyp.defaults) {
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
    ...widths.map((w, i) => ConvGroup(i === 0 ? WHITEN_WIDTH : widths[i - 1], w, h)),
    GlobalMaxPool(), // nn.MaxPool2d(3) for three blocks
    Flatten(),
    Linear(widths[widths.length - 1], 10, { bias: false }),
    Mul(h.net.scaling_factor),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Optimizers (airbench's param_configs) and the per-step plan that drives them on the GPU

/** The decoupled lr and weight decay as PyTorch's SGD takes them (lr / kilostep scale, ...). */
const torchSgd = (h: BnHyp) =>
  decoupledHyperparameters({
    lr: h.opt.lr,
    momentum: h.opt.momentum,
    weightDecay: h.opt.weight_decay,
    batchSize: h.opt.batch_size,
  });

export function optimizers(h: BnHyp): Optimizer[] {
  const { lrSgd, wdSgd } = torchSgd(h);
  const lrBiases = lrSgd * h.opt.bias_scaler;
  return [
    // airbench: [dict(params=norm_biases, lr=lr_biases, weight_decay=wd/lr_biases),
    //            dict(params=other_params, lr=lr, weight_decay=wd/lr)], momentum, nesterov=True
    SGD([
      { params: inGroup("whiten_bias"), lr: "lr", gate: "whiten_bias" }, // trains for its first epochs
      { params: inGroup("norm_bias"), lr: "lr_biases", weight_decay: wdSgd / lrBiases },
      { params: "rest", lr: "lr" },
    ], { momentum: h.opt.momentum, nesterov: true, weight_decay: wdSgd / lrSgd }),
    Lookahead(), // the EMA of the weights and the running statistics, every 5 steps
  ];
}

/** Per step: each group's lr (triangle schedule), the whitening-bias gate, the lookahead events. */
export function plan(h: BnHyp, stepsPerEpoch: number, total: number): PlanStep[] {
  const { lrSgd } = torchSgd(h);
  const lrBiases = lrSgd * h.opt.bias_scaler;
  const sched = triangleSchedule(total, 0.2, 0.07, 0.23);
  const lookahead = lookaheadDecays(total, 5);
  return Array.from({ length: total }, (_, s) => ({
    values: { lr: lrSgd * sched[s], lr_biases: lrBiases * sched[s], lookahead: lookahead[s] ?? 0 },
    on: {
      whiten_bias: Math.floor(s / stepsPerEpoch) < h.opt.whiten_bias_epochs,
      lookahead: lookahead[s] !== undefined,
    },
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Training: one run

async function trainRun(r: Run<BnHyp>): Promise<void> {
  const h = r.hyp, rng = new Rng(r.seed), bs = h.opt.batch_size;
  // PyTorch's init, then the whitening filters from the first 5000 training images (float64 + Jacobi, timed).
  const params = r.initialParams(rng.fork("init"));
  const images = r.s.trainImages, n = Math.min(WHITEN_IMAGES, r.s.trainN);
  params["0.weight"] = r.host(() => Float32Array.from(whiteningWeights(images, n, WHITEN_EPS).weight));
  const loader = r.trainLoader(rng.fork("data").u32());
  const total = r.s.stepsPerRun; // ceil(steps per epoch x 9.9)
  await r.start(loader, plan(h, loader.stepsPerEpoch, total), params);

  for (let epoch = 0; epoch < Math.ceil(h.opt.train_epochs); epoch++) {
    // ---- training: lr schedule, whitening-bias gate and lookahead (params and running stats) on the GPU
    const last = await r.trainUntil(Math.min(total, (epoch + 1) * loader.stepsPerEpoch), epoch);
    // ---- evaluation (not timed): the last batch's loss/accuracy and the test accuracy without TTA
    const val_acc = await r.evaluate(0);
    r.epochRow({ epoch, train_loss: last.loss / bs, train_acc: last.correct / bs, val_acc });
  }
  // ---- final evaluation with test-time augmentation (timed, as the reference)
  r.finish(await r.evaluate(h.net.tta_level, true));
}

export const experiment: Experiment<BnHyp> = {
  url: import.meta.url,
  title: "airbench94 (BatchNorm) on WebGPU: train CIFAR-10 and report test accuracy.",
  hyp,
  defaults: { runs: 25, seed: 0, precision: "auto", logDir: "logs", quiet: false, verify: true },
  makeNet,
  optimizers,
  loss: (h) => ({ labelSmoothing: h.opt.label_smoothing }),
  trainRun,
};

if (import.meta.main) await main(experiment);
