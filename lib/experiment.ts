// What every experiment file shares (main.ts, experiments/*.ts): the command line, the checks made before any
// expensive work, the GPU, the data, the network derived from the experiment's declaration, the log, the runs
// and the weights. The experiment file keeps its hyperparameters, its network and its training loop; the loop
// is written with the steps of a `Run` (init, loader, plan, train, evaluate, log).

import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type Cifar10, loadCifar10 } from "./cifar.ts";
import { type Hyp, parseCommandLine, type RunOptions, UsageError } from "./cli.ts";
import { type ConvTiles, DEFAULT_TILES, tilesFor } from "./conv.ts";
import {
  fallbackOf,
  gpuTimeFn,
  kernelsHash,
  tuneKey,
  type TuneMode,
  tuneNetwork,
  Tuner,
  type VariantRecord,
  variantsFromRecord,
} from "./tune.ts";
import { Evaluator } from "./evaluate.ts";
import { Gpu, type Op, type Precision, warmUp } from "./gpu.ts";
import { TrainLoader } from "./loader.ts";
import { initParams, INPUT_SHAPE, Net, NetState, ParamLayout } from "./model.ts";
import { Graph, type Module } from "./nn.ts";
import { formatDuration, meanStd, printHeader, printRow, Progress } from "./report.ts";
import type { Rng } from "./rng.ts";
import {
  checkWritable,
  createLogPath,
  fingerprint,
  LogFile,
  ROOT,
  type SavedLog,
  stateDigest,
} from "./runlog.ts";
import { writeSafetensors } from "./safetensors.ts";
import { totalSteps } from "./schedule.ts";
import { GpuTimer, StepTable, type StepValues, submitSteps } from "./steps.ts";
import { type GroupOptions, TrainStep } from "./train.ts";

const CHUNK_SECONDS = 1.0; // aim for submits of about this much GPU work (progress granularity)
/** Most steps per run: the plan and per-step tables are held in memory and in GPU buffers. */
export const MAX_STEPS = 1_000_000;

export interface Experiment<H extends Hyp> {
  url: string; // import.meta.url of the experiment file: its text goes into the log
  title: string;
  hyp: H; // the defaults (never changed: the command line applies to a copy)
  defaults: RunOptions;
  makeNet(h: H): Module;
  groups(h: H): Record<string, GroupOptions>;
  trainRun(r: Run<H>): Promise<void>;
}

export interface RunLog {
  run: number;
  seed: number;
  epochs: Record<string, number | string>[];
  tta_val_acc?: number;
  total_time_seconds?: number;
  /** lib/runlog.ts stateDigest of the final weights and buffers (what --save-weights writes). */
  weights_sha256?: string;
  error?: string;
}

export interface ExperimentLog {
  experiment: string;
  argv: string[];
  code: string;
  fingerprint: ReturnType<typeof fingerprint>;
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

/** Everything built once per invocation and shared by its runs. */
export class Session<H extends Hyp> {
  readonly layout: ParamLayout;
  readonly state: NetState;
  readonly tiles: ConvTiles;
  readonly net: Net;
  readonly evaluator: Evaluator;
  readonly table: StepTable;
  readonly step: TrainStep;
  readonly maxSteps: number;
  readonly progress: Progress;
  /** Where the current run is (for an interruption's report). */
  where = { run: 0, epochsCompleted: 0, step: 0 };
  rate?: number; // measured training images per second (the first chunk of run 0)

  constructor(
    readonly exp: Experiment<H>,
    readonly hyp: H,
    readonly opts: RunOptions,
    readonly gpu: Gpu,
    readonly precision: Precision,
    readonly data: Cifar10,
    readonly trainN: number,
    readonly log: SavedLog<ExperimentLog>,
    readonly graph: Graph,
    tiles?: ConvTiles,
  ) {
    this.layout = new ParamLayout(this.graph);
    this.state = new NetState(gpu, this.layout);
    // register blocking on CPU adapters, workgroup-memory tiles on GPUs; per-layer choices from the tuner
    this.tiles = tiles ?? tilesFor(gpu.adapter);
    this.net = new Net(gpu, precision, this.graph, this.state, hyp.opt.batch_size, this.tiles);
    const evalBatch = Net.maxBatch(gpu, precision, this.graph, Math.min(2000, data.test.n));
    const evalNet = new Net(gpu, precision, this.graph, this.state, evalBatch, this.tiles, false);
    this.evaluator = new Evaluator(gpu, precision, evalNet, data.test);
    this.maxSteps = totalSteps(Math.floor(trainN / hyp.opt.batch_size), hyp.opt.train_epochs);
    this.table = new StepTable(gpu, this.maxSteps);
    this.step = new TrainStep(gpu, this.net, this.table, {
      smoothing: hyp.opt.label_smoothing,
      groups: exp.groups(hyp),
    });
    this.progress = new Progress(opts.quiet);
  }

