// The one way to build a training step, used by the experiments, `deno task bench` and the tests:
//   loader gather (optional) -> forward -> label-smoothed cross-entropy -> backward -> the experiment's
//   optimizers (lib/train/optim.ts), in the order it declares them.

import type { Gpu, Op } from "../gpu/gpu.ts";
import type { Net } from "../nn/model.ts";
import { crossEntropy } from "../nn/ops.ts";
import { type Optimizer, optimizerOps, stepSlotsOf } from "./optim.ts";
import type { PlanStep, StepSlots, StepTable, StepValues } from "../gpu/steps.ts";

/** The loss of a training step: the cross-entropy's label smoothing. */
export interface LossOptions {
  labelSmoothing: number;
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
  /** Each optimizer's ops (the bench times them apart), and all of them in order. */
  readonly optimizerOpsBy: { opt: Optimizer; ops: Op[] }[];
  readonly optimizerOps: Op[];
  /** Where the plan's named values and gates go in a Step. */
  readonly slots: StepSlots;

  constructor(
    readonly gpu: Gpu,
    readonly net: Net,
    readonly table: StepTable,
    opts: { loss: LossOptions; optimizers: readonly Optimizer[] },
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
      smoothing: opts.loss.labelSmoothing,
    });
    const back = net.backward(this.dlogits);
    [this.backwardOps, this.backwardByNode] = [back.ops, back.byNode];
    this.slots = stepSlotsOf(opts.optimizers);
    const ctx = { gpu, state: net.state, stepBuf: table.current, slots: this.slots };
    this.optimizerOpsBy = optimizerOps(ctx, opts.optimizers);
    this.optimizerOps = this.optimizerOpsBy.flatMap((o) => o.ops);
  }

  /** A run's plan as the step table holds it (see StepSlots.pack). */
  pack(
    plan: readonly PlanStep[],
    loader: { stepsPerEpoch: number; batchStart(epoch: number, batch: number): number },
  ): StepValues[] {
    return this.slots.pack(plan, loader);
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
