// The parts of a training run that every experiment shares, in Deno and in a page (no Deno APIs here): the
// session (network, parameters, evaluator, step table, training step derived from the declared net) and the
// `Run` an experiment's loop is written with (init, loader, plan, train, evaluate, log).
// lib/cli/experiment.ts adds the command line, the checks, the data, the log file, signals and weights for
// Deno.

import type { Cifar10, CifarSplit } from "../data/cifar_batches.ts";
import { type RunOptions, UsageError } from "../io/flags.ts";
import type { BaseHyp, Hyperparameters } from "../io/hyp.ts";
import { type ConvTiles, tilesFor } from "../nn/conv.ts";
import type { TuneMode, VariantRecord } from "../nn/tune.ts";
import { Evaluator } from "./evaluate.ts";
import { type AdapterReport } from "../gpu/adapter.ts";
import { Gpu, type Op, warmUp } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import { TrainLoader } from "../data/loader.ts";
import { initParams, Net, NetState } from "../nn/model.ts";
import { Graph, type Module } from "../nn/module.ts";
import { formatDuration, meanStd, printRow, Progress } from "../report/console.ts";
import type { Rng } from "../data/rng.ts";
import { type Fingerprint, type SavedLog, stateDigest } from "../io/runlog.ts";
import { stepsPerRun } from "../data/batches.ts";
import type { Optimizer } from "./optim.ts";
import { type PlanStep, submitSteps } from "../gpu/steps.ts";
import { GpuTimer } from "../gpu/timer.ts";
import type { LossOptions } from "./train_step.ts";
import { Trainer } from "./trainer.ts";

const CHUNK_SECONDS = 1.0; // aim for submits of about this much GPU work (progress granularity)
/** Test images per evaluation batch on CPU adapters (GPUs: 2000, as the recipe). */
const CPU_EVAL_BATCH = 500;
/** Most steps per run: the plan and per-step tables are held in memory and in GPU buffers. */
export const MAX_STEPS = 1_000_000;

/**
 * A run's optimizer steps (lib/data/batches.ts stepsPerRun), checked: at least one batch of the `flag`'s
 * images, and within what the plan, the step table and the stats buffer hold (MAX_STEPS). Every consumer of
 * the step count (the checks before work, the log, the session's step table, the page) goes through here.
 */
export function checkedStepsPerRun(h: BaseHyp, trainN: number, flag = "--train-n"): number {
  if (trainN < h.opt.batch_size) {
    throw new UsageError(`${flag} ${trainN} is smaller than --batch-size ${h.opt.batch_size}`);
  }
  const total = stepsPerRun(trainN, h.opt.batch_size, h.opt.train_epochs);
  if (total > MAX_STEPS) {
    throw new UsageError(
      `--epochs ${h.opt.train_epochs} at --batch-size ${h.opt.batch_size} on ${trainN} images is ${total} ` +
        `steps per run; at most ${MAX_STEPS} are supported (use fewer epochs or a larger batch)`,
    );
  }
  return total;
}

export interface Experiment<H extends BaseHyp> {
  url: string; // import.meta.url of the experiment file: its text goes into the log
  title: string;
  /** The hyperparameters: values, help and bounds (lib/io/hyp.ts); each one is a flag. */
  hyp: Hyperparameters<H>;
  defaults: RunOptions;
  makeNet(h: H): Module;
  /** The optimizers, in the order they run after the backward pass (lib/train/optim.ts: SGD, Lookahead, ...). */
  optimizers(h: H): Optimizer[];
  loss(h: H): LossOptions;
  trainRun(r: Run<H>): Promise<void>;
}

export interface RunLog {
  run: number;
  seed: number;
  epochs: Record<string, number | string>[];
  tta_val_acc?: number;
  total_time_seconds?: number;
  /** lib/io/runlog.ts stateDigest of the final weights and buffers (what --save-weights writes). */
  weights_sha256?: string;
  error?: string;
}

export interface ExperimentLog {
  experiment: string;
  argv: string[];
  code: string;
  fingerprint: Fingerprint;
  config: object;
  adapter: Record<string, unknown>;
  precision: Precision;
  conv_variant: string;
  /** --tune and, per conv layer and pass, the kernel variant that ran (and the candidates' times if tuned). */
  tune?: TuneMode;
  conv_variants?: VariantRecord;
  /** --variants LOG: the run log whose conv_variants this run ran (source "log" in conv_variants). */
  variants_from?: string;
  network: { layer: string; torch: string; out: number[] }[];
  status: "running" | "done" | "failed" | "interrupted";
  runs: RunLog[];
  mean: number;
  std: number;
  error?: string;
  interrupted?: { signal: string; run: number; epochs_completed: number; step: number };
}

