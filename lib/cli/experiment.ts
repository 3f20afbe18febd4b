// What every experiment file shares (main.ts, experiments/*.ts) when run with Deno: the command line, the
// checks made before any expensive work, the GPU, the data, the log file, signals, the runs and the weights.
// The experiment file keeps its hyperparameters, its network and its training loop; the loop is written with
// the steps of a `Run` (lib/train/session.ts, shared with the page: init, loader, plan, train, evaluate,
// log).

import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type Cifar10 } from "../data/cifar_batches.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { parseCommandLine, type RunOptions, UsageError } from "../io/flags.ts";
import type { BaseHyp } from "../io/hyp.ts";
import { DEFAULT_TILES, tilesFor } from "../nn/conv.ts";
import { type VariantRecord, variantsFromRecord } from "../nn/tune.ts";
import { tuneSession } from "../nn/tune_session.ts";
import { ACT_BYTES, Gpu } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import { INPUT_SHAPE, NetState, ParamLayout } from "../nn/model.ts";
import { Graph } from "../nn/module.ts";
import { printHeader } from "../report/console.ts";
import { checkWritable, createLogPath, fingerprint, LogFile } from "../io/runlog.ts";
import { ROOT } from "../root.ts";
import { safetensorsProblem, writeSafetensors } from "../io/safetensors.ts";
import {
  checkedStepsPerRun,
  type Experiment,
  type ExperimentLog,
  runPrecision,
  Session,
  startLog,
  trainRuns,
} from "../train/session.ts";
import { testNote } from "../report/html.ts";

// The experiment files' API: they import it from here.
export type { Experiment, ExperimentLog, RunLog } from "../train/session.ts";
export { Divergence, MAX_STEPS, Run, Session } from "../train/session.ts";

