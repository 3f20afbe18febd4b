// Training in a browser page with the experiment file's own network and loop: the page hands over the
// experiment (main.ts's `experiment`), a command line (the page's configuration as main.ts flags), the
// CIFAR-10 arrays and the kernel texts; this builds what lib/cli/experiment.ts's runExperiment builds (the
// Session, minus the file system, the terminal and the tuner's cache) and runs the experiment's trainRun
// with lib/train/session.ts's `Run` class, as Deno does. Same parser, same kernels, same schedule, same log
// keys.
//
// No Deno APIs here: the node: built-ins the library imports come from web/node_shim.js in a page.

import type { Cifar10, CifarSplit } from "../lib/data/cifar_batches.ts";
import { parseCommandLine } from "../lib/io/flags.ts";
import type { BaseHyp } from "../lib/io/hyp.ts";
import {
  checkedStepsPerRun,
  type Experiment,
  type ExperimentLog,
  Run,
  runPrecision,
  Session,
  startLog,
  trainRuns,
} from "../lib/train/session.ts";
import { Gpu } from "../lib/gpu/gpu.ts";
import { INPUT_SHAPE } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import { formatDuration } from "../lib/report/console.ts";
import { type LineChartOptions, PALETTE, percentFormat, type Series } from "../lib/report/charts.ts";
import { testNote } from "../lib/report/html.ts";
import type { Fingerprint } from "../lib/io/runlog.ts";
import { encodeSafetensors } from "../lib/io/safetensors.ts";
import { pageVariants } from "../lib/nn/tune_session.ts";

/** What the page sees while training. */
export interface BrowserHooks {
  /** The log after every change (status, each epoch row, the end). */
  onLog?(log: ExperimentLog): void;
  /** Per-step training loss and accuracy (of the batch), as the steps' statistics are read back. */
  onSteps?(run: number, steps: { step: number; loss: number; acc: number }[]): void;
  /** After each submitted chunk of steps: where the run is and the time spent training (pauses excluded). */
  onProgress?(p: { run: number; step: number; total: number; trainSeconds: number; what: string }): void;
  /** A status line (compiling, evaluating, ...). */
  say?(line: string): void;
}

export interface BrowserRunOptions {
  /** kernels/<file> texts, registered with Gpu.defineSource. */
  kernels: Record<string, string>;
  /** The experiment file's path and text (the log's `experiment` and `code`). */
  experimentPath: string;
  code: string;
  fingerprint?: Fingerprint | null;
  hooks?: BrowserHooks;
  /** An existing device (tests); else Gpu.create(). */
  gpu?: Gpu;
}

export interface BrowserResult {
  log: ExperimentLog;
  /** safetensors bytes of each finished run (PyTorch state-dict names), by run index. */
  weights: Uint8Array[];
  /** Predicted class of every test image of the last finished run (with its TTA level), and the split. */
  predictions?: Uint8Array;
  test: CifarSplit;
}

/** A running page session: pause / resume between submits, and the result when done. */
export class BrowserTraining {
  private paused = false;
  private resume?: () => void;
  private wait?: Promise<void>;
  private pauseStart = 0;
  /** Milliseconds spent paused (not counted in training time). */
  pausedMs = 0;
  private gpuError = "";
  readonly done: Promise<BrowserResult>;
  log?: ExperimentLog;

  constructor(exp: Experiment<BaseHyp>, args: string[], data: Cifar10, readonly o: BrowserRunOptions) {
    this.done = this.train(exp, args, data);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stop after the current submit (the GPU finishes what it has); `resume()` goes on from there. */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.pauseStart = performance.now();
    this.wait = new Promise((r) => this.resume = r);
  }

  continue(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pausedMs += performance.now() - this.pauseStart;
    this.resume?.();
  }

  /** Between submits: wait while paused; fail with the GPU's own words after an uncaptured error. */
  private async gate(): Promise<void> {
    if (this.paused) await this.wait;
    if (this.gpuError) throw new Error(this.gpuError);
  }

