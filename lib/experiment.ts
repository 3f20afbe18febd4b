// What every experiment file shares (main.ts, experiments/*.ts) when run with Deno: the command line, the
// checks made before any expensive work, the GPU, the data, the log file, signals, the runs and the weights.
// The experiment file keeps its hyperparameters, its network and its training loop; the loop is written with
// the steps of a `Run` (lib/run.ts, shared with the page: init, loader, plan, train, evaluate, log).

import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type Cifar10, loadCifar10 } from "./cifar.ts";
import { parseCommandLine, type RunOptions, UsageError } from "./cli.ts";
import type { BaseHyp } from "./hyp.ts";
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
import { Gpu, type Precision } from "./gpu.ts";
import { INPUT_SHAPE, NetState } from "./model.ts";
import { Graph } from "./nn.ts";
import { meanStd, printHeader } from "./report.ts";
import { checkWritable, createLogPath, fingerprint, LogFile, ROOT, stateDigest } from "./runlog.ts";
import { writeSafetensors } from "./safetensors.ts";
import { totalSteps } from "./schedule.ts";
import {
  Divergence,
  type Experiment,
  type ExperimentLog,
  MAX_STEPS,
  Run,
  runPrecision,
  Session,
  startLog,
} from "./run.ts";

// The experiment files' API: they import it from here.
export type { Experiment, ExperimentLog, RunLog } from "./run.ts";
export { Divergence, MAX_STEPS, Run, Session } from "./run.ts";

/** The experiment file's path relative to the project root (the log's `experiment`). */
export function experimentPath(url: string): string {
  return relative(ROOT, fileURLToPath(url)).split("\\").join("/");
}

/** Steps per run must stay within what the plan, the step table and the stats buffer hold. */
function checkSteps(h: BaseHyp, trainN: number, flag: string) {
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
function preflight<H extends BaseHyp>(
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

function newLog<H extends BaseHyp>(
  exp: Experiment<H>,
  args: string[],
  h: H,
  o: RunOptions,
  gpu: Gpu,
  extra: { precision: Precision; trainN: number; graph: Graph },
): LogFile<ExperimentLog> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const log = new LogFile<ExperimentLog>(
    createLogPath(o.logDir, stamp),
    startLog({
      experiment: experimentPath(exp.url),
      argv: args,
      code: Deno.readTextFileSync(new URL(exp.url)),
      fingerprint: fingerprint(),
      hyp: h,
      opts: o,
      adapter: gpu.adapter,
      host: { deno: Deno.version.deno },
      ...extra,
    }),
  );
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
function onSignals(s: Session<BaseHyp>): () => void {
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

function saveWeights(s: Session<BaseHyp>, run: number, tensors: Awaited<ReturnType<NetState["read"]>>) {
  const o = s.opts;
  if (!o.saveWeights) return;
  const path = o.runs > 1 ? o.saveWeights.replace(/(\.\w+)?$/, `-run${run}$1`) : o.saveWeights;
  const entries = Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32" as const, ...t }]);
  writeSafetensors(path, Object.fromEntries(entries), { format: "pt", seed: String(o.seed + run) });
  if (!o.quiet) console.error(`weights: ${path}`);
}

/** The runs of a session; a diverging run is recorded and the next seed runs. Returns the exit code. */
async function runAll<H extends BaseHyp>(s: Session<H>): Promise<number> {
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
      saveWeights(s as unknown as Session<BaseHyp>, run, tensors);
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
export async function runExperiment<H extends BaseHyp>(
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
  const precision = runPrecision(a, opts.precision);
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
  const off = onSignals(s as unknown as Session<BaseHyp>);
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
export async function main<H extends BaseHyp>(exp: Experiment<H>): Promise<never> {
  try {
    Deno.exit(await runExperiment(exp));
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