/** The experiment file's path relative to the project root (the log's `experiment`). */
export function experimentPath(url: string): string {
  return relative(ROOT, fileURLToPath(url)).split("\\").join("/");
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
  for (let run = 0; o.saveWeights && run < o.runs; run++) checkReplaceable(weightsPath(o, run));
  checkedStepsPerRun(h, o.trainN ?? 50000, "--train-n");
  let graph: Graph;
  try {
    graph = new Graph(exp.makeNet(h), INPUT_SHAPE);
  } catch (e) {
    const file = experimentPath(exp.url);
    throw new UsageError(
      `the network of ${file} (--widths ${h.net.widths.join(",")}): ${(e as Error).message}`,
    );
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

/** --save-weights may replace a safetensors file (an earlier run's weights), never any other file. */
function checkReplaceable(path: string) {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch {
    return; // not there: checkWritable made sure its folder can be written
  }
  const why = st.isFile ? safetensorsProblem(path) : "not a regular file";
  if (why) {
    throw new UsageError(
      `--save-weights ${path}: exists and is not a safetensors file (${why}); refusing to replace it: ` +
        "remove it or name another file",
    );
  }
}

/**
 * The network of --widths must fit the adapter's buffers at --batch-size: the largest activation of the
 * training batch within one storage binding, the parameters within one buffer. Throws naming the flags.
 */
export function checkFits(gpu: Gpu, precision: Precision, graph: Graph, h: BaseHyp): void {
  const lim = gpu.device.limits, batch = h.opt.batch_size;
  const flags = `--widths ${h.net.widths.join(",")} at --batch-size ${batch}`;
  const perImage = graph.maxTensorBytes(ACT_BYTES[precision]);
  const fit = Math.floor(lim.maxStorageBufferBindingSize / perImage);
  if (fit < batch) {
    throw new UsageError(
      `${flags}: the largest activation takes ${perImage * batch} bytes (${precision}), more than this ` +
        `adapter's maxStorageBufferBindingSize (${lim.maxStorageBufferBindingSize}); ` +
        `use ${fit >= 1 ? `--batch-size ${fit} or less or ` : ""}narrower --widths`,
    );
  }
  const paramBytes = new ParamLayout(graph).sizes.params * 4;
  const maxBytes = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  if (paramBytes > maxBytes) {
    throw new UsageError(
      `--widths ${
        h.net.widths.join(",")
      }: the parameters take ${paramBytes} bytes, more than this adapter's ` +
        `buffer limit (${maxBytes}); use narrower --widths`,
    );
  }
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

/** The data; a bad --data is a usage error (exit 2) naming the flag. */
async function loadData(o: RunOptions): Promise<Cifar10> {
  try {
    if (o.verify) return await loadCifar10({ path: o.data, quiet: o.quiet });
    return await loadCifar10({
      path: o.data,
      quiet: o.quiet,
      expectedSha: null,
      cache: false,
      officialUrl: null,
    });
  } catch (e) {
    if (o.data === undefined) throw e;
    throw new UsageError(`--data ${o.data}: ${(e as Error).message.replace(/^CIFAR-10: /, "")}`);
  }
}

/** The run's log file, created (exclusively) but not yet written: the caller saves it inside its try. */
function newLog<H extends BaseHyp>(
  exp: Experiment<H>,
  args: string[],
  h: H,
  o: RunOptions,
  gpu: Gpu,
  extra: { precision: Precision; trainN: number; testOf: number; graph: Graph },
): LogFile<ExperimentLog> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return new LogFile<ExperimentLog>(
    createLogPath(o.logDir, stamp),
    startLog({
      experiment: experimentPath(exp.url),
      argv: args,
      code: Deno.readTextFileSync(new URL(exp.url)),
      fingerprint: fingerprint(ROOT, experimentPath(exp.url)),
      hyp: h,
      opts: o,
      adapter: gpu.adapter,
      host: { deno: Deno.version.deno },
      ...extra,
    }),
  );
}

/**
 * A failure after the log exists: the log says `failed` and why, and the last lines name it. When the log
 * cannot be rewritten through a temp file (a full disk), it is overwritten in place, which needs no room for
 * a second copy. Returns the exit code.
 */
function recordFailure(log: LogFile<ExperimentLog>, e: unknown): number {
  const message = e instanceof Error ? e.message : String(e);
  [log.data.status, log.data.error] = ["failed", message];
  let unsaved = "";
  try {
    log.save();
  } catch {
    try {
      Deno.writeTextFileSync(log.path, JSON.stringify(log.data, null, 1));
    } catch (e2) {
      unsaved = ` (the failure could not be recorded in it: ${(e2 as Error).message.split("\n")[0]})`;
    }
  }
  console.error(`error: ${message}`);
  console.error(`log so far: ${log.path}${unsaved}`);
  return 1;
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

/** Where --save-weights puts run `run`'s weights: the path itself, or with -runI when runs > 1. */
function weightsPath(o: RunOptions, run: number): string {
  return o.runs > 1 ? o.saveWeights!.replace(/(\.\w+)?$/, `-run${run}$1`) : o.saveWeights!;
}

function saveWeights(s: Session<BaseHyp>, run: number, tensors: Awaited<ReturnType<NetState["read"]>>) {
  const o = s.opts;
  if (!o.saveWeights) return;
  const path = weightsPath(o, run);
  const entries = Object.entries(tensors).map(([k, t]) => [k, { dtype: "F32" as const, ...t }]);
  writeSafetensors(path, Object.fromEntries(entries), { format: "pt", seed: String(o.seed + run) });
  if (!o.quiet) console.error(`weights: ${path}`);
}

/** The runs of a session (lib/train/session.ts trainRuns) with weights files and messages. Returns the exit code. */
async function runAll<H extends BaseHyp>(s: Session<H>): Promise<number> {
  const { finished, failed, mean, std } = await trainRuns(s, {
    trained: (r, tensors) => saveWeights(s as unknown as Session<BaseHyp>, r.run, tensors),
    diverged: (r, message, next) =>
      console.error(`error: run ${r.run} diverged: ${message}${next ? `; continuing with ${next}` : ""}`),
  });
  if (finished) {
    const note = testNote(s.log.data.config);
    console.log(
      `Mean: ${mean.toFixed(4)}  Std: ${std.toFixed(4)}${failed ? ` (${finished} runs)` : ""}` +
        (note ? ` (${note})` : ""),
    );
  }
  console.log(s.log.path);
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
  const precision = runPrecision(gpu.adapter, opts.precision);
  checkFits(gpu, precision, graph, hyp);
  if (pinned) checkPinned(gpu, graph, hyp, precision, opts.variants!, pinned);
  const data = await loadData(opts);
  const trainN = Math.min(opts.trainN ?? data.train.n, data.train.n);
  checkedStepsPerRun(hyp, trainN, "the training set of");
  const log = newLog(exp, args, hyp, opts, gpu, { precision, trainN, testOf: data.test.n, graph });
  let s: Session<H> | undefined, off = () => {};
  try {
    log.save();
    const tune = opts.tune ?? "auto";
    const tuned = await tuneSession(gpu, graph, hyp.opt.batch_size, precision, tune, opts.quiet, pinned);
    log.data.tune = tune;
    if (opts.variants !== undefined) log.data.variants_from = opts.variants;
    log.data.conv_variants = tuned.record;
    log.save();
    s = new Session(exp, hyp, opts, gpu, precision, data, trainN, log, graph, tuned.tiles);
    off = onSignals(s as unknown as Session<BaseHyp>);
    if (!opts.quiet) announce(s);
    printHeader(testNote(log.data.config));
    return await runAll(s);
  } catch (e) {
    s?.progress.clear();
    return recordFailure(log, e);
  } finally {
    off();
  }
}

/** The line that starts the runs: adapter, precision, what trains, and the log. */
function announce<H extends BaseHyp>(s: Session<H>) {
  const a = s.gpu.adapter;
  console.error(
    `adapter: ${a.name} (${a.backend}${a.isCpu ? ", CPU" : ""}), precision ${s.precision}, ` +
      `${s.opts.runs} run(s) of ${s.hyp.opt.train_epochs} epochs on ${s.trainN} images; log: ${s.log.path}`,
  );
}

/** --variants LOG against this adapter's limits and each layer's shape, before the data and the log. */
function checkPinned(
  gpu: Gpu,
  graph: Graph,
  h: BaseHyp,
  precision: Precision,
  path: string,
  pinned: VariantRecord,
) {
  const limits = gpu.device.limits as unknown as Record<string, number>;
  try {
    variantsFromRecord(pinned, tilesFor(gpu.adapter), graph, h.opt.batch_size, precision, limits);
  } catch (e) {
    throw new UsageError(`--variants ${path}: ${(e as Error).message}`);
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
