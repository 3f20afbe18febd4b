// airbench94_muon (KellerJordan/cifar10-airbench airbench94_muon.py: 94.01% in 2.59 s on an A100), trained
// end to end on WebGPU with the same layer API, data, log and weights as main.ts: the BatchNorm net with the
// recipe's module names, Muon for the block filters and Nesterov SGD for the rest. This file is the
// experiment: the hyperparameters, the network, the optimizers and their plan, and the training loop.
// `deno run -A experiments/airbench94_muon.ts --help` lists the flags.
//
// Deviation from the recipe: Newton-Schulz runs in f32 (WGSL has no bfloat16), as the whole run does on CPU
// adapters (f16 activations on GPUs with shader-f16, as the other experiments).

import { BatchNorm2d } from "../lib/nn/batchnorm.ts";
import { type Experiment, main, type Run } from "../lib/cli/experiment.ts";
import { hyperparameters, param } from "../lib/io/hyp.ts";
import { Conv2d, Flatten, GELU, GlobalMaxPool, Linear, MaxPool2d, Mul } from "../lib/nn/layers.ts";
import { Muon } from "../lib/train/muon.ts";
import { Named, Sequential } from "../lib/nn/module.ts";
import { inGroup, named, ofRank, type Optimizer, SGD } from "../lib/train/optim.ts";
import { Rng } from "../lib/data/rng.ts";
import type { PlanStep } from "../lib/gpu/steps.ts";
import { WHITEN_WIDTH, whiteningWeights } from "../lib/data/whiten.ts";

// ---------------------------------------------------------------------------------------------------------
// Hyperparameters (the reference's defaults): each key is a flag (--key-name, or its `flag`), with its help
// and bounds next to the value

export const hyp = hyperparameters({
  opt: {
    train_epochs: param(8, "training epochs (may be fractional)", { flag: "epochs", above: 0 }),
    batch_size: param(2000, "training batch size", { int: true, min: 1 }),
    muon_lr: param(0.24, "Muon's learning rate (the block filters)", { above: 0 }),
    muon_momentum: param(0.6, "Muon's Nesterov momentum", { above: 0, below: 1 }),
    bias_lr: param(0.053, "SGD learning rate of the whitening and BatchNorm biases", { above: 0 }),
    head_lr: param(0.67, "SGD learning rate of the head", { above: 0 }),
    momentum: param(0.85, "SGD's Nesterov momentum", { min: 0, below: 1 }),
    weight_decay: param(2e-6, "SGD weight decay per example (torch's: this x batch size / the group's lr)", {
      min: 0,
    }),
    label_smoothing: param(0.2, "label smoothing of the cross-entropy", { min: 0, max: 1 }),
    whiten_bias_epochs: param(3, "epochs during which the whitening bias trains (its lr decays over them)", {
      above: 0,
    }),
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
    tta_level: param(2, "test-time augmentation: 0 none, 1 mirror, 2 mirror + translate", {
      flag: "tta",
      choices: [0, 1, 2],
    }),
  },
});
export type MuonHyp = typeof hyp.defaults;
const WHITEN_IMAGES = 5000; // training images the whitening covariance is estimated from
const WHITEN_EPS = 5e-4;
const BN_EPS = 1e-12;

// ---------------------------------------------------------------------------------------------------------
// Network (airbench94_muon.py's CifarNet: state-dict names whiten.weight, layers.1.conv1.weight,
// layers.1.norm1.bias, ..., head.weight)

// nn.Conv2d's default init, then dirac_ on the first in_channels filters (the recipe's
// Conv.reset_parameters).
const conv = (cin: number, cout: number) => Conv2d(cin, cout, 3, { padding: "same", bias: false });

