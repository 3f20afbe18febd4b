// The one way to build a training step, used by the experiments, `deno task bench` and the tests:
//   loader gather (optional) -> forward -> label-smoothed cross-entropy -> backward -> SGD per group -> EMA.
// And the per-step plan of the recipe (lr schedule, gated groups, lookahead events) that drives it.

import type { Gpu, Op } from "./gpu.ts";
import type { Net, ParamLayout } from "./model.ts";
import { crossEntropy, emaUpdate, sgdStep } from "./ops.ts";
import { alphaSchedule, decoupledHyperparameters, triangleSchedule } from "./schedule.ts";
import { STEP_EMA, STEP_WHITEN_BIAS, type StepTable, type StepValues } from "./steps.ts";

/**
 * Optimizer settings of a parameter group (the `group` of a layer's parameter): `lrMult` multiplies the lr and
 * divides the weight decay (airbench's `lr_biases = lr * bias_scaler`, `weight_decay = wd / lr_biases`, so the
 * decay per step is the same for every group); `gated` groups train only in steps the plan marks with
 * STEP_WHITEN_BIAS (the whitening bias, for its first epochs).
 */
export interface GroupOptions {
  lrMult?: number;
  gated?: boolean;
}

/**
 * SGD ops over the trained parameters: one dispatch per run of neighbouring groups with the same lr
 * multiplier (at most one gated group in each), then the lookahead EMA of the parameters and of the buffers.
 */
export function optimizerOps(
  gpu: Gpu,
  net: Net,
  groups: Record<string, GroupOptions>,
  stepBuf: GPUBuffer,
): Op[] {
  const { layout } = net.state;
  for (const g of Object.keys(groups)) {
    if (!layout.groups.some((q) => q.name === g)) {
      throw new Error(`optimizer group ${g}: no parameter is in it`);
    }
  }
  const spans: { start: number; end: number; lrMult: number; gate?: { start: number; end: number } }[] = [];
  for (const g of layout.groups) {
    const o = groups[g.name] ?? {};
    const lrMult = o.lrMult ?? 1;
    const last = spans.at(-1);
    const span = last && last.lrMult === lrMult && !(o.gated && last.gate) ? last : { ...g, lrMult };
    if (span !== last) spans.push(span);
    span.end = g.end;
    if (o.gated) span.gate = gatedRange(layout, g.name);
  }
  const s = net.state, ops: Op[] = [];
  for (const sp of spans) {
    const range = (buffer: GPUBuffer) => ({ buffer, offset: sp.start * 4, size: (sp.end - sp.start) * 4 });
    const whole = sp.start === 0 && sp.end === layout.sizes.params;
    const gate = sp.gate && { start: sp.gate.start - sp.start, end: sp.gate.end - sp.start };
    ops.push(sgdStep(gpu, {
      params: whole ? s.params : range(s.params),
      grads: whole ? s.grads : range(s.grads),
      mom: whole ? s.mom : range(s.mom),
      n: sp.end - sp.start,
      stepBuf,
      gate,
      mult: { lr: sp.lrMult, wd: 1 / sp.lrMult },
    }));
  }
  ops.push(emaUpdate(gpu, { params: s.params, ema: s.ema, n: layout.sizes.params, stepBuf }));
  if (layout.sizes.buffers > 0) {
    const a = { params: s.buffers, ema: s.buffersEma, n: layout.sizes.buffers, stepBuf };
    ops.push(emaUpdate(gpu, a, "ema_update.buffers"));
  }
  return ops;
}

/** From the first to the last stored value of a group's parameters. */
function gatedRange(layout: ParamLayout, group: string): { start: number; end: number } {
  const members = layout.trained.filter((e) => e.group === group);
  const last = members.at(-1)!;
  return { start: members[0].offset, end: last.offset + last.count };
}

/** A training step of a network: loss, backward and optimizer ops, and the buffers they use. */
export class TrainStep {
  readonly labels: GPUBuffer; // u32 [B]
  /** f32 [steps][2]: the summed loss and the number correct of each step of the table. */
  readonly stats: GPUBuffer;
  readonly dlogits: GPUBuffer;
  readonly lossOps: Op[];
  readonly backwardOps: Op[];
  readonly backwardByNode: ReturnType<Net["backward"]>["byNode"];
  readonly optimizerOps: Op[];

  constructor(
    readonly gpu: Gpu,
    readonly net: Net,
    readonly table: StepTable,
    opts: { smoothing: number; groups: Record<string, GroupOptions> },
  ) {
    const B = net.batch;
    this.labels = gpu.buffer(B * 4, "train.labels");
    this.stats = gpu.buffer(table.capacity * 8, "train.stats");
    this.dlogits = gpu.buffer(net.output.size, "dlogits");
    this.lossOps = crossEntropy(gpu, {
      logits: net.output,
      labels: this.labels,
      dlogits: this.dlogits,
      stats: this.stats,
      stepBuf: table.current,
      N: B,
      smoothing: opts.smoothing,
    });
    const back = net.backward(this.dlogits);
    [this.backwardOps, this.backwardByNode] = [back.ops, back.byNode];
    this.optimizerOps = optimizerOps(gpu, net, opts.groups, table.current);
  }

  /** The ops of one step, with the loader's gather first when given (tests write x and labels directly). */
  ops(gather?: Op): Op[] {
    return [
      ...(gather ? [gather] : []),
      ...this.net.forwardOps,
      ...this.lossOps,
      ...this.backwardOps,
      ...this.optimizerOps,
    ];
  }
}

/** The optimizer part of the recipe's hyperparameters. */
export interface OptHyp {
  batch_size: number;
  lr: number;
  momentum: number;
  weight_decay: number;
  whiten_bias_epochs: number;
}

/** The per-step values of the recipe: lr schedule, whitening-bias gate and lookahead events. */
export function planSteps(
  opt: OptHyp,
  loader: { stepsPerEpoch: number; batchStart(epoch: number, batch: number): number },
  total: number,
): StepValues[] {
  const { lrSgd, sgdWeightDecay } = decoupledHyperparameters({
    lr: opt.lr,
    momentum: opt.momentum,
    weightDecay: opt.weight_decay,
    batchSize: opt.batch_size,
  });
  const lrSchedule = triangleSchedule(total, 0.2, 0.07, 0.23);
  const alpha = alphaSchedule(total);
  const steps: StepValues[] = [];
  for (let s = 0; s < total; s++) {
    const epoch = Math.floor(s / loader.stepsPerEpoch);
    const done = s + 1; // current_steps after this step's optimizer update
    let flags = epoch < opt.whiten_bias_epochs ? STEP_WHITEN_BIAS : 0;
    let emaDecay = 0;
    if (done % 5 === 0) [flags, emaDecay] = [flags | STEP_EMA, alpha[done]];
    else if (done === total) [flags, emaDecay] = [flags | STEP_EMA, 1.0]; // last step: net = ema
    steps.push({
      step: s,
      epoch,
      batchStart: loader.batchStart(epoch, s % loader.stepsPerEpoch),
      flags,
      lr: lrSgd * lrSchedule[s],
      weightDecay: sgdWeightDecay,
      momentum: opt.momentum,
      emaDecay,
    });
  }
  return steps;
}
