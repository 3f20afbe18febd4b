// `deno task bench`: where the time of a training step goes on this adapter.
//
//   deno task bench [--full] [--json] [--batch-size B] [--repeats R] [--widths a,b,...] [--experiment FILE]
//                   [--tiles TM,TN4,TMV,TN4W] [--variant register|tiled] [--log-dir DIR]
//                   [--tune auto|off|force] [--report [--report-args="..."]]
//
// The network is the experiment's own declaration (main.ts by default): every layer of it is measured by
// name. Prints (and writes under logs/) the adapter, a ceiling probe (register-blocked matmul and a buffer
// copy), every op of a profiled training step (each op in its own timed pass) by layer and pass, whole
// training steps (dispatches, host encode time, GPU time) in f32 and f16, and evaluation throughput with TTA
// level 2. Times come from GPU timestamp queries where the adapter has them, else from synced submits.
// Conv kernels: each layer and pass runs the variant lib/nn/tune.ts chose (--tune, as in main.ts); the table
// shows every candidate's time and the choice. --report (implies --full): then a timed training run of the
// experiment (its defaults, --runs 1, plus --report-args), summarised with the bench as one JSON under logs/.

import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { writeFileAtomic } from "../io/atomic.ts";
import { convertFlag, parseCommandLine, parseFlags, UsageError } from "../io/flags.ts";
import type { BaseHyp } from "../io/hyp.ts";
import { type ConvTiles, defaultVariant, tilesFor } from "../nn/conv.ts";
import { type ConvPass, transposedShape } from "../nn/conv_base.ts";
import { convMultiplies, type KindName, kindNames, variantProblem } from "../nn/conv_variants.ts";
import { checkFits } from "./experiment.ts";
import { tuneSession } from "../nn/tune_session.ts";
import { convJobs, TUNE_MODES, type TuneMode, type VariantRecord } from "../nn/tune.ts";
import { checkWritable } from "../io/runlog.ts";
import { Evaluator } from "../train/evaluate.ts";
import type { Experiment } from "../train/session.ts";
import { Gpu, type Op, warmUp } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import { TrainLoader } from "../data/loader.ts";
import { initParams, INPUT_SHAPE, Net } from "../nn/model.ts";
import { Graph, nodeFlops } from "../nn/module.ts";
import { ceilingProbe, median, spread } from "../gpu/probe.ts";
import { Rng } from "../data/rng.ts";
import { STEP_SLOTS, StepTable } from "../gpu/steps.ts";
import { GpuTimer } from "../gpu/timer.ts";
import type { TrainStep } from "../train/train_step.ts";
import { Trainer } from "../train/trainer.ts";

interface BenchArgs {
  full: boolean;
  json: boolean;
  batch: number;
  widths?: number[];
  repeats?: number;
  tiles?: number[];
  variant?: KindName;
  logDir: string;
  experiment: string;
  tune: TuneMode;
  report: boolean;
  reportArgs: string[];
}

/** --variant: the conv variant kinds a session's tiles can default to (lib/nn/conv_variants.ts). */
const DEFAULT_KINDS = kindNames(true);

const USAGE =
  "usage: deno task bench [--full] [--json] [--batch-size 384] [--repeats R] [--widths 64,256,256]\n" +
  "                       [--experiment main.ts] [--tiles TM,TN4,TMV,TN4W] [--log-dir logs]\n" +
  `                       [--variant ${DEFAULT_KINDS.join("|")}] [--tune auto|off|force]\n` +
  '                       [--report [--report-args="..."]]\n' +
  "  --full   more repeats, a larger matmul probe, f16 steps on CPU adapters too\n" +
  "  --json   print only the JSON\n" +
  "  --variant the conv kernels' default kind (register on CPU adapters, tiled on GPUs; --tiles: its blocks)\n" +
  "  --tune   conv kernel variants as in main.ts: auto (tune on GPUs, cached; CPU adapters: Winograd for 3x3),\n" +
  "           off (the direct kernels), force (time every candidate now)\n" +
  "  --report --full, then one timed training run of the experiment (--runs 1 and --report-args), and\n" +
  "           logs/gpu-report-*.json: adapter, variants, bench, run times, accuracy, img/s, GFLOP/s per layer";