/** Everything built once per invocation and shared by its runs: the trainer (lib/train/trainer.ts) and more. */
export class Session<H extends BaseHyp> extends Trainer {
  readonly evaluator: Evaluator;
  readonly progress: Progress;
  /** Where the current run is (for an interruption's report). */
  where = { run: 0, epochsCompleted: 0, step: 0 };
  rate?: number; // measured training images per second (the first chunk of run 0)

  constructor(
    readonly exp: Experiment<H>,
    readonly hyp: H,
    readonly opts: RunOptions,
    gpu: Gpu,
    precision: Precision,
    readonly data: Cifar10,
    readonly trainN: number,
    readonly log: SavedLog<ExperimentLog>,
    graph: Graph,
    tiles?: ConvTiles,
  ) {
    super(gpu, graph, {
      precision,
      batch: hyp.opt.batch_size,
      steps: checkedStepsPerRun(hyp, trainN),
      loss: exp.loss(hyp),
      optimizers: exp.optimizers(hyp),
      // register blocking on CPU adapters, workgroup-memory tiles on GPUs; per-layer choices from the tuner
      tiles: tiles ?? tilesFor(gpu.adapter),
    });
    const test = this.test;
    // CPU adapters: smaller batches, one submit per view (each takes seconds there; an interrupt waits for
    // one)
    const cpu = gpu.adapter.isCpu;
    const evalBatch = Net.maxBatch(gpu, precision, graph, Math.min(cpu ? CPU_EVAL_BATCH : 2000, test.n));
    this.evaluator = new Evaluator(gpu, precision, this.evalNet(evalBatch), test, cpu);
    this.progress = new Progress(opts.quiet);
  }

  /** Optimizer steps of each run (checkedStepsPerRun: trainN, the batch size, the epochs): the table's. */
  get stepsPerRun(): number {
    return this.config.steps;
  }

  /** The test images evaluated: the first --test-n of the test set (all by default). */
  get test(): CifarSplit {
    return testSubset(this.data.test, this.opts.testN);
  }

  get trainImages(): Uint8Array {
    return this.data.train.images.subarray(0, this.trainN * 3072);
  }

  get trainLabels(): Uint8Array {
    return this.data.train.labels.subarray(0, this.trainN);
  }
}

/** One training run: the steps an experiment's loop is written with. */
export class Run<H extends BaseHyp> {
  readonly log: RunLog;
  readonly timer: GpuTimer;
  private hostSeconds = 0;
  private stepOps: Op[] = [];
  private chunk = 1;
  private spe = 1;
  private step = 0;
  private total = 0;
  private loaders: TrainLoader[] = [];

  constructor(readonly s: Session<H>, readonly run: number, readonly seed: number) {
    this.log = { run, seed, epochs: [] };
    this.timer = new GpuTimer(s.gpu);
  }

  get hyp(): H {
    return this.s.hyp;
  }

  /** Every state-dict entry initialised as its layer asks, from `rng` (PyTorch's defaults). */
  initialParams(rng: Rng): Record<string, Float32Array> {
    return initParams(this.s.layout, () => rng.float());
  }

  /** Host work that counts in the run's time (the whitening init). */
  host<T>(fn: () => T): T {
    const t0 = performance.now();
    const out = fn();
    this.hostSeconds += (performance.now() - t0) / 1000;
    return out;
  }

  /** The training set on the GPU with the recipe's augmentation, shuffled from `seed`. */
  trainLoader(seed: number): TrainLoader {
    const h = this.hyp;
    const loader = new TrainLoader(this.s.gpu, this.s.trainImages, this.s.trainLabels, {
      batchSize: h.opt.batch_size,
      flip: h.aug.flip,
      translate: h.aug.translate,
      seed,
      precision: this.s.precision,
      epochs: Math.ceil(h.opt.train_epochs),
    });
    this.loaders.push(loader);
    return loader;
  }

  /**
   * Write the plan (one entry per step: the values and gates the optimizers read, by name), build the step's
   * ops, compile (run 0 warms every pipeline), and load the parameters.
   */
  async start(loader: TrainLoader, plan: PlanStep[], params: Record<string, Float32Array>): Promise<void> {
    const { s } = this;
    s.table.write(s.step.pack(plan, loader));
    this.total = plan.length;
    this.spe = loader.stepsPerEpoch;
    this.stepOps = s.step.ops(loader.gatherOp(s.table.current, s.net.x, s.step.labels));
    await s.gpu.checkCompile();
    if (this.run === 0) {
      s.progress.update(`run 0: compiling the kernels and running each once (the first run only)`);
      // Drivers that compile shaders on first use would charge it to the timed steps: compile now.
      await warmUp(s.gpu, this.stepOps);
      await s.evaluator.warm(0);
      await s.evaluator.warm(this.hyp.net.tta_level);
    }
    s.state.load(params); // the warm-up dispatches touched the state
    s.progress.update(`run ${this.run} epoch 0: first step of ${this.total} (timing it for the estimate)`);
  }