function ConvGroup(cin: number, cout: number, h: MuonHyp) {
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

export function makeNet(h: MuonHyp = hyp.defaults) {
  const widths = h.net.widths, last = widths[widths.length - 1];
  return Named({
    // 2x2 whitening filters from data (frozen); their bias trains for the first whiten_bias_epochs epochs.
    whiten: Conv2d(3, WHITEN_WIDTH, 2, {
      padding: 0,
      bias: true,
      frozenWeight: true,
      weightInit: "external",
      biasGroup: "whiten_bias",
    }),
    layers: Sequential(
      GELU(),
      ...widths.map((w, i) => ConvGroup(i === 0 ? WHITEN_WIDTH : widths[i - 1], w, h)),
      GlobalMaxPool(), // nn.MaxPool2d(3) for three blocks
    ),
    flatten: Flatten(),
    head: Linear(last, 10, { bias: false }),
    scale: Mul(1 / last), // self.head(x) / x.size(-1)
  });
}

// ---------------------------------------------------------------------------------------------------------
// Optimizers (the recipe's param_configs and Muon) and the per-step plan that drives them on the GPU

/** torch's coupled weight_decay of an SGD group: wd = weight_decay x batch_size, divided by the group's lr. */
const sgdDecay = (h: MuonHyp, lr: number) => h.opt.weight_decay * h.opt.batch_size / lr;

export function optimizers(h: MuonHyp): Optimizer[] {
  const { bias_lr, head_lr } = h.opt;
  return [
    // optimizer1 = SGD([whiten.bias], [norm biases], [head.weight]; momentum=0.85, nesterov=True)
    SGD([
      // trains (and its lr decays to 0) over the first whiten_bias_epochs; then its grad is detached
      { params: inGroup("whiten_bias"), lr: "lr_whiten_bias", gate: "whiten_bias" },
      { params: inGroup("norm_bias"), lr: "lr_bias", weight_decay: sgdDecay(h, bias_lr) },
      { params: named("head.weight"), lr: "lr_head", weight_decay: sgdDecay(h, head_lr) },
    ], { momentum: h.opt.momentum, nesterov: true, weight_decay: sgdDecay(h, bias_lr) }),
    // optimizer2 = Muon(filter_params, lr=0.24, momentum=0.6, nesterov=True): the trained 4-D filters
    Muon([{ params: ofRank(4), lr: "lr_muon" }], { momentum: h.opt.muon_momentum, nesterov: true }),
  ];
}

/** The whitening bias's steps: ceil(whiten_bias_epochs x steps per epoch). */
export const whitenBiasSteps = (h: MuonHyp, stepsPerEpoch: number) =>
  Math.ceil(h.opt.whiten_bias_epochs * stepsPerEpoch);

/**
 * Per step s (counted from 0, the lr set before opt.step()): every lr is its initial value x (1 - s / total),
 * the whitening bias's x (1 - s / whiten steps) while s < whiten steps (the gate: no update after).
 */
export function plan(h: MuonHyp, stepsPerEpoch: number, total: number): PlanStep[] {
  const whiten = whitenBiasSteps(h, stepsPerEpoch);
  return Array.from({ length: total }, (_, s) => {
    const decay = 1 - s / total;
    return {
      values: {
        lr_whiten_bias: s < whiten ? h.opt.bias_lr * (1 - s / whiten) : 0,
        lr_bias: h.opt.bias_lr * decay,
        lr_head: h.opt.head_lr * decay,
        lr_muon: h.opt.muon_lr * decay,
      },
      on: { whiten_bias: s < whiten },
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Training: one run

/** PyTorch's init as the recipe's reset(): nn.Conv2d's for the whitening bias, the head at unit std. */
function initParams(r: Run<MuonHyp>, rng: Rng): Record<string, Float32Array> {
  const params = r.initialParams(rng.fork("init"));
  const bound = 1 / Math.sqrt(3 * 2 * 2); // nn.Conv2d bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  const draw = rng.fork("whiten_bias");
  params["whiten.bias"] = params["whiten.bias"].map(() => (draw.float() * 2 - 1) * bound);
  const head = params["head.weight"];
  const mean = head.reduce((a, b) => a + b, 0) / head.length;
  const std = Math.sqrt(head.reduce((a, b) => a + (b - mean) ** 2, 0) / (head.length - 1)); // torch's std
  params["head.weight"] = head.map((v) => v / std);
  return params;
}

async function trainRun(r: Run<MuonHyp>): Promise<void> {
  const h = r.hyp, rng = new Rng(r.seed), bs = h.opt.batch_size;
  // PyTorch's init, then the whitening filters from the first 5000 training images (float64 + Jacobi, timed).
  const params = initParams(r, rng);
  const images = r.s.trainImages, n = Math.min(WHITEN_IMAGES, r.s.trainN);
  params["whiten.weight"] = r.host(() => Float32Array.from(whiteningWeights(images, n, WHITEN_EPS).weight));
  const loader = r.trainLoader(rng.fork("data").u32());
  const total = r.s.stepsPerRun; // ceil(8 x steps per epoch)
  await r.start(loader, plan(h, loader.stepsPerEpoch, total), params);

  for (let epoch = 0; epoch < Math.ceil(total / loader.stepsPerEpoch); epoch++) {
    // ---- training: the lr schedules and the whitening-bias gate on the GPU
    const last = await r.trainUntil(Math.min(total, (epoch + 1) * loader.stepsPerEpoch), epoch);
    // ---- evaluation (not timed): the last batch's loss/accuracy and the test accuracy without TTA
    const val_acc = await r.evaluate(0);
    r.epochRow({ epoch, train_loss: last.loss / bs, train_acc: last.correct / bs, val_acc });
  }
  // ---- final evaluation with test-time augmentation (timed, as the reference)
  r.finish(await r.evaluate(h.net.tta_level, true));
}

export const experiment: Experiment<MuonHyp> = {
  url: import.meta.url,
  title: "airbench94_muon on WebGPU: train CIFAR-10 with Muon and report test accuracy.",
  hyp,
  defaults: { runs: 25, seed: 0, precision: "auto", logDir: "logs", quiet: false, verify: true },
  makeNet,
  optimizers,
  loss: (h) => ({ labelSmoothing: h.opt.label_smoothing }),
  trainRun,
};

if (import.meta.main) await main(experiment);