const BENCH_OPTIONS = {
  full: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean" },
  "batch-size": { type: "string" },
  repeats: { type: "string" },
  widths: { type: "string" },
  tiles: { type: "string" },
  variant: { type: "string" },
  "log-dir": { type: "string" },
  experiment: { type: "string" },
  tune: { type: "string" },
  report: { type: "boolean" },
  "report-args": { type: "string" },
} as const;

/**
 * The bench's flags, converted and checked by lib/io/flags.ts's rules (one UsageError naming the flag: a flag
 * given twice, a value of the wrong kind). Exported for tests. Undefined for --help.
 */
export function parseBenchArgs(args: string[]): BenchArgs | undefined {
  // --report-args takes flags as its value ("--report-args '--epochs 4'"): pass it joined, so that the value
  // is not read as an option.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--report-args" && i + 1 < args.length) joined.push(`--report-args=${args[++i]}`);
    else joined.push(args[i]);
  }
  const v = parseFlags(joined, BENCH_OPTIONS);
  if (v.help) return undefined;
  const get = (name: string, kind: "posint" | "widths" | "string" | "choice", choices?: string[]) => {
    const raw = v[name];
    return typeof raw === "string" ? convertFlag({ name, kind, choices }, raw) : undefined;
  };
  const tiles = v.tiles === undefined ? undefined : String(v.tiles).split(",");
  if (tiles && (tiles.length < 3 || tiles.length > 4)) {
    throw new UsageError(`--tiles ${JSON.stringify(v.tiles)}: expected TM,TN4,TMV[,TN4W]`);
  }
  return {
    tune: (get("tune", "choice", TUNE_MODES) ?? "auto") as TuneMode,
    report: Boolean(v.report),
    reportArgs: v["report-args"] ? String(v["report-args"]).split(/\s+/).filter(Boolean) : [],
    full: Boolean(v.full) || Boolean(v.report),
    json: Boolean(v.json),
    batch: (get("batch-size", "posint") ?? 384) as number,
    widths: get("widths", "widths") as number[] | undefined,
    repeats: get("repeats", "posint") as number | undefined,
    tiles: tiles?.map((t) => convertFlag({ name: "tiles", kind: "posint" }, t) as number),
    variant: get("variant", "choice", DEFAULT_KINDS) as KindName | undefined,
    logDir: (get("log-dir", "string") ?? "logs") as string,
    experiment: (get("experiment", "string") ?? "main.ts") as string,
  };
}

/**
 * Everything checkable before the GPU: the log folder, the experiment file, its network at these flags, and
 * --report-args (as the experiment will parse them). Returns the experiment and the hyperparameters.
 */
