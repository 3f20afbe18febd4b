// The one way to build what trains a declared network: its parameters on the GPU, the network at the training
// batch, the per-step table and the training step (loss, backward, the optimizers), and evaluation networks
// sharing the parameters. Used by the session (lib/train/session.ts), `deno task bench` and the tests.

import type { Gpu } from "../gpu/gpu.ts";
import type { Precision } from "../gpu/kernels.ts";
import { StepTable } from "../gpu/steps.ts";
import { type ConvTiles, DEFAULT_TILES } from "../nn/conv.ts";
import { Net, NetState, ParamLayout } from "../nn/model.ts";
import type { Graph } from "../nn/module.ts";
import type { Optimizer } from "./optim.ts";
import { type LossOptions, TrainStep } from "./train_step.ts";

export interface TrainerOptions {
  precision: Precision;
  /** Images per training step. */
  batch: number;
  /** Steps the per-step table holds (a run's steps; 1 or 2 for a bench or a test). */
  steps: number;
  loss: LossOptions;
  optimizers: readonly Optimizer[];
  /** The conv kernel variants (lib/nn/tune.ts); the defaults when absent. */
  tiles?: ConvTiles;
}

/** A network's parameters, its training-batch net, step table and training step. */
export class Trainer {
  readonly layout: ParamLayout;
  readonly state: NetState;
  readonly net: Net;
  readonly table: StepTable;
  readonly step: TrainStep;
  readonly tiles: ConvTiles;

  constructor(readonly gpu: Gpu, readonly graph: Graph, readonly config: TrainerOptions) {
    this.tiles = config.tiles ?? DEFAULT_TILES;
    this.layout = new ParamLayout(graph);
    this.state = new NetState(gpu, this.layout);
    this.net = new Net(gpu, config.precision, graph, this.state, config.batch, this.tiles);
    this.table = new StepTable(gpu, config.steps);
    this.step = new TrainStep(gpu, this.net, this.table, {
      loss: config.loss,
      optimizers: config.optimizers,
    });
  }

  get precision(): Precision {
    return this.config.precision;
  }

  /** The network in evaluation mode at `batch` images, on the same parameters and kernel variants. */
  evalNet(batch: number): Net {
    return new Net(this.gpu, this.precision, this.graph, this.state, batch, this.tiles, false);
  }
}
