// The convolution autotuner: for each (layer shape, pass, precision) of a network, time the candidate kernel
// variants (lib/nn/conv_variants.ts candidateVariants) on the adapter at hand, keep the fastest, and cache
// the choice in a JSON file keyed by the adapter (name, vendor, architecture, driver description), the Deno
// version and the SHA-256 of the kernel files, so a later run on the same machine reuses it.
//
//   --tune auto   (default) reuse the cache; on a GPU, tune what it lacks and save it; on a CPU adapter (each
//                 trial costs seconds there) use the cached or default choice
//   --tune off    the default variants, no cache
//   --tune force  tune everything now, on any adapter, and rewrite the cache entry
//
// The cache: $AIRBENCH_DATA/tune-cache.json when set, else the project's data/tune-cache.json. Timing is
// injected (TimeFn), so the choice, the key and the cache logic are tested without a GPU clock.

import { createHash } from "node:crypto";
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { ROOT } from "../root.ts";
import { type ConvPass, type ConvShape, outSize, transposedShape } from "./conv_base.ts";
import {
  choiceKey,
  convForwardWith,
  convInputGradWith,
  type ConvTiles,
  convWeightGradWith,
  defaultVariant,
} from "./conv.ts";
import {
  candidateVariants,
  fitVariant,
  type KernelVariant,
  kindFiles,
  parseVariantId,
  variantId,
  variantProblem,
} from "./conv_variants.ts";
import { winogradShape } from "./winograd.ts";
import { type AdapterReport } from "../gpu/adapter.ts";
import { type Gpu, type Op, warmUp } from "../gpu/gpu.ts";
import { includesOf, type Precision } from "../gpu/kernels.ts";
import type { Graph } from "./module.ts";
import { median } from "../gpu/probe.ts";
import { GpuTimer } from "../gpu/timer.ts";

export type TuneMode = "auto" | "off" | "force";
export const TUNE_MODES: TuneMode[] = ["auto", "off", "force"];

/** What a cached choice is valid for. */
export interface TuneKey {
  adapter: string;
  vendor: string;
  architecture: string;
  driver: string;
  deno: string;
  /** SHA-256 over the kernel files a variant's speed depends on (KERNEL_FILES, names and contents). */
  kernels: string;
}

/** One tuning problem: a convolution shape, a pass and the activation precision. */
export interface TuneJob {
  shape: ConvShape;
  pass: ConvPass;
  precision: Precision;
}

export interface Candidate {
  variant: string;
  ms: number;
}

export interface TuneEntry {
  variant: string; // the chosen variant's id
  candidates: Candidate[]; // every candidate timed (ms; Infinity as null in JSON: failed to compile or run)
}

export interface TuneCacheFile {
  version: 1;
  entries: { key: TuneKey; choices: Record<string, TuneEntry> }[];
}

/** The choice of one job and where it came from. */
export interface TuneResult {
  variant: KernelVariant;
  candidates: Candidate[];
  source: "default" | "cache" | "tuned";
}

/** Milliseconds of one variant on one job (the real one: gpuTimeFn). */
export type TimeFn = (job: TuneJob, v: KernelVariant) => Promise<number>;

/** The kernel files whose text the cache key hashes (every conv variant kind's; with their includes). */
export const KERNEL_FILES: readonly string[] = kindFiles();

/**
 * SHA-256 (hex) over the names and texts of the kernel files and of every file they include (lib/gpu/gpu.ts
 * includesOf), read from `dir` (default kernels/).
 */
export function kernelsHash(dir = join(ROOT, "kernels"), files: readonly string[] = KERNEL_FILES): string {
  const h = createHash("sha256");
  const all = new Set<string>();
  const visit = (f: string) => {
    if (all.has(f)) return;
    all.add(f);
    for (const inc of includesOf(Deno.readTextFileSync(join(dir, f)))) visit(inc);
  };
  files.forEach(visit);
  for (const f of [...all].sort()) {
    h.update(`${f}\n`);
    h.update(Deno.readFileSync(join(dir, f)));
    h.update("\n");
  }
  return h.digest("hex");
}