  get trainImages(): Uint8Array {
    return this.data.train.images.subarray(0, this.trainN * 3072);
  }

  get trainLabels(): Uint8Array {
    return this.data.train.labels.subarray(0, this.trainN);
  }
}

/** One training run: the steps an experiment's loop is written with. */
export class Run<H extends Hyp> {
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

  /** Write the plan, build the step's ops, compile (run 0 warms every pipeline), and load the parameters. */
  async start(loader: TrainLoader, plan: StepValues[], params: Record<string, Float32Array>): Promise<void> {
    const { s } = this;
    s.table.write(plan);
    this.total = plan.length;
    this.spe = loader.stepsPerEpoch;
    this.stepOps = s.step.ops(loader.gatherOp(s.table.current, s.net.x, s.step.labels));
    await s.gpu.checkCompile();
    if (this.run === 0) {
      // Drivers that compile shaders on first use would charge it to the timed steps: compile now.
      await warmUp(s.gpu, this.stepOps);
      await s.evaluator.warm(0);
      await s.evaluator.warm(this.hyp.net.tta_level);
    }
    s.state.load(params); // the warm-up dispatches touched the state
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
    if (s.rate !== undefined || this.step < 2) return;
    s.rate = this.hyp.opt.batch_size / perStep;
    const perRun = perStep * this.total;
    if (!s.opts.quiet) {
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

/** A run whose loss became NaN or infinite: the run stops, the next seed runs. */
export class Divergence extends Error {}

/** The experiment file's path relative to the project root (the log's `experiment`). */
export function experimentPath(url: string): string {
  return relative(ROOT, fileURLToPath(url)).split("\\").join("/");
}

/** Steps per run must stay within what the plan, the step table and the stats buffer hold. */
function checkSteps(h: Hyp, trainN: number, flag: string) {
  const spe = Math.floor(trainN / h.opt.batch_size);
  if (spe < 1) throw new UsageError(`${flag} ${trainN} is smaller than --batch-size ${h.opt.batch_size}`);
  const total = totalSteps(spe, h.opt.train_epochs);
  if (total > MAX_STEPS) {
    throw new UsageError(
      `--epochs ${h.opt.train_epochs} at --batch-size ${h.opt.batch_size} on ${trainN} images is ${total} ` +
        `steps per run; at most ${MAX_STEPS} are supported (use fewer epochs or a larger batch)`,
    );
  }
}

/** Everything that can be checked before the GPU and the data: outputs, the network, the step count. */
function preflight<H extends Hyp>(
  exp: Experiment<H>,
  h: H,
  o: RunOptions,
): { graph: Graph; pinned?: VariantRecord } {
  try {
    checkWritable("--log-dir", o.logDir, "dir");
    if (o.saveWeights) checkWritable("--save-weights", o.saveWeights, "file");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  checkSteps(h, o.trainN ?? 50000, "--train-n");
  let graph: Graph;
  try {
    graph = new Graph(exp.makeNet(h), INPUT_SHAPE);
  } catch (e) {
    throw new UsageError(`the network of --widths ${h.net.widths.join(",")}: ${(e as Error).message}`);
  }
  if (o.variants === undefined) return { graph };
  const pinned = readVariants(o.variants);
  try {
    variantsFromRecord(pinned, DEFAULT_TILES, graph, h.opt.batch_size, "f32"); // every conv of this network?
  } catch (e) {
    throw new UsageError(`--variants ${o.variants}: ${(e as Error).message}`);
  }
  return { graph, pinned };
}

/** --variants LOG: the log's `conv_variants` (checked to be there before any expensive work). */
function readVariants(path: string): VariantRecord {
  let log: Partial<ExperimentLog>;
  try {
    log = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new UsageError(
      `--variants ${path}: not a readable JSON run log (${(e as Error).message.split("\n")[0]})`,
    );
  }
  const v = log?.conv_variants;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new UsageError(
      `--variants ${path}: no "conv_variants" in it; name a run log written with kernel variants`,
    );
  }
  return v;
}

async function loadData(o: RunOptions): Promise<Cifar10> {
  if (o.verify) return await loadCifar10({ path: o.data, quiet: o.quiet });
  return await loadCifar10({
    path: o.data,
    quiet: o.quiet,
    expectedSha: null,
    cache: false,
    officialUrl: null,
  });
}

function newLog<H extends Hyp>(
  exp: Experiment<H>,
  args: string[],
  h: H,
  o: RunOptions,
  gpu: Gpu,
  extra: { precision: Precision; trainN: number; graph: Graph },
): LogFile<ExperimentLog> {
  const { graph } = extra;
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const stepsPerRun = totalSteps(Math.floor(extra.trainN / h.opt.batch_size), h.opt.train_epochs);
  const log = new LogFile<ExperimentLog>(createLogPath(o.logDir, stamp), {
    experiment: experimentPath(exp.url),
    argv: args,
    code: Deno.readTextFileSync(new URL(exp.url)),
    fingerprint: fingerprint(),
    config: { ...structuredClone(h), ...o, trainN: extra.trainN, stepsPerRun },
    adapter: { ...gpu.adapter, deno: Deno.version.deno },
    precision: extra.precision,
    conv_variant: tilesFor(gpu.adapter).variant,
    network: graph.nodes.map((n) => {
      const s = graph.tensors[n.output].shape;
      return { layer: n.label, torch: n.layer.torch, out: [s.C, s.H, s.W] };
    }),
    status: "running",
    runs: [],
    mean: NaN,
    std: NaN,
  });
  log.save();
  return log;
}

/**
 * The conv kernel variant of every layer and pass (lib/tune.ts): cached, tuned now (GPUs, or --tune force), or
 * the defaults; or, with `pinned` (--variants LOG), the ones a run log recorded. The training batch's shapes are tuned; the evaluation nets use the same per-layer choices.
 */
export async function tuneSession(
  gpu: Gpu,
  graph: Graph,
  batch: number,
  precision: Precision,
  mode: TuneMode,
  quiet = false,
  pinned?: VariantRecord,
): Promise<{ tiles: ConvTiles; record: VariantRecord }> {
  const tiles = tilesFor(gpu.adapter);
  if (pinned) return variantsFromRecord(pinned, tiles, graph, batch, precision);
  const tuner = new Tuner({
    key: tuneKey(gpu.adapter, kernelsHash()),
    mode,
    isCpu: gpu.adapter.isCpu,
    time: gpuTimeFn(gpu, { tiles }),
    limits: gpu.device.limits as unknown as Record<string, number>,
    fallback: fallbackOf(tiles),
    say: quiet ? undefined : (l) => console.error(l),
  });
  if (tuner.tunes && !quiet) console.error(`tuning conv kernels (--tune ${mode}); cache ${tuner.path}`);
  return await tuneNetwork(tuner, tiles, graph, batch, precision);
}

/** SIGINT / SIGTERM: the log says "interrupted", where, and the process exits 130 / 143. */
function onSignals(s: Session<Hyp>): () => void {
  const handlers: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM"] as const).map((sig) => [sig, () => {
    s.progress.clear();
    const { run, epochsCompleted, step } = s.where;
    s.log.data.status = "interrupted";
    s.log.data.interrupted = { signal: sig, run, epochs_completed: epochsCompleted, step };
    s.log.save();
    console.error(
      `interrupted (${sig}) in run ${run} after ${epochsCompleted} epoch(s), at step ${step}; log: ${s.log.path}`,
    );
    Deno.exit(sig === "SIGINT" ? 130 : 143);
  }]);
  for (const [sig, h] of handlers) {
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* a platform without this signal */ }
  }
  return () => handlers.forEach(([sig, h]) => Deno.removeSignalListener(sig, h));
}