async function checkBenchArgs(args: BenchArgs): Promise<{ exp: Experiment<BaseHyp>; h: BaseHyp }> {
  try {
    checkWritable("--log-dir", args.logDir, "dir");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let exp: Experiment<BaseHyp>;
  try {
    exp = await loadExperiment(args.experiment);
  } catch (e) {
    throw new UsageError(`--experiment ${args.experiment}: ${(e as Error).message.split("\n")[0]}`);
  }
  const h = exp.hyp.defaults;
  h.opt.batch_size = args.batch;
  if (args.widths) h.net.widths = args.widths;
  try {
    new Graph(exp.makeNet(h), INPUT_SHAPE);
  } catch (e) {
    throw new UsageError(`the network of --widths ${h.net.widths.join(",")}: ${(e as Error).message}`);
  }
  if (args.report) {
    try {
      parseCommandLine(reportArgv(args).slice(3), exp.hyp, exp.defaults);
    } catch (e) {
      throw new UsageError(`--report-args: ${(e as Error).message}`);
    }
  }
  return { exp, h };
}

/** The tiles of --tiles / --variant on this adapter; each layer's default variant must run here. */
function benchTiles(gpu: Gpu, args: BenchArgs, graph: Graph): ConvTiles {
  const tiles: ConvTiles = { ...tilesFor(gpu.adapter), ...(args.variant ? { variant: args.variant } : {}) };
  if (args.tiles) {
    const [TM, TN4, TMV, TN4W] = args.tiles;
    Object.assign(tiles, { TM, TN4, TMV, TN4W: TN4W ?? tiles.TN4W });
  }
  const limits = gpu.device.limits as unknown as Record<string, number>;
  for (const { label, job } of convJobs(graph, args.batch, "f32")) {
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    const why = variantProblem(defaultVariant(tiles, job.pass, s), job.pass, s, limits);
    if (why) {
      const flag = args.tiles ? `--tiles ${args.tiles.join(",")}` : `--variant ${tiles.variant}`;
      throw new UsageError(`${flag}: layer ${label}, ${job.pass}: ${why}`);
    }
  }
  return tiles;
}

function syntheticSet(n: number, seed: number) {
  const rng = new Rng(seed);
  const images = new Uint8Array(n * 3072);
  for (let i = 0; i < images.length; i++) images[i] = rng.u32() & 255;
  const labels = Uint8Array.from({ length: n }, () => rng.int(10));
  return { images, labels, n };
}

interface Setup {
  graph: Graph;
  net: Net;
  step: TrainStep;
  stepOps: Op[];
  table: StepTable;
  loader: TrainLoader;
  evaluator: Evaluator;
  /** Layer (node label or "loss", "optimizer", "loader") and pass of each op of the step. */
  owner: Map<Op, { layer: string; pass: string }>;
}

/** The experiment's network at batch B with random parameters, synthetic data, and one planned step. */
function setupStep(
  gpu: Gpu,
  p: Precision,
  exp: Experiment<BaseHyp>,
  h: BaseHyp,
  evalN: number,
  tiles: ConvTiles,
  graph: Graph = new Graph(exp.makeNet(h), INPUT_SHAPE),
): Setup {
  const B = h.opt.batch_size;
  const trainer = new Trainer(gpu, graph, {
    precision: p,
    batch: B,
    steps: 1,
    loss: exp.loss(h),
    optimizers: exp.optimizers(h),
    tiles,
  });
  const { layout, state, net, table, step } = trainer;
  const rng = new Rng(1);
  const params = initParams(layout, () => rng.float());
  for (const e of layout.entries) {
    if (e.init === "external") params[e.name] = params[e.name].map(() => rng.normal() * 0.3);
  }
  state.load(params);
  const data = syntheticSet(2 * B, 2);
  const loader = new TrainLoader(gpu, data.images, data.labels, {
    batchSize: B,
    flip: true,
    translate: 2,
    seed: 3,
    precision: p,
    epochs: 1,
  });
  // one step with every gate and event on (all of the optimizers' work runs) and every per-step value 0.002
  table.write([{
    step: 0,
    epoch: 0,
    batchStart: 0,
    flags: 0xffffffff,
    values: new Array(STEP_SLOTS).fill(0.002),
  }]);
  const gather = loader.gatherOp(table.current, net.x, step.labels);
  const owner = new Map<Op, { layer: string; pass: string }>([[gather, {
    layer: "loader",
    pass: "forward",
  }]]);
  for (const { node, ops } of net.forwardByNode) {
    for (const op of ops) owner.set(op, { layer: node.label, pass: "forward" });
  }
  for (const { node, ops } of step.backwardByNode) {
    for (const op of ops) owner.set(op, { layer: node.label, pass: op.pass ?? "input_grad" });
  }
  for (const op of step.lossOps) owner.set(op, { layer: "loss", pass: "forward" });
  for (const { opt, ops } of step.optimizerOpsBy) {
    for (const op of ops) owner.set(op, { layer: opt.name, pass: "forward" }); // one row per optimizer
  }
  const evalBatch = Math.min(evalN, Net.maxBatch(gpu, p, graph, 2000));
  const evaluator = new Evaluator(gpu, p, trainer.evalNet(evalBatch), syntheticSet(evalN, 4));
  return { graph, net, step, stepOps: step.ops(gather), table, loader, evaluator, owner };
}

/** Host time to encode one step's passes into a command buffer (not submitted). */
function encodeMs(gpu: Gpu, ops: Op[]): number {
  const t = performance.now();
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const op of ops) op.encode(pass);
  pass.end();
  enc.finish();
  return performance.now() - t;
}