export function tuneKey(a: AdapterReport, kernels: string, deno = Deno.version.deno): TuneKey {
  return {
    adapter: a.name,
    vendor: a.vendor,
    architecture: a.architecture,
    driver: a.driver ?? a.name,
    deno,
    kernels,
  };
}

function sameKey(a: TuneKey, b: TuneKey): boolean {
  return a.adapter === b.adapter && a.vendor === b.vendor && a.architecture === b.architecture &&
    a.driver === b.driver && a.deno === b.deno && a.kernels === b.kernels;
}

/** The cache entry key of a job, e.g. "f32|weight_grad|384x32x32x24->64 k3 p1". */
export function jobKey(j: TuneJob): string {
  const s = j.shape;
  return `${j.precision}|${j.pass}|${s.N}x${s.H}x${s.W}x${s.CI}->${s.CO} k${s.KH}x${s.KW} p${s.PAD}`;
}

/**
 * $AIRBENCH_DATA/tune-cache.json, else <project>/data/tune-cache.json. Without permission to read the
 * environment (no --allow-env) the project's cache is used: the cache only saves tuning time, and its entries
 * are keyed by adapter and kernels, so any cache file is safe to read.
 */
export function defaultCachePath(env: (name: string) => string | undefined = (n) => Deno.env.get(n)): string {
  let dir: string | undefined;
  try {
    dir = env("AIRBENCH_DATA");
  } catch { /* no --allow-env: the project's data/ */ }
  return join(dir || join(ROOT, "data"), "tune-cache.json");
}

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * The cache file, its malformed parts dropped (each named through `warn`); a missing file is an empty cache,
 * an unreadable or foreign one is ignored with a warning (and replaced when something is tuned).
 */
function readCache(path: string, warn: (line: string) => void): TuneCacheFile {
  const empty: TuneCacheFile = { version: 1, entries: [] };
  let c: unknown;
  try {
    c = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      warn(`tune cache ${path}: unreadable (${(e as Error).message.split("\n")[0]}); ignoring it`);
    }
    return empty;
  }
  if (!isObject(c) || c.version !== 1 || !Array.isArray(c.entries)) {
    warn(`tune cache ${path}: not a version 1 cache; ignoring it`);
    return empty;
  }
  const entries = c.entries.filter((e) => isObject(e) && isObject(e.key) && isObject(e.choices));
  if (entries.length < c.entries.length) {
    const n = c.entries.length - entries.length;
    warn(`tune cache ${path}: ${n} malformed entr${n === 1 ? "y" : "ies"} ignored`);
  }
  return { version: 1, entries: entries as unknown as TuneCacheFile["entries"] };
}

export interface TunerOptions {
  key: TuneKey;
  mode: TuneMode;
  isCpu: boolean;
  time: TimeFn;
  /** Device limits the candidates must fit (workgroup memory and size). */
  limits: Record<string, number>;
  /** The variant without tuning (lib/nn/conv.ts defaultVariant of the session's tiles). */
  fallback: (job: TuneJob) => KernelVariant;
  path?: string;
  say?: (line: string) => void;
  /** Problems with the cache (default: `say`); printed even when the status lines are not. */
  warn?: (line: string) => void;
}

/** Chooses the variant of each job: from the cache, by timing, or the default (see the top of the file). */
export class Tuner {
  readonly path: string;
  private cache: TuneCacheFile;
  private dirty = false;
  /** Candidate timings run by this tuner (tests count them). */
  trials = 0;

  constructor(readonly o: TunerOptions) {
    this.path = o.path ?? defaultCachePath();
    this.cache = o.mode === "off" ? { version: 1, entries: [] } : readCache(this.path, (l) => this.warn(l));
  }

  private warn(line: string): void {
    (this.o.warn ?? this.o.say)?.(line);
  }

