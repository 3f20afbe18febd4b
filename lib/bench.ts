// `deno task bench`: where the time of a training step goes on this adapter.
//
//   deno task bench [--full] [--json] [--batch-size B] [--repeats R] [--widths a,b,c] [--tiles TM,TN4,TMV,TN4W]
//                   [--variant register|workgroup]   (default: register on CPU adapters, workgroup on GPUs)
//
// Prints (and writes under logs/) the adapter, a ceiling probe (register-blocked matmul and a buffer copy),
// every kernel of a profiled training step at batch 384 (each op in its own timed pass), whole training steps
// in f32 and f16, and evaluation throughput with TTA level 2. Times come from GPU timestamp queries where the
// adapter has them, otherwise from onSubmittedWorkDone around each submit.

import { join } from "node:path";
import { parseArgs } from "node:util";
import { convFlops, type ConvShape, type ConvTiles, type ConvVariant, tilesFor } from "./conv.ts";
import { Evaluator } from "./evaluate.ts";
import { dispatch, Gpu, grid2d, type Op, type Precision, warmUp } from "./gpu.ts";
import { TrainLoader } from "./loader.ts";
import { initParams, Net, NetState, ParamLayout, trainFlopsPerImage } from "./model.ts";
import { writeFileAtomic } from "./atomic.ts";
import { Rng } from "./rng.ts";
import { GpuTimer, STEP_EMA, STEP_WHITEN_BIAS, StepTable, type StepValues } from "./steps.ts";

// ------------------------------------------------------------------------------------------ timing

/** Times each op list as its own pass; returns per-list seconds (median over repeats after warm-up). */
class PassTimer {
  private readonly qs?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;
  private readonly capacity = 4096;