  private async train(exp: Experiment<BaseHyp>, args: string[], data: Cifar10): Promise<BrowserResult> {
    const o = this.o, hooks = o.hooks ?? {};
    const about = { title: exp.title, file: o.experimentPath };
    const { hyp, opts } = parseCommandLine(args, exp.hyp, { ...exp.defaults, quiet: true }, about);
    opts.quiet = true; // no console lines from Run (the page shows its own)
    let graph: Graph;
    try {
      graph = new Graph(exp.makeNet(hyp), INPUT_SHAPE);
    } catch (e) {
      const widths = hyp.net.widths.join(",");
      throw new Error(`the network of ${o.experimentPath} (widths ${widths}): ${(e as Error).message}`);
    }
    const trainN = Math.min(opts.trainN ?? data.train.n, data.train.n);
    checkedStepsPerRun(hyp, trainN);

    const gpu = await this.pageGpu(hooks);
    const a = gpu.adapter;
    const precision = runPrecision(a, opts.precision);

    const log = startLog({
      experiment: o.experimentPath,
      argv: args,
      code: o.code,
      fingerprint: o.fingerprint ?? { commit: null, dirty: null, files: {} },
      hyp,
      opts,
      trainN,
      testOf: data.test.n,
      adapter: a,
      host: { browser: navigator.userAgent },
      precision,
      graph,
    });
    this.log = log;
    const save = () => hooks.onLog?.(log);
    save();

    const tuned = await pageVariants(gpu, graph, hyp.opt.batch_size, precision);
    log.tune = "off";
    log.conv_variants = tuned.record;

    hooks.say?.("building the network");
    // opts.quiet: the session's Progress writes nothing (a page has no stderr).
    const saved = { path: "(page)", data: log, save };
    const s = new Session(exp, hyp, opts, gpu, precision, data, trainN, saved, graph, tuned.tiles);
    const weights: Uint8Array[] = [];
    let predictions: Uint8Array | undefined;
    try {
      await trainRuns(s, {
        start: (r) => {
          this.watch(r, r.run, s, hooks);
          hooks.say?.(`run ${r.run}: compiling and training`);
        },
        trained: async (r, tensors) => {
          const entries = Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32" as const, ...t }]);
          weights[r.run] = encodeSafetensors(Object.fromEntries(entries), {
            format: "pt",
            seed: String(r.seed),
          });
          hooks.say?.(`run ${r.run}: predictions for the confusion matrix`);
          predictions = await s.evaluator.predictions(hyp.net.tta_level);
        },
      });
    } catch (e) {
      [log.status, log.error] = ["failed", (e as Error).message];
      save();
      throw e;
    }
    return { log, weights, predictions, test: s.test };
  }

  /** The device (o.gpu or a new one) with the kernels, GPU errors caught, and reads that wait while paused. */
  private async pageGpu(hooks: BrowserHooks): Promise<Gpu> {
    hooks.say?.("requesting the WebGPU device");
    const gpu = this.o.gpu ?? await Gpu.create();
    for (const [file, text] of Object.entries(this.o.kernels)) gpu.defineSource(file, text);
    gpu.device.addEventListener("uncapturederror", (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      const oom = (ev as GPUUncapturedErrorEvent).error instanceof GPUOutOfMemoryError;
      this.gpuError ||= oom ? `GPU out of memory: ${msg}` : `GPU error: ${msg}`;
    });
    // Pauses happen where the Run reads statistics back (between submits), and do not count as training time.
    const read = gpu.readF32.bind(gpu), rawRead = gpu.read.bind(gpu);
    gpu.readF32 = async (...a: Parameters<Gpu["readF32"]>) => (await this.gate(), read(...a));
    gpu.read = async (...a: Parameters<Gpu["read"]>) => (await this.gate(), rawRead(...a));

    return gpu;
  }