  /** Train up to step `end` in chunks of steps per submit; the stats are read once per chunk. */
  async trainUntil(end: number, epoch: number): Promise<{ loss: number; correct: number }> {
    const { s } = this;
    while (this.step < end) {
      const to = Math.min(end, this.step + this.chunk);
      const t = performance.now();
      submitSteps(s.gpu, s.table, this.step, to, this.stepOps, this.timer);
      const stats = await s.gpu.readF32(s.step.stats, this.step * 8, (to - this.step) * 2);
      for (let i = 0; i < to - this.step; i++) {
        if (!Number.isFinite(stats[2 * i])) {
          throw new Divergence(`loss is ${stats[2 * i]} at step ${this.step + i} (epoch ${epoch})`);
        }
      }
      const seconds = (performance.now() - t) / 1000;
      this.timer.wall(seconds); // counts only without timestamp queries
      const perStep = seconds / (to - this.step);
      this.step = s.where.step = to;
      this.chunk = Math.max(1, Math.min(this.spe, Math.round(CHUNK_SECONDS / perStep)));
      this.reportRate(perStep);
      const ips = this.hyp.opt.batch_size / perStep;
      s.progress.update(
        `run ${this.run} epoch ${epoch} step ${this.step}/${this.total}  ${ips.toFixed(1)} img/s` +
          `  ETA ${formatDuration(perStep * (this.total - this.step))} (training)`,
      );
    }
    await this.timer.collect();
    const last = await s.gpu.readF32(s.step.stats, (end - 1) * 8, 2);
    return { loss: last[0], correct: last[1] };
  }

  /** After the first measured chunk of the invocation: the expected time of every run, from that rate. */
  private reportRate(perStep: number) {
    const { s } = this;
    if (s.rate !== undefined) return;
    s.rate = this.hyp.opt.batch_size / perStep;
    const perRun = perStep * this.total;
    if (!s.opts.quiet) {
      s.progress.clear();
      console.error(
        `measured ${s.rate.toFixed(1)} img/s: about ${formatDuration(perRun)} of training per run ` +
          `(${s.opts.runs} run(s): ${formatDuration(perRun * s.opts.runs)}, plus evaluation)`,
      );
    }
  }

  /** Test accuracy with TTA `level`; `timed`: counts in the run's time (the final evaluation). */
  async evaluate(level: number, timed = false): Promise<number> {
    const { s } = this;
    const t = performance.now();
    const what = timed ? "TTA" : "evaluating";
    const acc = await s.evaluator.accuracy(
      level,
      timed ? this.timer : undefined,
      (d, n) => s.progress.update(`run ${this.run} ${what} ${d}/${n}`),
    );
    if (timed) {
      this.timer.wall((performance.now() - t) / 1000);
      await this.timer.collect();
    }
    s.progress.clear();
    return acc;
  }

  /** Seconds of this run so far: host init plus GPU time of the training steps (and the timed evaluation). */
  get seconds(): number {
    return this.hostSeconds + this.timer.seconds;
  }

  /** One row of the table after an epoch; the log is saved. */
  epochRow(row: { epoch: number; train_loss: number; train_acc: number; val_acc: number }): void {
    const full = { run: row.epoch === 0 ? this.run : "", ...row, total_time_seconds: this.seconds };
    printRow(full);
    this.log.epochs.push({ ...full, run: this.run });
    this.s.where.epochsCompleted = this.log.epochs.length;
    this.s.log.data.runs[this.run] = this.log;
    this.s.log.save();
  }

  /** The final row: the TTA accuracy and the run's time. */
  finish(ttaAcc: number): void {
    this.log.tta_val_acc = ttaAcc;
    this.log.total_time_seconds = this.seconds;
    printRow({ epoch: "eval", tta_val_acc: ttaAcc, total_time_seconds: this.seconds }, true);
  }

  destroy(): void {
    for (const l of this.loaders) l.destroy();
    this.timer.destroy();
  }
}

/** --precision for this adapter: auto = f16 on GPUs with shader-f16, f32 on CPU adapters. */
export function runPrecision(a: AdapterReport, requested: RunOptions["precision"]): Precision {
  const precision = requested === "auto" ? (a.f16 && !a.isCpu ? "f16" : "f32") : requested;
  if (precision === "f16" && !a.f16) {
    throw new UsageError("--precision f16: this adapter has no shader-f16; use f32");
  }
  return precision;
}

