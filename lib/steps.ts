// Per-step values on the GPU, and encoding many training steps into one submit.
//
// Every step's `Step` struct (kernels/common.wgsl) is written once into a table; before each step's compute
// pass the encoder copies that entry into the small uniform buffer the kernels bind. The host therefore never
// waits inside an epoch: it only reads the per-step loss/accuracy stats at the end of a chunk.

import type { Gpu, Op, Pass } from "./gpu.ts";

/** Per-step scalars by slot (Step.vals in kernels/common.wgsl): each optimizer group's lr, ... */
export const STEP_SLOTS = 16;
export const STEP_BYTES = 32 + STEP_SLOTS * 4;
export const STEP_WHITEN_BIAS = 1;
export const STEP_EMA = 2;

export interface StepValues {
  step: number;
  epoch: number;
  batchStart: number;
  flags: number;
  lr: number;
  weightDecay: number;
  momentum: number;
  emaDecay: number;
  /** Slot values (at most STEP_SLOTS; the rest are 0): kernels read them with step_value(st, slot). */
  values?: number[];
}

export function packSteps(steps: StepValues[]): ArrayBuffer {
  const buf = new ArrayBuffer(steps.length * STEP_BYTES);
  const u = new Uint32Array(buf), f = new Float32Array(buf);
  const words = STEP_BYTES / 4;
  steps.forEach((s, i) => {
    const o = i * words;
    const values = s.values ?? [];
    if (values.length > STEP_SLOTS) {
      throw new Error(
        `step ${s.step}: ${values.length} slot values exceed the ${STEP_SLOTS} slots of a Step`,
      );
    }
    f.set(values, o + 8);
    u[o] = s.step;
    u[o + 1] = s.epoch;
    u[o + 2] = s.batchStart;
    u[o + 3] = s.flags;
    f[o + 4] = s.lr;
    f[o + 5] = s.weightDecay;
    f[o + 6] = s.momentum;
    f[o + 7] = s.emaDecay;
  });
  return buf;
}

/** The table of all steps and the uniform the kernels read the current one from. */
export class StepTable {
  readonly table: GPUBuffer;
  readonly current: GPUBuffer;

  constructor(readonly gpu: Gpu, readonly capacity: number) {
    this.table = gpu.buffer(capacity * STEP_BYTES, "steps.table");
    this.current = gpu.device.createBuffer({
      size: STEP_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "steps.current",
    });
  }

  write(steps: StepValues[]): void {
    if (steps.length > this.capacity) {
      throw new Error(`${steps.length} steps exceed the table (${this.capacity})`);
    }
    this.gpu.write(this.table, new Uint8Array(packSteps(steps)));
  }
}

/**
 * The one GPU timer: spans of passes timed with timestamp queries where the adapter has them (a span starts
 * at the beginning of one pass and ends at the end of another), else wall-clock time around synced submits.
 */
export class GpuTimer {
  private qs?: GPUQuerySet;
  private resolve?: GPUBuffer;
  private pending: number[] = []; // query pair indices written but not yet read, in order
  private next = 0;
  static readonly CAPACITY = 2048; // pairs (4096 queries, WebGPU's largest query set)
  /** Total of every span collected (and of wall() time without timestamp queries). */
  seconds = 0;

  constructor(readonly gpu: Gpu) {
    if (gpu.timestamps) {
      this.qs = gpu.device.createQuerySet({ type: "timestamp", count: GpuTimer.CAPACITY * 2 });
      this.resolve = gpu.device.createBuffer({
        size: GpuTimer.CAPACITY * 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
    }
  }

  get method(): string {
    return this.qs ? "timestamp-query" : "onSubmittedWorkDone";
  }

  /** Timestamp writes for a pass that starts (begin) and/or ends (end) a timed span. */
  writes(begin: boolean, end: boolean): GPUComputePassTimestampWrites | undefined {
    if (!this.qs || (!begin && !end)) return undefined;
    if (this.pending.length === GpuTimer.CAPACITY) {
      throw new Error(`GpuTimer: more than ${GpuTimer.CAPACITY} spans pending; collect() them first`);
    }
    const pair = this.next;
    const w: GPUComputePassTimestampWrites = { querySet: this.qs };
    if (begin) w.beginningOfPassWriteIndex = pair * 2;
    if (end) {
      w.endOfPassWriteIndex = pair * 2 + 1;
      this.pending.push(pair);
      this.next = (this.next + 1) % GpuTimer.CAPACITY;
    }
    return w;
  }

  /** Without timestamp queries, wall-clock seconds around synced submits stand in for GPU time. */
  wall(seconds: number): void {
    if (!this.qs) this.seconds += seconds;
  }

  /** Resolve the spans ended so far (call at a sync point); returns their seconds in order. */
  async collect(): Promise<number[]> {
    if (!this.qs || !this.resolve || this.pending.length === 0) return [];
    const enc = this.gpu.device.createCommandEncoder();
    enc.resolveQuerySet(this.qs, 0, GpuTimer.CAPACITY * 2, this.resolve, 0);
    this.gpu.device.queue.submit([enc.finish()]);
    const t = new BigUint64Array(await this.gpu.read(this.resolve));
    const spans = this.pending.map((pair) => Number(t[pair * 2 + 1] - t[pair * 2]) / 1e9);
    this.pending = [];
    for (const s of spans) this.seconds += s;
    return spans;
  }

  destroy(): void {
    this.qs?.destroy();
    this.resolve?.destroy();
  }

  /** Seconds of each pass, each timed on its own (bench). Without timestamps: one synced submit per pass. */
  async time(passes: Pass[]): Promise<number[]> {
    if (!this.qs) {
      const out: number[] = [];
      for (const p of passes) {
        await this.gpu.sync();
        const t = performance.now();
        this.gpu.submit([p]);
        await this.gpu.sync();
        out.push((performance.now() - t) / 1000);
      }
      return out;
    }
    const out: number[] = [];
    for (let i = 0; i < passes.length; i += GpuTimer.CAPACITY) {
      const chunk = passes.slice(i, i + GpuTimer.CAPACITY);
      this.gpu.submit(chunk.map((p) => ({ ...p, timestampWrites: this.writes(true, true) })));
      out.push(...await this.collect());
    }
    return out;
  }
}

/**
 * Encode steps [from, to) into one command buffer and submit it: per step, copy its Step entry into the
 * uniform, then one compute pass with all the step's ops. With a timer, the chunk is one timed span.
 */
export function submitSteps(
  gpu: Gpu,
  table: StepTable,
  from: number,
  to: number,
  ops: Op[],
  timer?: GpuTimer,
): void {
  const passes: Pass[] = [];
  for (let s = from; s < to; s++) {
    passes.push({
      ops,
      before: (enc) => enc.copyBufferToBuffer(table.table, s * STEP_BYTES, table.current, 0, STEP_BYTES),
      timestampWrites: timer?.writes(s === from, s === to - 1),
    });
  }
  gpu.submit(passes);
}
