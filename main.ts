// airbench94, BatchNorm-free variant, trained end to end on WebGPU: CIFAR-10 to ~90.6% test accuracy.
// One file per experiment: the hyperparameters are below, the training loop is in trainRun().
//
//   deno run -A main.ts [--runs N] [--epochs E] [--batch-size B] [--widths a,b,c] [--train-n N] [--tta 0|1|2]
//                       [--seed S] [--precision auto|f16|f32] [--data PATH] [--save-weights PATH] [--quiet] ...
// Every run writes to one JSON log under logs/ (code, config, seed, adapter, per-epoch rows).

import { join } from "node:path";
import { type Cifar10, loadCifar10 } from "./lib/cifar.ts";
import { tilesFor } from "./lib/conv.ts";
import { type Hyp, parseCommandLine, type RunOptions, UsageError } from "./lib/cli.ts";
import { Evaluator } from "./lib/evaluate.ts";
import { Gpu, type Precision, warmUp } from "./lib/gpu.ts";
import { TrainLoader } from "./lib/loader.ts";
import { initParams, Net, NetState, ParamLayout, trainFlopsPerImage } from "./lib/model.ts";
import { writeFileAtomic } from "./lib/atomic.ts";
import { formatDuration, meanStd, printHeader, printRow, Progress } from "./lib/report.ts";
import { Rng } from "./lib/rng.ts";
import { writeSafetensors } from "./lib/safetensors.ts";
import { alphaSchedule, decoupledHyperparameters, totalSteps, triangleSchedule } from "./lib/schedule.ts";
import {
  GpuTimer,
  STEP_EMA,
  STEP_WHITEN_BIAS,
  StepTable,
  type StepValues,
  submitSteps,
} from "./lib/steps.ts";
import { whiteningWeights } from "./lib/whiten.ts";

// ---------------------------------------------------------------------------------------------------------
// Hyperparameters (the reference's defaults)

export const hyp: Hyp = {
  opt: {
    train_epochs: 11,
    batch_size: 384,
    lr: 10.0, // learning rate per 1024 examples
    momentum: 0.85,
    weight_decay: 0.001, // weight decay per 1024 examples (decoupled from the learning rate)
    label_smoothing: 0.2,
    whiten_bias_epochs: 3, // how many epochs to train the whitening layer bias before freezing it
  },
  aug: { flip: true, translate: 2 },
  net: { widths: [64, 256, 256], scaling_factor: 1 / 9, tta_level: 2 },
};

const defaults: RunOptions = {
  runs: 25,
  seed: 0,
  precision: "auto",
  logDir: "logs",
  quiet: false,
  verify: true,
};
const WHITEN_IMAGES = 5000; // training images the whitening covariance is estimated from
const WHITEN_EPS = 5e-4;
const CHUNK_SECONDS = 1.0; // aim for submits of about this much GPU work (progress granularity)

// ---------------------------------------------------------------------------------------------------------

interface RunLog {
  run: number;
  seed: number;
  epochs: Record<string, number | string>[];
  tta_val_acc?: number;
  total_time_seconds?: number;
}

/** The per-step values of the recipe: lr schedule, whitening-bias gate and lookahead events. */
export function planSteps(
  h: Hyp,
  loader: Pick<TrainLoader, "stepsPerEpoch" | "batchStart">,
  total: number,
): StepValues[] {
  const { lrSgd, sgdWeightDecay } = decoupledHyperparameters({
    lr: h.opt.lr,
    momentum: h.opt.momentum,
    weightDecay: h.opt.weight_decay,
    batchSize: h.opt.batch_size,
  });
  const lrSchedule = triangleSchedule(total, 0.2, 0.07, 0.23);
  const alpha = alphaSchedule(total);
  const steps: StepValues[] = [];
  for (let s = 0; s < total; s++) {
    const epoch = Math.floor(s / loader.stepsPerEpoch);
    const done = s + 1; // current_steps after this step's optimizer update
    let flags = epoch < h.opt.whiten_bias_epochs ? STEP_WHITEN_BIAS : 0;
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
      momentum: h.opt.momentum,
      emaDecay,
    });
  }
  return steps;
}