/** Profiled steps (every op in its own timed pass): the median ms of each op and the step totals. */
async function profileStep(gpu: Gpu, timer: GpuTimer, s: Setup, repeats: number, warmup: number) {
  const copyStep = (enc: GPUCommandEncoder) =>
    enc.copyBufferToBuffer(s.table.table, 0, s.table.current, 0, 32);
  await warmUp(gpu, s.stepOps);
  await s.evaluator.warm(2);
  for (let w = 0; w < warmup; w++) await timer.time([{ ops: s.stepOps, before: copyStep }]);
  const perOp: number[][] = s.stepOps.map(() => []);
  const totals: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t = await timer.time(s.stepOps.map((op) => ({ ops: [op], before: copyStep })));
    t.forEach((v, i) => perOp[i].push(v));
    totals.push(t.reduce((x, y) => x + y, 0));
  }
  const encode = median(Array.from({ length: 5 }, () => encodeMs(gpu, s.stepOps)));
  return { opMs: perOp.map((ts) => median(ts) * 1000), totals, encodeMs: encode };
}

/** The per-layer rows (layers with FLOPs: GFLOP/s and % of the probe) and the other ops (% of the step). */
function attribute(
  s: Setup,
  opMs: number[],
  stepMs: number,
  probeGflops: number,
  p: Precision,
  variants: VariantRecord,
) {
  const B = s.net.batch;
  const byKey = new Map<string, { layer: string; pass: string; ms: number }>();
  s.stepOps.forEach((op, i) => {
    const o = s.owner.get(op) ?? { layer: op.name, pass: "forward" };
    const key = `${o.layer}|${o.pass}`;
    const g = byKey.get(key) ?? { ...o, ms: 0 };
    g.ms += opMs[i];
    byKey.set(key, g);
  });
  const kernels: Record<string, unknown>[] = [], other: Record<string, unknown>[] = [];
  const convShapes = new Map(convJobs(s.graph, B, p).map(({ label, job }) => [label, job.shape]));
  for (const g of byKey.values()) {
    const node = s.graph.nodes.find((n) => n.label === g.layer);
    const f = node && nodeFlops(s.graph, node, true);
    const perImage = f
      ? { forward: f.forward, weight_grad: f.weightGrad, input_grad: f.inputGrad }[g.pass] ?? 0
      : 0;
    if (node && f && f.forward > 0) {
      const gflops = perImage > 0 ? (perImage * B) / (g.ms / 1000) / 1e9 : null;
      const shape = node.inputs.map((i) => s.graph.tensors[i].shape)[0];
      kernels.push({
        precision: p,
        layer: g.layer,
        torch: node.layer.torch,
        pass: g.pass,
        shape: `${B}x${shape.H}x${shape.W}x${shape.C}`,
        ms: g.ms,
        gflops,
        pct_of_ceiling: gflops === null ? null : (gflops / probeGflops) * 100,
        variant: variants[g.layer]?.[g.pass]?.variant ?? null,
        // multiplies done (Winograd: fewer than the direct convolution's, which GFLOP/s counts)
        gmul: convShapes.has(g.layer)
          ? convMultiplies(
            convShapes.get(g.layer)!,
            g.pass as ConvPass,
            variants[g.layer]?.[g.pass]?.variant ?? null,
          ) / 1e9
          : null,
        candidates: (variants[g.layer]?.[g.pass]?.candidates ?? []).map((c) => ({
          variant: c.variant,
          ms: Number.isFinite(c.ms) ? c.ms : null,
        })),
      });
    } else {
      const name = node ? `${g.layer} ${node.layer.type}${g.pass === "forward" ? "" : " backward"}` : g.layer;
      other.push({ precision: p, op: name, ms: g.ms, pct_of_step: (g.ms / stepMs) * 100 });
    }
  }
  return { kernels, other };
}

/** Evaluation throughput with TTA level 2 (6 forward passes per image). */
async function evalRate(gpu: Gpu, s: Setup, repeats: number): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    const timer = new GpuTimer(gpu);
    await s.evaluator.accuracy(2, timer);
    timer.wall((performance.now() - t0) / 1000);
    await timer.collect();
    timer.destroy();
    times.push(timer.seconds);
  }
  return s.evaluator.n / median(times);
}