function saveWeights(s: Session<Hyp>, run: number, tensors: Awaited<ReturnType<NetState["read"]>>) {
  const o = s.opts;
  if (!o.saveWeights) return;
  const path = o.runs > 1 ? o.saveWeights.replace(/(\.\w+)?$/, `-run${run}$1`) : o.saveWeights;
  const entries = Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32" as const, ...t }]);
  writeSafetensors(path, Object.fromEntries(entries), { format: "pt", seed: String(o.seed + run) });
  if (!o.quiet) console.error(`weights: ${path}`);
}

/** The runs of a session; a diverging run is recorded and the next seed runs. Returns the exit code. */
async function runAll<H extends Hyp>(s: Session<H>): Promise<number> {
  const { opts, log } = s;
  let failed = 0;
  for (let run = 0; run < opts.runs; run++) {
    s.where = { run, epochsCompleted: 0, step: 0 };
    const r = new Run(s, run, opts.seed + run);
    log.data.runs[run] = r.log;
    try {
      await s.exp.trainRun(r);
      const tensors = await s.state.read();
      r.log.weights_sha256 = stateDigest(tensors);
      saveWeights(s as unknown as Session<Hyp>, run, tensors);
    } catch (e) {
      if (!(e instanceof Divergence)) throw e;
      s.progress.clear();
      failed++;
      r.log.error = e.message;
      const next = run + 1 < opts.runs
        ? `; continuing with run ${run + 1} (seed ${opts.seed + run + 1})`
        : "";
      console.error(`error: run ${run} diverged: ${e.message}${next}`);
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
  if (ok.length) {
    console.log(`Mean: ${mean.toFixed(4)}  Std: ${std.toFixed(4)}${failed ? ` (${ok.length} runs)` : ""}`);
  }
  console.log(log.path);
  return failed ? 1 : 0;
}

/** Parse the command line, check everything that can be checked up front, then train. Returns the exit code. */
export async function runExperiment<H extends Hyp>(
  exp: Experiment<H>,
  args: string[] = Deno.args,
): Promise<number> {
  const about = { title: exp.title, file: experimentPath(exp.url) };
  const parsed = parseCommandLine(args, exp.hyp, exp.defaults, about);
  if (parsed.help) {
    console.log(parsed.help);
    return 0;
  }
  const { hyp, opts } = parsed;
  const { graph, pinned } = preflight(exp, hyp, opts);
  const gpu = await Gpu.create();
  const a = gpu.adapter;
  const precision: Precision = opts.precision === "auto"
    ? (a.f16 && !a.isCpu ? "f16" : "f32")
    : opts.precision;
  if (precision === "f16" && !a.f16) {
    throw new UsageError("--precision f16: this adapter has no shader-f16; use f32");
  }
  const data = await loadData(opts);
  const trainN = Math.min(opts.trainN ?? data.train.n, data.train.n);
  checkSteps(hyp, trainN, "the training set of");
  const log = newLog(exp, args, hyp, opts, gpu, { precision, trainN, graph });
  const tune = opts.tune ?? "auto";
  const tuned = await tuneSession(gpu, graph, hyp.opt.batch_size, precision, tune, opts.quiet, pinned);
  log.data.tune = tune;
  if (opts.variants !== undefined) log.data.variants_from = opts.variants;
  log.data.conv_variants = tuned.record;
  log.save();
  const s = new Session(exp, hyp, opts, gpu, precision, data, trainN, log, graph, tuned.tiles);
  const off = onSignals(s as unknown as Session<Hyp>);
  if (!opts.quiet) {
    console.error(
      `adapter: ${a.name} (${a.backend}${a.isCpu ? ", CPU" : ""}), precision ${precision}, ` +
        `${opts.runs} run(s) of ${hyp.opt.train_epochs} epochs on ${trainN} images; log: ${log.path}`,
    );
  }
  printHeader();
  try {
    return await runAll(s);
  } catch (e) {
    s.progress.clear();
    [log.data.status, log.data.error] = ["failed", (e as Error).message];
    log.save();
    console.error(`error: ${(e as Error).message}`);
    console.error(`log so far: ${log.path}`);
    return 1;
  } finally {
    off();
  }
}

/** The body of an experiment file's `if (import.meta.main)`: run, print usage errors in one line, exit. */
export async function main<H extends Hyp>(exp: Experiment<H>): Promise<never> {
  try {
    Deno.exit(await runExperiment(exp));
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