/**
 * A run log as it starts (status "running", no runs yet), in Deno and in a page alike; `host` adds to the
 * adapter what the caller knows of where it runs (Deno's version, the browser's user agent).
 */
export function startLog(o: {
  experiment: string;
  argv: string[];
  code: string;
  fingerprint: Fingerprint;
  hyp: BaseHyp;
  opts: RunOptions;
  trainN: number;
  /** The size of the test set: config.testN is --test-n (at most this), config.testOf this. */
  testOf: number;
  adapter: AdapterReport;
  host: Record<string, string>;
  precision: Precision;
  graph: Graph;
}): ExperimentLog {
  const { hyp, graph } = o;
  return {
    experiment: o.experiment,
    argv: o.argv,
    code: o.code,
    fingerprint: o.fingerprint,
    config: {
      ...structuredClone(hyp),
      ...o.opts,
      trainN: o.trainN,
      testN: Math.min(o.opts.testN ?? o.testOf, o.testOf),
      testOf: o.testOf,
      stepsPerRun: checkedStepsPerRun(hyp, o.trainN),
    },
    adapter: { ...o.adapter, ...o.host },
    precision: o.precision,
    conv_variant: tilesFor(o.adapter).variant,
    network: graph.nodes.map((n) => {
      const s = graph.tensors[n.output].shape;
      return { layer: n.label, torch: n.layer.torch, out: [s.C, s.H, s.W] };
    }),
    status: "running",
    runs: [],
    mean: NaN,
    std: NaN,
  };
}

/** The first `n` images of a split (all when `n` is undefined or at least the split's size). */
export function testSubset(test: CifarSplit, n?: number): CifarSplit {
  if (n === undefined || n >= test.n) return test;
  return { images: test.images.subarray(0, n * 3072), labels: test.labels.subarray(0, n), n };
}

/** A run whose loss became NaN or infinite: the run stops, the next seed runs. */
export class Divergence extends Error {}

/** What a caller of `trainRuns` adds around each run (main.ts: weights files and messages; the page: its UI). */
export interface RunHooks<H extends BaseHyp> {
  /** Before run `r.run` trains. */
  start?(r: Run<H>): void;
  /** After a run trained: its parameters as read back (r.log.weights_sha256 is their digest). */
  trained?(r: Run<H>, tensors: Awaited<ReturnType<NetState["read"]>>): Promise<void> | void;
  /** A run diverged (recorded in its log); `next` says which seed runs next ("" after the last run). */
  diverged?(r: Run<H>, message: string, next: string): void;
}

/**
 * The runs of a session, for Deno and the page alike: each run trains with the experiment's loop (seed
 * opts.seed + run); a diverging run is recorded and the next seed runs; then the log's mean and std over the
 * finished runs and its status ("failed" when any run diverged, naming them). The log is saved after each
 * run and at the end. Any other error propagates (the caller records it).
 */
export async function trainRuns<H extends BaseHyp>(
  s: Session<H>,
  hooks: RunHooks<H> = {},
): Promise<{ finished: number; failed: number; mean: number; std: number }> {
  const { opts, log } = s;
  let failed = 0;
  for (let run = 0; run < opts.runs; run++) {
    s.where = { run, epochsCompleted: 0, step: 0 };
    const r = new Run(s, run, opts.seed + run);
    log.data.runs[run] = r.log;
    try {
      hooks.start?.(r);
      await s.exp.trainRun(r);
      const tensors = await s.state.read();
      r.log.weights_sha256 = stateDigest(tensors);
      await hooks.trained?.(r, tensors);
    } catch (e) {
      if (!(e instanceof Divergence)) throw e;
      s.progress.clear();
      failed++;
      r.log.error = e.message;
      const next = run + 1 < opts.runs ? `run ${run + 1} (seed ${opts.seed + run + 1})` : "";
      hooks.diverged?.(r, e.message, next);
    } finally {
      r.destroy();
    }
    log.save();
  }
  const ok = log.data.runs.filter((r) => r.error === undefined);
  const { mean, std } = meanStd(ok.map((r) => r.tta_val_acc!));
  [log.data.mean, log.data.std] = [ok.length ? mean : NaN, ok.length ? std : NaN];
  log.data.status = failed ? "failed" : "done";
  if (failed) {
    log.data.error = log.data.runs.map((r) => r.error && `run ${r.run}: ${r.error}`).filter(Boolean).join(
      "; ",
    );
  }
  log.save();
  return { finished: ok.length, failed, mean: log.data.mean, std: log.data.std };
}