async function loadExperiment(path: string): Promise<Experiment<BaseHyp>> {
  const mod = await import(pathToFileURL(resolve(path)).href);
  if (!mod.experiment) throw new Error("exports no `experiment` (see main.ts)");
  return mod.experiment as Experiment<BaseHyp>;
}

/** One precision's part of the bench: the tuned variants, the profiled step by op, whole steps, evaluation. */
async function measurePrecision(
  gpu: Gpu,
  timer: GpuTimer,
  o: {
    args: BenchArgs;
    exp: Experiment<BaseHyp>;
    h: BaseHyp;
    tiles: ConvTiles;
    p: Precision;
    repeats: number;
    warmup: number;
  },
  ceilingGflops: number,
) {
  const { args, exp, h, p } = o;
  const isCpu = gpu.adapter.isCpu;
  const graph = new Graph(exp.makeNet(h), INPUT_SHAPE);
  const tuned = await tuneSession(gpu, graph, args.batch, p, args.tune, args.json);
  const ptiles: ConvTiles = { ...o.tiles, choices: tuned.tiles.choices };
  const s = setupStep(gpu, p, exp, h, isCpu ? (args.full ? 256 : 64) : 2000, ptiles, graph);
  await gpu.checkCompile();
  const flopsPerImage = s.graph.flopsPerImage(true);
  const prof = await profileStep(gpu, timer, s, o.repeats, o.warmup);
  const stepMs = median(prof.totals) * 1000, ips = args.batch / (stepMs / 1000);
  const gflops = (ips * flopsPerImage) / 1e9;
  const step = {
    precision: p,
    batch_size: args.batch,
    dispatches: s.stepOps.length,
    encode_ms: prof.encodeMs,
    gpu_ms: stepMs,
    ms: stepMs,
    spread: spread(prof.totals),
    images_per_s: ips,
    gflops,
    pct_of_ceiling: (gflops / ceilingGflops) * 100,
  };
  const { kernels, other } = attribute(s, prof.opMs, stepMs, ceilingGflops, p, tuned.record);
  const ttaRate = await evalRate(gpu, s, isCpu ? 1 : Math.min(o.repeats, 3));
  const evaluation = { precision: p, tta_level: 2, images: s.evaluator.n, images_per_s: ttaRate };
  s.loader.destroy();
  s.evaluator.destroy();
  return { record: tuned.record, flopsPerImage, step, kernels, other, eval: evaluation };
}

/** Everything the bench measures, as one JSON-able object. */
async function measure(
  gpu: Gpu,
  args: BenchArgs,
  exp: Experiment<BaseHyp>,
  h: BaseHyp,
  tiles: ConvTiles,
  say: (s: string) => void,
) {
  const a = gpu.adapter;
  // lavapipe runs a batch-384 step in about 15 s: one timed step per precision keeps the default short.
  const repeats = args.repeats ?? (a.isCpu ? (args.full ? 3 : 1) : args.full ? 20 : 5);
  const warmup = a.isCpu && !args.full ? 0 : 2;
  const timer = new GpuTimer(gpu);
  say(
    `adapter: ${a.name} (vendor ${a.vendor}, ${a.backend}${a.isCpu ? ", CPU adapter" : ""}), f16: ${a.f16}`,
  );
  say(
    `timing: ${timer.method}, ${warmup} warm-up + ${repeats} timed repeat(s); experiment ${args.experiment}`,
  );
  const ceiling = await ceilingProbe(gpu, timer, args.full || !a.isCpu ? 2048 : 1024, Math.max(3, repeats));
  say(
    `ceiling: matmul ${ceiling.matmul_size}^3 ${ceiling.matmul_gflops.toFixed(2)} GFLOP/s, copy ${
      ceiling.copy_gbps.toFixed(2)
    } GB/s`,
  );
  const precisions: Precision[] = a.f16 && (args.full || !a.isCpu) ? ["f32", "f16"] : ["f32"];
  const out = {
    kernels: [] as unknown[],
    other_ops: [] as unknown[],
    steps: [] as unknown[],
    eval: [] as unknown[],
  };
  let flopsPerImage = 0;
  const variants: Record<string, VariantRecord> = {};
  for (const p of precisions) {
    const m = await measurePrecision(
      gpu,
      timer,
      { args, exp, h, tiles, p, repeats, warmup },
      ceiling.matmul_gflops,
    );
    variants[p] = m.record;
    flopsPerImage = m.flopsPerImage;
    out.steps.push(m.step);
    out.kernels.push(...m.kernels);
    out.other_ops.push(...m.other);
    out.eval.push(m.eval);
  }
  timer.destroy();
  const adapter = { ...a, deno: Deno.version.deno };
  return {
    adapter,
    experiment: args.experiment,
    timing: timer.method,
    repeats,
    warmup,
    tiles,
    tune: args.tune,
    variants,
    ceiling,
    ...out,
    flops_per_image: flopsPerImage,
  };
}