  /** A cached choice that can run this job here, or undefined (having said why it is not used). */
  private cached(job: TuneJob, k: string): TuneResult | undefined {
    const hit = this.entry(false)?.[k];
    if (!isObject(hit)) return undefined;
    let why: string | undefined;
    let variant: KernelVariant | undefined;
    try {
      variant = parseVariantId(String(hit.variant));
      const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
      why = variantProblem(variant, job.pass, s, this.o.limits);
    } catch (e) {
      why = (e as Error).message; // an id this version does not know
    }
    if (why === undefined && variant) {
      const candidates = Array.isArray(hit.candidates) ? hit.candidates : [];
      return { variant, candidates, source: "cache" };
    }
    this.warn(
      `tune cache ${this.path}: ${k}: variant ${JSON.stringify(hit.variant)} cannot run here (${why}); ` +
        (this.tunes ? "tuning it again" : "using the default"),
    );
    return undefined;
  }

  /** Whether jobs missing from the cache are timed now. */
  get tunes(): boolean {
    return this.o.mode === "force" || (this.o.mode === "auto" && !this.o.isCpu);
  }

  private entry(create: boolean): Record<string, TuneEntry> | undefined {
    let e = this.cache.entries.find((x) => sameKey(x.key, this.o.key));
    if (!e && create) {
      e = { key: this.o.key, choices: {} };
      this.cache.entries.push(e);
    }
    return e?.choices;
  }

  async choose(job: TuneJob): Promise<TuneResult> {
    const k = jobKey(job);
    if (this.o.mode === "off") return { variant: this.o.fallback(job), candidates: [], source: "default" };
    if (this.o.mode === "auto") {
      const hit = this.cached(job, k);
      if (hit) return hit;
      if (!this.tunes) return { variant: this.o.fallback(job), candidates: [], source: "default" };
    }
    const cands = candidateVariants(job.pass, this.o.limits);
    // Register blocks shrunk to the shape can coincide: time each distinct variant once.
    const seen = new Map<string, KernelVariant>();
    for (const c of cands) {
      const v = fitVariant(c, job.pass, job.shape);
      seen.set(variantId(v), v);
    }
    const timed: Candidate[] = [];
    let best: KernelVariant | undefined, bestMs = Infinity;
    for (const [id, v] of seen) {
      let ms = Infinity;
      try {
        this.trials++;
        ms = await this.o.time(job, v);
      } catch (e) {
        this.o.say?.(`tune ${k}: ${id} failed: ${(e as Error).message.split("\n")[0]}`);
      }
      if (!Number.isFinite(ms)) ms = Infinity;
      timed.push({ variant: id, ms });
      if (ms < bestMs) [best, bestMs] = [v, ms];
    }
    const variant = best ?? this.o.fallback(job);
    this.o.say?.(
      `tune ${k}: ${timed.map((c) => `${c.variant} ${fmtMs(c.ms)}`).join(", ")} -> ${variantId(variant)}`,
    );
    this.entry(true)![k] = { variant: variantId(variant), candidates: timed };
    this.dirty = true;
    return { variant, candidates: timed, source: "tuned" };
  }

  /** Write the cache when anything was tuned (temp file + rename). */
  save(): void {
    if (!this.dirty) return;
    const json = JSON.stringify(this.cache, (_k, v) => (v === Infinity ? null : v), 1);
    writeFileAtomic(this.path, json);
    this.dirty = false;
  }
}