async function trainRun(
  ctx: { gpu: Gpu; precision: Precision; data: Cifar10; trainN: number; layout: ParamLayout },
  parts: {
    state: NetState;
    net: Net;
    evaluator: Evaluator;
    labels: GPUBuffer;
    stats: GPUBuffer;
    table: StepTable;
  },
  run: number,
  seed: number,
  progress: Progress,
  onEpoch: (log: RunLog) => void,
): Promise<RunLog> {
  const { gpu, precision, data, trainN, layout } = ctx;
  const { state, net, evaluator, labels, stats, table } = parts;
  const log: RunLog = { run, seed, epochs: [] };
  const rng = new Rng(seed);
  const timer = new GpuTimer(gpu);
  const images = data.train.images.subarray(0, trainN * 3072);

  // Whitening init from the first 5000 training images (host, float64 + Jacobi): part of the timed work.
  const t0 = performance.now();
  const params = initParams(
    layout,
    (() => {
      const r = rng.fork("init");
      return () => r.float();
    })(),
  );
  const { weight } = whiteningWeights(images, Math.min(WHITEN_IMAGES, trainN), WHITEN_EPS);
  params["0.weight"] = Float32Array.from(weight);
  state.load(params);
  const hostSeconds = (performance.now() - t0) / 1000;

  const loader = new TrainLoader(gpu, images, data.train.labels.subarray(0, trainN), {
    batchSize: hyp.opt.batch_size,
    flip: hyp.aug.flip,
    translate: hyp.aug.translate,
    seed: rng.fork("data").u32(),
    precision,
    epochs: Math.ceil(hyp.opt.train_epochs),
  });
  const spe = loader.stepsPerEpoch;
  const total = totalSteps(spe, hyp.opt.train_epochs);
  table.write(planSteps(hyp, loader, total));
  const stepOps = [loader.gatherOp(table.current, net.x, labels), ...net.forwardOps, ...net.trainOps];
  await gpu.checkCompile();
  if (run === 0) {
    // Drivers that compile shaders on first use would charge it to the timed steps: compile now.
    await warmUp(gpu, stepOps);
    await evaluator.warm(0);
    await evaluator.warm(hyp.net.tta_level);
    state.load(params); // the warm-up dispatches touched the state
  }

  let chunk = 1, step = 0;
  try {
    for (let epoch = 0; epoch < Math.ceil(hyp.opt.train_epochs); epoch++) {
      const end = Math.min(total, (epoch + 1) * spe);
      // ---- training: chunks of steps per submit; stats are read once per chunk, never per step
      while (step < end) {
        const to = Math.min(end, step + chunk);
        const t = performance.now();
        submitSteps(gpu, table, step, to, stepOps, timer);
        const s = await gpu.readF32(stats, step * 8, (to - step) * 2);
        for (let i = 0; i < to - step; i++) {
          if (!Number.isFinite(s[2 * i])) {
            throw new Error(`loss is ${s[2 * i]} at step ${step + i} (epoch ${epoch}); stopping this run`);
          }
        }
        timer.wall((performance.now() - t) / 1000); // counts only without timestamp queries
        const perStep = (performance.now() - t) / 1000 / (to - step);
        step = to;
        chunk = Math.max(1, Math.min(spe, Math.round(CHUNK_SECONDS / perStep)));
        const eta = perStep * (total - step);
        progress.update(
          `run ${run} epoch ${epoch} step ${step}/${total}  ${
            (hyp.opt.batch_size / perStep).toFixed(1)
          } img/s` +
            `  ETA ${formatDuration(eta)} (training)`,
        );
      }
      await timer.collect();
      // ---- evaluation (not timed): the last batch's loss/accuracy and the test accuracy without TTA
      const last = await gpu.readF32(stats, (end - 1) * 8, 2);
      const valAcc = await evaluator.accuracy(
        0,
        undefined,
        (d, n) => progress.update(`run ${run} evaluating ${d}/${n}`),
      );
      progress.clear();
      const row = {
        run: epoch === 0 ? run : "",
        epoch,
        train_loss: last[0] / hyp.opt.batch_size,
        train_acc: last[1] / hyp.opt.batch_size,
        val_acc: valAcc,
        total_time_seconds: hostSeconds + timer.seconds,
      };
      printRow(row);
      log.epochs.push({ ...row, run });
      onEpoch(log);
    }
    // ---- final evaluation with test-time augmentation (timed, as the reference)
    const tTta = performance.now();
    const ttaAcc = await evaluator.accuracy(
      hyp.net.tta_level,
      timer,
      (d, n) => progress.update(`run ${run} TTA ${d}/${n}`),
    );
    timer.wall((performance.now() - tTta) / 1000);
    await timer.collect();
    progress.clear();
    log.tta_val_acc = ttaAcc;
    log.total_time_seconds = hostSeconds + timer.seconds;
    printRow({ epoch: "eval", tta_val_acc: ttaAcc, total_time_seconds: log.total_time_seconds }, true);
  } finally {
    loader.destroy();
  }
  return log;
}