type BenchResult = Awaited<ReturnType<typeof measure>>;

function printResult(r: BenchResult, path: string) {
  const num = (v: unknown, d = 2, w = 8) => (typeof v === "number" ? v.toFixed(d) : "-").padStart(w);
  console.log("\nlayers (profiled training step, each op in its own pass):");
  console.log(
    "prec | layer        | pass        | input              |       ms |  GFLOP/s | % ceiling |   GMul | variant" +
      "                  | module",
  );
  for (const k of r.kernels as Record<string, unknown>[]) {
    console.log(
      `${String(k.precision).padEnd(4)} | ${String(k.layer).padEnd(12)} | ${String(k.pass).padEnd(11)} | ` +
        `${String(k.shape).padEnd(18)} | ${num(k.ms)} | ${num(k.gflops)} | ${num(k.pct_of_ceiling, 1)}% | ${
          num(k.gmul, 2, 6)
        } | ${String(k.variant ?? "-").padEnd(24)} | ${k.torch}`,
    );
  }
  console.log("\nconv kernel variants (candidates' ms per pass as timed by the tuner; * = chosen):");
  for (const k of r.kernels as Record<string, unknown>[]) {
    const cands = (k.candidates as { variant: string; ms: number | null }[]) ?? [];
    const list = cands.length
      ? cands.map((c) => `${c.variant === k.variant ? "*" : ""}${c.variant} ${num(c.ms, 3, 0)}`).join(", ")
      : "(not tuned: default or cached without times)";
    console.log(
      `${String(k.precision).padEnd(4)} ${String(k.layer).padEnd(12)} ${
        String(k.pass).padEnd(11)
      } ${k.variant}: ${list}`,
    );
  }
  console.log("\nother ops:");
  for (const o of r.other_ops as Record<string, unknown>[]) {
    console.log(
      `${o.precision} ${String(o.op).padEnd(32)} ${num(o.ms, 2, 9)} ms ${
        num(o.pct_of_step, 1, 5)
      }% of the step`,
    );
  }
  console.log("\ntraining steps:");
  for (const s of r.steps as Record<string, number | string>[]) {
    console.log(
      `${s.precision} batch ${s.batch_size}: ${num(s.ms, 1, 0)} ms/step GPU (spread ${
        num(Number(s.spread) * 100, 0, 0)
      }%), ` +
        `${s.dispatches} dispatches, encode ${num(s.encode_ms, 2, 0)} ms, ${
          num(s.images_per_s, 1, 0)
        } img/s, ` +
        `${num(s.gflops, 2, 0)} GFLOP/s = ${num(s.pct_of_ceiling, 1, 0)}% of the probe`,
    );
  }
  for (const e of r.eval as Record<string, number | string>[]) {
    console.log(`${e.precision} evaluation, TTA 2: ${num(e.images_per_s, 1, 0)} img/s (${e.images} images)`);
  }
  console.log(`\n${path}`);
}

/** A usage error: one line naming the flag, exit 2; anything else is rethrown. */
function usageExit(e: unknown): never {
  if (!(e instanceof UsageError)) throw e;
  console.error(`error: ${e.message} (deno task bench --help lists the flags)`);
  Deno.exit(2);
}