  constructor(readonly gpu: Gpu) {
    if (gpu.timestamps) {
      this.qs = gpu.device.createQuerySet({ type: "timestamp", count: this.capacity });
      this.resolve = gpu.device.createBuffer({
        size: this.capacity * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
    }
  }

  get method(): string {
    return this.qs ? "timestamp-query" : "onSubmittedWorkDone";
  }

  /**
   * Run `groups` in order (after `pre`, untimed, in the same command buffer) and return each group's seconds.
   * `pre` is re-encoded before every group (e.g. copying the Step uniform).
   */
  async time(groups: Op[][], pre?: (enc: GPUCommandEncoder) => void): Promise<number[]> {
    const { gpu } = this;
    if (!this.qs || !this.resolve) {
      const out: number[] = [];
      for (const g of groups) {
        const enc = gpu.device.createCommandEncoder();
        pre?.(enc);
        const pass = enc.beginComputePass();
        for (const op of g) op.encode(pass);
        pass.end();
        await gpu.sync();
        const t = performance.now();
        gpu.device.queue.submit([enc.finish()]);
        await gpu.sync();
        out.push((performance.now() - t) / 1000);
      }
      return out;
    }
    if (groups.length * 2 > this.capacity) throw new Error("bench: too many timed passes in one batch");
    const enc = gpu.device.createCommandEncoder();
    groups.forEach((g, i) => {
      pre?.(enc);
      const pass = enc.beginComputePass({
        timestampWrites: {
          querySet: this.qs!,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      for (const op of g) op.encode(pass);
      pass.end();
    });
    enc.resolveQuerySet(this.qs, 0, groups.length * 2, this.resolve, 0);
    gpu.device.queue.submit([enc.finish()]);
    const t = new BigUint64Array(await gpu.read(this.resolve, 0, groups.length * 16));
    return groups.map((_, i) => Number(t[2 * i + 1] - t[2 * i]) / 1e9);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** (max - min) / median, the spread reported beside each median. */
function spread(xs: number[]): number {
  return xs.length > 1 ? (Math.max(...xs) - Math.min(...xs)) / median(xs) : 0;
}

// ------------------------------------------------------------------------------------------ ceiling probe

const PROBE_WG = 64;

/** c = a * b (f32): `at` is A stored K-major ([K][M]), b [K][N], c [M][N]; M % (4*TMV) == 0, N % (4*TN4) == 0. */
export function matmulOp(
  gpu: Gpu,
  bufs: { at: GPUBuffer; b: GPUBuffer; c: GPUBuffer },
  M: number,
  N: number,
  K: number,
  TMV = 2,
  TN4 = 4,
): Op {
  if (M % (4 * TMV) || N % (4 * TN4)) throw new Error(`matmul probe: unsupported shape ${M}x${N}x${K}`);
  const threads = (M / 4 / TMV) * (N / 4 / TN4);
  const grid = grid2d(Math.ceil(threads / PROBE_WG));
  const pipe = gpu.pipeline("matmul.wgsl", "matmul", { M, N, K, TMV, TN4, WG: PROBE_WG, NWX: grid[0] });
  return dispatch(gpu, "matmul", pipe, [bufs.at, bufs.b, bufs.c], grid);
}

/** dst = src over `bytes` (a multiple of 16). */
export function copyOp(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, bytes: number): Op {
  const grid = grid2d(Math.ceil(bytes / 16 / PROBE_WG));
  const pipe = gpu.pipeline("copy.wgsl", "copy", { L4: bytes / 16, WG: PROBE_WG, NWX: grid[0] });
  return dispatch(gpu, "copy", pipe, [src, dst], grid);
}

async function ceilingProbe(gpu: Gpu, timer: PassTimer, size: number, repeats: number) {
  const [M, N, K] = [size, size, size];
  const at = gpu.buffer(M * K * 4), b = gpu.buffer(K * N * 4), c = gpu.buffer(M * N * 4);
  // The best of a few register-block shapes (rows x columns per invocation) is the practical ceiling.
  const shapes: [number, number][] = [[2, 4], [2, 2], [1, 4], [4, 2]];
  const mmOps = shapes.map(([TMV, TN4]) => matmulOp(gpu, { at, b, c }, M, N, K, TMV, TN4));
  const bytes = 64 << 20; // 64 MiB each way
  const src = gpu.buffer(bytes), dst = gpu.buffer(bytes);
  const cpOp = copyOp(gpu, src, dst, bytes);
  await gpu.checkCompile();
  await warmUp(gpu, [...mmOps, cpOp]);
  await timer.time([...mmOps.map((o) => [o]), [cpOp]]); // warm-up
  const mmT: number[][] = shapes.map(() => []), cpT: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t = await timer.time([...mmOps.map((o) => [o]), [cpOp]]);
    shapes.forEach((_, i) => mmT[i].push(t[i]));
    cpT.push(t[shapes.length]);
  }
  for (const buf of [at, b, c, src, dst]) buf.destroy();
  const best = mmT.reduce((bi, ts, i) => (median(ts) < median(mmT[bi]) ? i : bi), 0);
  return {
    matmul_size: size,
    matmul_tile: { rows: 4 * shapes[best][0], cols: 4 * shapes[best][1] },
    matmul_gflops: (2 * M * N * K) / median(mmT[best]) / 1e9,
    matmul_spread: spread(mmT[best]),
    copy_bytes: bytes,
    copy_gbps: (2 * bytes) / median(cpT) / 1e9,
    copy_spread: spread(cpT),
  };
}

// ------------------------------------------------------------------------------------------ network

interface LayerInfo {
  layer: string;
  shape: ConvShape | { N: number; C: number; classes: number };
  flops: number; // forward FLOPs (each gradient pass costs the same)
}

function layers(widths: [number, number, number], B: number): LayerInfo[] {
  const out: LayerInfo[] = [];
  const ws: ConvShape = { N: B, H: 32, W: 32, CI: 4, CO: 24, KH: 2, KW: 2, PAD: 0 };
  out.push({ layer: "whiten", shape: ws, flops: convFlops(ws) });
  let H = 31, cin = 24;
  widths.forEach((c, i) => {
    const Hp = Math.floor(H / 2);
    const s1: ConvShape = { N: B, H, W: H, CI: cin, CO: c, KH: 3, KW: 3, PAD: 1 };
    const s2: ConvShape = { N: B, H: Hp, W: Hp, CI: c, CO: c, KH: 3, KW: 3, PAD: 1 };
    out.push({ layer: `${i + 2}.conv1`, shape: s1, flops: convFlops(s1) });
    out.push({ layer: `${i + 2}.conv2`, shape: s2, flops: convFlops(s2) });
    H = Hp;
    cin = c;
  });
  out.push({ layer: "7", shape: { N: B, C: cin, classes: 10 }, flops: 2 * B * cin * 10 });
  return out;
}

/** Which layer and pass an op of the step belongs to, from its name (see lib/model.ts). */
function classify(
  name: string,
): { layer: string; pass: "forward" | "input_grad" | "weight_grad" } | undefined {
  if (name === "whiten") return { layer: "whiten", pass: "forward" };
  if (name.startsWith("0.bias.grad")) return { layer: "whiten", pass: "weight_grad" };
  const m = /^(\d\.conv\d)(\.(igrad|wgrad))?/.exec(name);
  if (m) {
    return {
      layer: m[1],
      pass: m[3] === "igrad" ? "input_grad" : m[3] === "wgrad" ? "weight_grad" : "forward",
    };
  }
  if (name.startsWith("linear_forward")) return { layer: "7", pass: "forward" };
  if (name.startsWith("linear_backward_dx")) return { layer: "7", pass: "input_grad" };
  if (name.startsWith("linear_backward_dw")) return { layer: "7", pass: "weight_grad" };
  return undefined;
}

function syntheticSet(n: number, seed: number) {
  const rng = new Rng(seed);
  const images = new Uint8Array(n * 3072);
  for (let i = 0; i < images.length; i++) images[i] = rng.u32() & 255;
  const labels = Uint8Array.from({ length: n }, () => rng.int(10));
  return { images, labels, n };
}

interface StepSetup {
  net: Net;
  evalNet: Net;
  stepOps: Op[];
  table: StepTable;
  layout: ParamLayout;
  state: NetState;
  loader: TrainLoader;
  evaluator: Evaluator;
}

async function setupStep(
  gpu: Gpu,
  p: Precision,
  widths: [number, number, number],
  B: number,
  evalN: number,
  tiles: ConvTiles,
): Promise<StepSetup> {
  const layout = new ParamLayout({ widths, scale: 1 / 9, smoothing: 0.2 });
  const state = new NetState(gpu, layout);
  const rng = new Rng(1);
  const params = initParams(layout, () => rng.float());
  params["0.weight"] = Float32Array.from({ length: 288 }, () => rng.normal() * 0.3);
  state.load(params);
  const net = new Net(gpu, p, layout, state, B, tiles);
  const data = syntheticSet(2 * B, 2);
  const loader = new TrainLoader(gpu, data.images, data.labels, {
    batchSize: B,
    flip: true,
    translate: 2,
    seed: 3,
    precision: p,
    epochs: 1,
  });
  const table = new StepTable(gpu, 1);
  const step: StepValues = {
    step: 0,
    epoch: 0,
    batchStart: 0,
    flags: STEP_WHITEN_BIAS | STEP_EMA,
    lr: 0.002,
    weightDecay: 0.05,
    momentum: 0.85,
    emaDecay: 0.5,
  };
  table.write([step]);
  const labels = gpu.buffer(B * 4), stats = gpu.buffer(8);
  net.buildTrainOps(labels, stats, table.current);
  const stepOps = [loader.gatherOp(table.current, net.x, labels), ...net.forwardOps, ...net.trainOps];
  const evalNet = new Net(gpu, p, layout, state, Math.min(evalN, Net.maxBatch(gpu, p, layout, 2000)), tiles);
  const evaluator = new Evaluator(gpu, p, evalNet, syntheticSet(evalN, 4));
  await gpu.checkCompile();
  return { net, evalNet, stepOps, table, layout, state, loader, evaluator };
}

// ------------------------------------------------------------------------------------------ main

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      full: { type: "boolean" },
      json: { type: "boolean" },
      "batch-size": { type: "string" },
      repeats: { type: "string" },
      widths: { type: "string" },
      tiles: { type: "string" },
      variant: { type: "string" },
      "log-dir": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench [--full] [--json] [--batch-size 384] [--repeats R] [--widths 64,256,256]\n" +
        "                       [--tiles TM,TN4,TMV,TN4W] [--variant register|workgroup] [--log-dir logs]\n" +
        "  --full   more repeats, a larger matmul probe, f16 steps on CPU adapters too\n" +
        "  --json   print only the JSON",
    );
    return;
  }
  const gpu = await Gpu.create();
  const a = gpu.adapter;
  const full = Boolean(values.full);
  const B = Number(values["batch-size"] ?? 384);
  const widths = (values.widths ?? "64,256,256").split(",").map(Number) as [number, number, number];
  // lavapipe runs a batch-384 step in about a minute: one timed step per precision keeps the default under 3 min.
  const repeats = Number(values.repeats ?? (a.isCpu ? (full ? 3 : 1) : full ? 20 : 5));
  const warmup = a.isCpu && !full ? 0 : 2;
  const tiles: ConvTiles = tilesFor(a);
  if (values.variant) {
    if (values.variant !== "register" && values.variant !== "workgroup") {
      throw new Error(`--variant ${values.variant}: expected register or workgroup`);
    }
    tiles.variant = values.variant as ConvVariant;
  }
  if (values.tiles) {
    const [TM, TN4, TMV, TN4W] = values.tiles.split(",").map(Number);
    Object.assign(tiles, { TM, TN4, TMV, TN4W: TN4W ?? tiles.TN4W });
  }
  const say = (s: string) => values.json || console.log(s);
  const timer = new PassTimer(gpu);

  say(
    `adapter: ${a.name} (vendor ${a.vendor}, ${a.backend}${a.isCpu ? ", CPU adapter" : ""}), f16: ${a.f16}`,
  );
  say(`timing: ${timer.method}, ${warmup} warm-up + ${repeats} timed repeat(s)`);
  const ceiling = await ceilingProbe(gpu, timer, full || !a.isCpu ? 2048 : 1024, Math.max(3, repeats));
  say(
    `ceiling: matmul ${ceiling.matmul_size}^3 ${ceiling.matmul_gflops.toFixed(2)} GFLOP/s ` +
      `(spread ${(ceiling.matmul_spread * 100).toFixed(0)}%), copy ${ceiling.copy_gbps.toFixed(2)} GB/s`,
  );

  const precisions: Precision[] = a.f16 && (full || !a.isCpu) ? ["f32", "f16"] : ["f32"];
  const kernels: Record<string, unknown>[] = [];
  const steps: Record<string, unknown>[] = [];
  const evals: Record<string, unknown>[] = [];
  const other: Record<string, unknown>[] = [];
  const infos = layers(widths, B);
  const flopsPerImage = trainFlopsPerImage(new ParamLayout({ widths, scale: 1 / 9, smoothing: 0.2 }));

  for (const p of precisions) {
    // TTA level 2 runs 6 forward passes per image: on a CPU adapter a small set gives the rate in seconds.
    const s = await setupStep(gpu, p, widths, B, a.isCpu ? (full ? 256 : 64) : 2000, tiles);
    const copyStep = (enc: GPUCommandEncoder) =>
      enc.copyBufferToBuffer(s.table.table, 0, s.table.current, 0, 32);
    await warmUp(gpu, s.stepOps);
    await s.evaluator.warm(2);
    for (let w = 0; w < warmup; w++) await timer.time([s.stepOps], copyStep);
    // Profiled steps: every op in its own timed pass.
    const perOp: number[][] = s.stepOps.map(() => []);
    const totals: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t = await timer.time(s.stepOps.map((op) => [op]), copyStep);
      t.forEach((v, i) => perOp[i].push(v));
      totals.push(t.reduce((x, y) => x + y, 0));
    }
    const stepMs = median(totals) * 1000;
    const ips = B / (stepMs / 1000);
    steps.push({
      precision: p,
      batch_size: B,
      ms: stepMs,
      spread: spread(totals),
      images_per_s: ips,
      gflops: (ips * flopsPerImage) / 1e9,
      pct_of_ceiling: ((ips * flopsPerImage) / 1e9 / ceiling.matmul_gflops) * 100,
    });
    // Per layer and pass: the sum of its ops' medians.
    const groups = new Map<string, { layer: string; pass: string; ms: number }>();
    const rest = new Map<string, number>();
    s.stepOps.forEach((op, i) => {
      const ms = median(perOp[i]) * 1000;
      const c = classify(op.name);
      if (c) {
        const key = `${c.layer}|${c.pass}`;
        const g = groups.get(key) ?? { ...c, ms: 0 };
        g.ms += ms;
        groups.set(key, g);
      } else {
        const key = op.name.replace(/\..*$/, "");
        rest.set(key, (rest.get(key) ?? 0) + ms);
      }
    });
    for (const info of infos) {
      for (const pass of ["forward", "input_grad", "weight_grad"]) {
        const g = groups.get(`${info.layer}|${pass}`);
        if (!g) continue;
        // The frozen whitening conv has no weight gradient: only its bias gradient (a sum over pixels).
        const flops = info.layer === "whiten" && pass === "weight_grad" ? B * 31 * 31 * 24 : info.flops;
        const gflops = flops / (g.ms / 1000) / 1e9;
        kernels.push({
          precision: p,
          layer: info.layer,
          pass,
          shape: info.shape,
          ms: g.ms,
          gflops,
          pct_of_ceiling: (gflops / ceiling.matmul_gflops) * 100,
        });
      }
    }
    for (const [name, ms] of rest) {
      other.push({ precision: p, op: name, ms, pct_of_step: (ms / stepMs) * 100 });
    }
    // Evaluation throughput, TTA level 2 (6 forward passes per image).
    const evT: number[] = [];
    for (let r = 0; r < (a.isCpu ? 1 : Math.min(repeats, 3)); r++) {
      const t0 = performance.now();
      const gt = new GpuTimer(gpu);
      await s.evaluator.accuracy(2, gt);
      gt.wall((performance.now() - t0) / 1000);
      await gt.collect();
      evT.push(gt.seconds);
    }
    evals.push({
      precision: p,
      tta_level: 2,
      images: s.evaluator.n,
      images_per_s: s.evaluator.n / median(evT),
    });
    s.loader.destroy();
    s.evaluator.destroy();
  }

  const result = {
    adapter: { ...a, deno: Deno.version.deno },
    timing: timer.method,
    repeats,
    warmup,
    tiles,
    ceiling,
    kernels,
    other_ops: other,
    steps,
    eval: evals,
    flops_per_image: flopsPerImage,
  };
  const path = join(
    values["log-dir"] ?? "logs",
    `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`,
  );
  writeFileAtomic(path, JSON.stringify(result, null, 1));
  if (values.json) {
    console.log(JSON.stringify(result, null, 1));
    return;
  }
  const shapeStr = (s: LayerInfo["shape"]) =>
    "KH" in s ? `${s.N}x${s.H}x${s.W}x${s.CI}->${s.CO} k${s.KH}` : `${s.N}x${s.C}->${s.classes}`;
  console.log("\nkernels (profiled training step, each op in its own pass):");
  console.log(
    "prec | layer    | pass        | shape                         |       ms |  GFLOP/s | % ceiling",
  );
  for (const k of kernels) {
    const info = infos.find((i) => i.layer === k.layer)!;
    console.log(
      `${String(k.precision).padEnd(4)} | ${String(k.layer).padEnd(8)} | ${String(k.pass).padEnd(11)} | ` +
        `${shapeStr(info.shape).padEnd(29)} | ${(k.ms as number).toFixed(2).padStart(8)} | ` +
        `${(k.gflops as number).toFixed(2).padStart(8)} | ${
          (k.pct_of_ceiling as number).toFixed(1).padStart(8)
        }%`,
    );
  }
  console.log("\nother ops:");
  for (const o of other) {
    console.log(
      `${o.precision} ${String(o.op).padEnd(22)} ${(o.ms as number).toFixed(2).padStart(9)} ms ` +
        `${(o.pct_of_step as number).toFixed(1).padStart(5)}% of the step`,
    );
  }
  console.log("\ntraining steps:");
  for (const s of steps) {
    console.log(
      `${s.precision} batch ${s.batch_size}: ${(s.ms as number).toFixed(1)} ms/step ` +
        `(spread ${((s.spread as number) * 100).toFixed(0)}%), ${
          (s.images_per_s as number).toFixed(1)
        } img/s, ` +
        `${(s.gflops as number).toFixed(2)} GFLOP/s = ${
          (s.pct_of_ceiling as number).toFixed(1)
        }% of the probe`,
    );
  }
  for (const e of evals) {
    console.log(
      `${e.precision} evaluation, TTA 2: ${(e.images_per_s as number).toFixed(1)} img/s (${e.images} images)`,
    );
  }
  console.log(`\n${path}`);
}

if (import.meta.main) await main();