  /** Live statistics and progress from a Run's own progress line (called after each submitted chunk). */
  private watch(r: Run<BaseHyp>, run: number, s: Session<BaseHyp>, hooks: BrowserHooks) {
    let readTo = 0;
    const bs = s.hyp.opt.batch_size;
    const total = s.stepsPerRun;
    let trainMs = 0, last = -1, pausedAt = this.pausedMs;
    // The run's time counts without pauses when the adapter has no timestamp queries (wall-clock spans).
    const wall = r.timer.wall.bind(r.timer);
    r.timer.wall = (seconds: number) => {
      const p = (this.pausedMs - pausedAt) / 1000;
      pausedAt = this.pausedMs;
      wall(Math.max(0, seconds - p));
    };
    (s as { progress: { update(t: string): void; clear(): void } }).progress = {
      update: (what: string) => {
        const step = s.where.step;
        const now = performance.now() - this.pausedMs;
        if (step > readTo) {
          if (last >= 0) trainMs += now - last;
          const from = readTo;
          readTo = step;
          // The statistics of the steps just run (the GPU has them: the Run awaited them already).
          s.gpu.readF32(s.step.stats, from * 8, (step - from) * 2).then((st) => {
            const rows = [];
            for (let i = 0; i < step - from; i++) {
              rows.push({ step: from + i + 1, loss: st[2 * i] / bs, acc: st[2 * i + 1] / bs });
            }
            hooks.onSteps?.(run, rows);
          }).catch(() => {/* the run itself reports GPU failures */});
        }
        last = now;
        hooks.onProgress?.({ run, step, total, trainSeconds: trainMs / 1000, what });
      },
      clear: () => {
        last = -1; // evaluation is not training time
      },
    };
  }
}

/** main.ts flags from the page's configuration (URL parameters or the form), in the CLI's spelling. */
export const PAGE_FLAGS: Record<string, string> = {
  widths: "widths",
  epochs: "epochs",
  train_n: "train-n",
  test_n: "test-n",
  batch_size: "batch-size",
  tta: "tta",
  seed: "seed",
  runs: "runs",
  lr: "lr",
  precision: "precision",
};

/**
 * The page's default settings: a quick run that clearly learns in about two minutes on a CPU adapter
 * (measured in the README's "quick run"); the form's "recipe" button fills the experiment's own defaults
 * instead.
 */
export const QUICK_RUN: Record<string, string> = {
  widths: "16,32,32",
  train_n: "5000",
  test_n: "1000",
  epochs: "3",
  batch_size: "64",
  lr: "6",
  tta: "0",
};
/** What the quick settings reached here (README), shown next to the form. */
export const QUICK_NOTE = "quick settings: about 47% test accuracy (test 1000 of 10000; main.ts, seed 0: " +
  "47.10%) in about 2 minutes on an unshared 2-core CPU without a GPU (lavapipe); a GPU takes seconds. " +
  "Recipe settings: the experiment's own (the benchmark's figure; hours on a CPU).";

export function pageArgs(config: Record<string, string | undefined>): string[] {
  const args: string[] = [];
  for (const [k, flag] of Object.entries(PAGE_FLAGS)) {
    const v = config[k];
    if (v !== undefined && v !== "") args.push(`--${flag}`, v);
  }
  return args;
}

/** The page's "accuracy per epoch" chart: x is the epoch as the table numbers it, y spans 0..100%. */
export function accuracyChart(log?: Partial<ExperimentLog>): LineChartOptions {
  const acc: Series[] = [];
  for (const r of log?.runs ?? []) {
    if (!r) continue;
    const color = PALETTE[r.run % PALETTE.length];
    const pts = (key: string) => r.epochs.map((e) => [Number(e.epoch), Number(e[key])] as [number, number]);
    acc.push({ name: `run ${r.run} test`, color, points: pts("val_acc") });
    acc.push({
      name: `run ${r.run} train batch`,
      color,
      points: pts("train_acc"),
      dash: "5 3",
      opacity: 0.6,
    });
  }
  const note = testNote(log?.config as { testN?: number; testOf?: number } | undefined);
  return {
    title: `Accuracy per epoch${note ? ` (${note})` : ""}`,
    xLabel: "epoch (as in the table)",
    yLabel: "accuracy (%)",
    series: acc,
    yFormat: percentFormat,
    xInteger: true,
    yInclude: [0, 1],
  };
}

/**
 * The page's status line after a chunk: the Run's own words until a step has been timed (compiling, the first
 * step, evaluating), then the step, img/s and the ETA of the remaining training of every run.
 */
export function statusLine(
  p: { run: number; step: number; total: number; trainSeconds: number; what: string },
  batchSize: number,
  runs: number,
): string {
  if (!/ step \d/.test(p.what) || p.step === 0 || !(p.trainSeconds > 0)) return p.what;
  const perStep = p.trainSeconds / p.step;
  const left = ((p.total - p.step) + (runs - 1 - p.run) * p.total) * perStep;
  return `run ${p.run} · step ${p.step}/${p.total} · ${(batchSize / perStep).toFixed(1)} img/s · ` +
    `ETA ${formatDuration(left)} (training)`;
}