async function main() {
  let hypParsed: Hyp, opts: RunOptions;
  try {
    const parsed = parseCommandLine(Deno.args, hyp, defaults);
    if (parsed.help) {
      console.log(parsed.help);
      return;
    }
    [hypParsed, opts] = [parsed.hyp, parsed.opts];
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
  Object.assign(hyp, hypParsed);

  const gpu = await Gpu.create();
  const a = gpu.adapter;
  const precision: Precision = opts.precision === "auto"
    ? (a.f16 && !a.isCpu ? "f16" : "f32")
    : opts.precision;
  if (precision === "f16" && !a.f16) {
    throw new Error("--precision f16: this adapter has no shader-f16; use f32");
  }
  const data = opts.verify ? await loadCifar10({ path: opts.data, quiet: opts.quiet }) : await loadCifar10({
    path: opts.data,
    quiet: opts.quiet,
    expectedSha: null,
    cache: false,
    officialUrl: null,
  });
  const trainN = Math.min(opts.trainN ?? data.train.n, data.train.n);
  if (trainN < hyp.opt.batch_size) {
    throw new UsageError(`--train-n ${trainN} is smaller than --batch-size ${hyp.opt.batch_size}`);
  }

  const layout = new ParamLayout({
    widths: hyp.net.widths,
    scale: hyp.net.scaling_factor,
    smoothing: hyp.opt.label_smoothing,
  });
  const state = new NetState(gpu, layout);
  const tiles = tilesFor(a); // register blocking on CPU adapters, workgroup-memory tiles on GPUs
  const net = new Net(gpu, precision, layout, state, hyp.opt.batch_size, tiles);
  const evalBatch = Net.maxBatch(gpu, precision, layout, Math.min(2000, data.test.n));
  const evalNet = new Net(gpu, precision, layout, state, evalBatch, tiles);
  const evaluator = new Evaluator(gpu, precision, evalNet, data.test);
  const maxSteps = totalSteps(Math.floor(trainN / hyp.opt.batch_size), hyp.opt.train_epochs);
  const table = new StepTable(gpu, maxSteps);
  const labels = gpu.buffer(hyp.opt.batch_size * 4, "train.labels");
  const stats = gpu.buffer(maxSteps * 8, "train.stats"); // f32 [step][loss sum, correct]
  net.buildTrainOps(labels, stats, table.current);
  const parts = { state, net, evaluator, labels, stats, table };

  const logPath = join(opts.logDir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const log = {
    code: Deno.readTextFileSync(new URL(import.meta.url)),
    config: { ...structuredClone(hyp), ...opts, trainN, stepsPerRun: maxSteps },
    adapter: { ...a, deno: Deno.version.deno },
    precision,
    conv_variant: tiles.variant,
    status: "running",
    runs: [] as RunLog[],
    mean: NaN,
    std: NaN,
    error: undefined as string | undefined,
  };
  const save = () => writeFileAtomic(logPath, JSON.stringify(log, null, 1));

  if (!opts.quiet) {
    console.error(
      `adapter: ${a.name} (${a.backend}${a.isCpu ? ", CPU" : ""}), precision ${precision}, ` +
        `${opts.runs} run(s) of ${hyp.opt.train_epochs} epochs on ${trainN} images`,
    );
    if (a.isCpu) {
      // Rough estimate (lavapipe sustains about 4.5 GFLOP/s per core); the progress line shows the measured ETA.
      const flops = trainFlopsPerImage(layout) * hyp.opt.batch_size * maxSteps +
        trainFlopsPerImage(layout) / 3 * data.test.n *
          (Math.ceil(hyp.opt.train_epochs) + 2 ** hyp.net.tta_level);
      const rate = 4.5e9 * navigator.hardwareConcurrency;
      console.error(
        `CPU adapter: expect about ${formatDuration(flops / rate)} per run ` +
          `(${opts.runs} run(s): ${formatDuration((opts.runs * flops) / rate)}). For a quick run use e.g. ` +
          `--runs 1 --train-n 10000 --epochs 4 --widths 32,64,64 --batch-size 128 --lr 3 --tta 0`,
      );
    }
  }

  const progress = new Progress(opts.quiet);
  printHeader();
  const ctx = { gpu, precision, data, trainN, layout };
  try {
    for (let run = 0; run < opts.runs; run++) {
      const runLog = await trainRun(ctx, parts, run, opts.seed + run, progress, (partial) => {
        log.runs[run] = partial;
        save();
      });
      log.runs[run] = runLog;
      if (opts.saveWeights) {
        const path = opts.runs > 1 ? opts.saveWeights.replace(/(\.\w+)?$/, `-run${run}$1`) : opts.saveWeights;
        const tensors = await state.read();
        writeSafetensors(
          path,
          Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32", ...t }])),
          { format: "pt", seed: String(opts.seed + run) },
        );
        if (!opts.quiet) console.error(`weights: ${path}`);
      }
      save();
    }
  } catch (e) {
    progress.clear();
    log.status = "failed";
    log.error = (e as Error).message;
    save();
    console.error(`error: ${(e as Error).message}`);
    console.error(`log so far: ${logPath}`);
    Deno.exit(1);
  }
  const { mean, std } = meanStd(log.runs.map((r) => r.tta_val_acc!));
  [log.mean, log.std, log.status] = [mean, std, "done"];
  save();
  console.log(`Mean: ${mean.toFixed(4)}  Std: ${std.toFixed(4)}`);
  console.log(logPath);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