function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms.toFixed(3)} ms` : "failed";
}

/** The convolution jobs of a network at a batch size: every Conv2d's forward and the gradients it runs. */
export function convJobs(
  graph: Graph,
  batch: number,
  precision: Precision,
): { label: string; job: TuneJob }[] {
  const out: { label: string; job: TuneJob }[] = [];
  for (const n of graph.nodes) {
    if (n.layer.type !== "Conv2d") continue;
    const inp = graph.tensors[n.inputs[0]].shape, o = graph.tensors[n.output].shape;
    const wspec = n.layer.params.find((p) => p.name === "weight");
    if (!wspec) continue;
    const k = wspec.torchShape[2];
    const shape: ConvShape = {
      N: batch,
      H: inp.H,
      W: inp.W,
      CI: inp.C,
      CO: o.C,
      KH: k,
      KW: k,
      PAD: (o.H - inp.H + k - 1) / 2,
    };
    out.push({ label: n.label, job: { shape, pass: "forward", precision } });
    if (graph.tensors[n.output].requiresGrad && wspec.role === "param") {
      out.push({ label: n.label, job: { shape, pass: "weight_grad", precision } });
    }
    if (n.wantInput[0]) out.push({ label: n.label, job: { shape, pass: "input_grad", precision } });
  }
  return out;
}

/** Per layer and pass: the chosen variant id and the candidates' times (the run log, the bench). */
export type VariantRecord = Record<
  string,
  Record<string, { variant: string; source: string; candidates: Candidate[] }>
>;

/**
 * Tune (or look up) every convolution of a network and return `tiles` with the per-layer choices, and the
 * record of them. Jobs of identical shape share one choice.
 */
export async function tuneNetwork(
  tuner: Tuner,
  tiles: ConvTiles,
  graph: Graph,
  batch: number,
  precision: Precision,
): Promise<{ tiles: ConvTiles; record: VariantRecord }> {
  const choices: Record<string, KernelVariant> = { ...(tiles.choices ?? {}) };
  const record: VariantRecord = {};
  const memo = new Map<string, TuneResult>();
  for (const { label, job } of convJobs(graph, batch, precision)) {
    const k = jobKey(job);
    let r = memo.get(k);
    if (!r) {
      r = await tuner.choose(job);
      memo.set(k, r);
    }
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    const fitted = fitVariant(r.variant, job.pass, s);
    // a default that is not the tiles' own (cpuDefaultOf) is a choice too
    const plain = fitVariant(defaultVariant(tiles, job.pass, s), job.pass, s);
    if (r.source !== "default" || variantId(fitted) !== variantId(plain)) {
      choices[`${label}|${job.pass}`] = r.variant;
    }
    (record[label] ??= {})[job.pass] = {
      variant: variantId(fitted),
      source: r.source,
      candidates: r.candidates,
    };
  }
  tuner.save();
  return { tiles: { ...tiles, choices }, record };
}

/**
 * The variants a run log recorded (its `conv_variants`) as the choices of `tiles` for the same network: what
 * `--variants LOG` (and so `deno task reproduce`) runs, whatever the tuning cache holds now. Throws naming
 * the layer and pass when the record lacks one of the network's convolutions, names an unknown variant, or,
 * given the device's `limits`, one that cannot run on that layer's shape there (lib/nn/conv_variants.ts
 * variantProblem).
 */
export function variantsFromRecord(
  logged: VariantRecord,
  tiles: ConvTiles,
  graph: Graph,
  batch: number,
  precision: Precision,
  limits?: Record<string, number>,
): { tiles: ConvTiles; record: VariantRecord } {
  const choices: Record<string, KernelVariant> = { ...(tiles.choices ?? {}) };
  const record: VariantRecord = {};
  for (const { label, job } of convJobs(graph, batch, precision)) {
    const id = logged[label]?.[job.pass]?.variant;
    if (typeof id !== "string") {
      throw new Error(`no kernel variant for layer ${label}, ${job.pass} (the logged network differs)`);
    }
    let v: KernelVariant;
    try {
      v = parseVariantId(id);
    } catch {
      throw new Error(`layer ${label}, ${job.pass}: unknown kernel variant ${JSON.stringify(id)}`);
    }
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    const why = limits && variantProblem(v, job.pass, s, limits);
    if (why) throw new Error(`layer ${label}, ${job.pass}: kernel variant ${id} cannot run here: ${why}`);
    choices[choiceKey(label, job.pass)] = v;
    (record[label] ??= {})[job.pass] = { variant: id, source: "log", candidates: [] };
  }
  return { tiles: { ...tiles, choices }, record };
}

/** The tuner's fallback: the session tiles' default variant of a job. */
export function fallbackOf(tiles: ConvTiles): (job: TuneJob) => KernelVariant {
  return (job) => {
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    return fitVariant(defaultVariant(tiles, job.pass, s), job.pass, s);
  };
}

/**
 * What lavapipe measured fastest for the 3x3 "same" convolutions (README, "Winograd"): F(4x4,3x3) in every
 * pass.
 */
const CPU_WINOGRAD: Record<ConvPass, KernelVariant> = {
  forward: { kind: "winograd", MT: 4, TM: 8, TN4: 2 },
  input_grad: { kind: "winograd", MT: 4, TM: 8, TN4: 2 },
  weight_grad: { kind: "winograd", MT: 4, TM: 8, TN4: 4 },
};

/**
 * The default of a job without tuning on a CPU adapter under --tune auto: CPU_WINOGRAD for the 3x3 "same"
 * convolutions, the tiles' default (fallbackOf) for the others. --tune off keeps fallbackOf everywhere (the
 * direct kernels, and their bits).
 */
export function cpuDefaultOf(tiles: ConvTiles): (job: TuneJob) => KernelVariant {
  const direct = fallbackOf(tiles);
  return (job) => {
    if (!winogradShape(job.shape)) return direct(job);
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    return fitVariant(CPU_WINOGRAD[job.pass], job.pass, s);
  };
}

/**
 * The real timing: the job's ops on random inputs (fresh buffers), compiled and warmed up, then `warmup`
 * untimed and `repeats` timed runs with the GpuTimer (timestamp queries where the adapter has them); the
 * median in ms. A variant that fails to compile or validate throws (the tuner records it as failed).
 */
export function gpuTimeFn(
  gpu: Gpu,
  o: { warmup?: number; repeats?: number; tiles?: ConvTiles } = {},
): TimeFn {
  const warmup = o.warmup ?? 1, repeats = o.repeats ?? 3;
  return async (job, v) => {
    const s = job.shape, p = job.precision;
    const { HO, WO } = outSize(s);
    const ab = p === "f16" ? 2 : 4;
    const bufs: GPUBuffer[] = [];
    const buf = (bytes: number, fill = true) => {
      const b = gpu.buffer(bytes, "tune");
      if (fill) {
        // small random-ish values in both precisions: repeating f16 pairs of 0.25
        gpu.write(b, new Uint32Array(Math.ceil(bytes / 4)).fill(p === "f16" ? 0x34003400 : 0x3e800000));
      }
      bufs.push(b);
      return b;
    };
    const x = buf(s.N * s.H * s.W * s.CI * ab), y = buf(s.N * HO * WO * s.CO * ab);
    const w = buf(s.KH * s.KW * s.CI * s.CO * 4), b = buf(s.CO * 4);
    const dw = buf(s.KH * s.KW * s.CI * s.CO * 4, false), db = buf(s.CO * 4, false);
    const opts = {
      WG: o.tiles?.WG,
      splitTarget: o.tiles?.splitTarget,
      subgroups: o.tiles?.subgroups ?? gpu.adapter.subgroups,
    };
    gpu.device.pushErrorScope("validation");
    let ops: Op[] = [];
    let popped = false;
    try {
      ops = job.pass === "forward"
        ? [convForwardWith(gpu, p, s, { x, w, b, y }, v, "tune")]
        : job.pass === "input_grad"
        ? convInputGradWith(gpu, p, s, { dy: y, w, dx: x }, v, opts, "tune")
        : convWeightGradWith(gpu, p, s, { x, dy: y, dw, db }, v, opts, "tune");
      await gpu.checkCompile();
      popped = true;
      const err = await gpu.device.popErrorScope();
      if (err) throw new Error(err.message);
      const timer = new GpuTimer(gpu);
      try {
        await warmUp(gpu, ops);
        for (let i = 0; i < warmup; i++) await timer.time([{ ops }]);
        const t = await timer.time(Array.from({ length: repeats }, () => ({ ops })));
        return median(t) * 1000;
      } finally {
        timer.destroy();
      }
    } finally {
      if (!popped) await gpu.device.popErrorScope();
      for (const x of bufs) x.destroy();
    }
  };
}