async function main() {
  let args: BenchArgs | undefined, checked: { exp: Experiment<BaseHyp>; h: BaseHyp };
  try {
    args = parseBenchArgs(Deno.args);
    if (!args) return console.log(USAGE);
    checked = await checkBenchArgs(args);
  } catch (e) {
    usageExit(e);
  }
  const { exp, h } = checked;
  const gpu = await Gpu.create();
  let tiles: ConvTiles;
  try {
    const graph = new Graph(exp.makeNet(h), INPUT_SHAPE);
    checkFits(gpu, "f32", graph, h);
    tiles = benchTiles(gpu, args, graph);
  } catch (e) {
    usageExit(e);
  }
  const result = await measure(gpu, args, exp, h, tiles, (s) => args.json || console.log(s));
  const path = join(args.logDir, `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileAtomic(path, JSON.stringify(result, null, 1));
  if (args.json) console.log(JSON.stringify(result, null, 1));
  else printResult(result, path);
  if (args.report) await report(args, result, path);
}

/**
 * --report: one timed training run of the experiment (its own defaults, --runs 1, --tune as given, plus
 * --report-args), then logs/gpu-report-*.json: the adapter, the chosen variants, the bench's steps, eval and
 * per-layer GFLOP/s, and the run's time, accuracy and training images per second.
 */
/** The command line of --report's training run: `run -A EXPERIMENT` and the experiment's flags. */
function reportArgv(args: BenchArgs): string[] {
  return [
    "run",
    "-A",
    args.experiment,
    "--runs",
    "1",
    "--tune",
    args.tune,
    "--log-dir",
    args.logDir,
    ...args.reportArgs,
  ];
}

async function report(args: BenchArgs, bench: BenchResult, benchPath: string) {
  const runArgs = reportArgv(args);
  console.error(`report: deno ${runArgs.join(" ")}`);
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), { args: runArgs, stdout: "piped", stderr: "inherit" })
    .output();
  const wall = (performance.now() - t0) / 1000;
  const text = new TextDecoder().decode(out.stdout);
  console.log(text.trimEnd());
  const logPath = text.trim().split("\n").filter((l) => l.endsWith(".json")).pop();
  // deno-lint-ignore no-explicit-any
  let log: any = null;
  try {
    if (logPath) log = JSON.parse(Deno.readTextFileSync(logPath));
  } catch { /* reported below as missing */ }
  const cfg = log?.config ?? {};
  const runs = (log?.runs ?? []).map(
    (
      r: {
        run: number;
        seed: number;
        tta_val_acc?: number;
        total_time_seconds?: number;
        epochs?: Record<string, number>[];
        error?: string;
      },
    ) => {
      const images = (cfg.stepsPerRun ?? 0) * (cfg.opt?.batch_size ?? 0);
      return {
        run: r.run,
        seed: r.seed,
        time_seconds: r.total_time_seconds ?? null,
        tta_val_acc: r.tta_val_acc ?? null,
        val_acc: r.epochs?.length ? r.epochs[r.epochs.length - 1].val_acc : null,
        train_images_per_s: r.total_time_seconds ? images / r.total_time_seconds : null,
        error: r.error,
      };
    },
  );
  const summary = {
    kind: "gpu-report",
    command: `deno task bench --report${
      args.reportArgs.length ? ` --report-args="${args.reportArgs.join(" ")}"` : ""
    }`,
    adapter: bench.adapter,
    tune: args.tune,
    conv_variants: log?.conv_variants ?? bench.variants,
    bench: {
      path: benchPath,
      ceiling: bench.ceiling,
      steps: bench.steps,
      eval: bench.eval,
      layers: (bench.kernels as Record<string, unknown>[]).map((k) => ({
        precision: k.precision,
        layer: k.layer,
        pass: k.pass,
        ms: k.ms,
        gflops: k.gflops,
        variant: k.variant,
      })),
    },
    training: {
      argv: runArgs.slice(2),
      exit_code: out.code,
      wall_seconds: wall,
      log: logPath ?? null,
      status: log?.status ?? "missing",
      precision: log?.precision ?? null,
      runs,
      mean_tta_val_acc: log?.mean ?? null,
      std_tta_val_acc: log?.std ?? null,
    },
  };
  const path = join(args.logDir, `gpu-report-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileAtomic(path, JSON.stringify(summary, null, 1));
  console.log(`report: ${path}`);
}

if (import.meta.main) await main();
