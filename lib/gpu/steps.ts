// Per-step values on the GPU, and encoding many training steps into one submit.
//
// Every step's `Step` struct (kernels/shared/step.wgsl) is written once into a table; before each step's compute
// pass the encoder copies that entry into the small uniform buffer the kernels bind. The host therefore never
// waits inside an epoch: it only reads the per-step loss/accuracy stats at the end of a chunk.

import type { Gpu, Op, Pass } from "./gpu.ts";

/** Per-step scalars by slot (Step.vals in kernels/shared/step.wgsl): each optimizer group's lr, ... */
export const STEP_SLOTS = 16;
export const STEP_BYTES = 16 + STEP_SLOTS * 4;
/** Gates and events per step: one bit each of Step.flags. */
export const STEP_FLAGS = 32;

/** One entry of the GPU step table (the Step struct). */
export interface StepValues {
  step: number;
  epoch: number;
  batchStart: number;
  /** The gate and event bits of this step. */
  flags: number;
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
    f.set(values, o + 4);
    u[o] = s.step;
    u[o + 1] = s.epoch;
    u[o + 2] = s.batchStart;
    u[o + 3] = s.flags;
  });
  return buf;
}

/**
 * One step of an experiment's plan, by name: the per-step values (each optimizer group's lr, the lookahead
 * decay) and the gates and events that are on (the whitening bias trains, a lookahead update). The names are
 * those the experiment's optimizers declare (lib/train/optim.ts); StepSlots turns them into a Step.
 */
export interface PlanStep {
  values: Record<string, number>;
  on?: Record<string, boolean>;
}

/**
 * Where each named per-step value and gate lives in a Step: value names get slots 0, 1, ..., gate names flag
 * bits 1, 2, 4, ... in the order given.
 */
export class StepSlots {
  private readonly slots = new Map<string, number>();
  private readonly bits = new Map<string, number>();

  constructor(values: readonly string[], gates: readonly string[]) {
    for (const v of values) if (!this.slots.has(v)) this.slots.set(v, this.slots.size);
    for (const g of gates) if (!this.bits.has(g)) this.bits.set(g, 2 ** this.bits.size);
    if (this.slots.size > STEP_SLOTS) {
      throw new Error(
        `${this.slots.size} per-step values (${[...this.slots.keys()]}); a Step holds ${STEP_SLOTS}`,
      );
    }
    if (this.bits.size > STEP_FLAGS) {
      throw new Error(`${this.bits.size} gates (${[...this.bits.keys()]}); a Step holds ${STEP_FLAGS} flags`);
    }
  }

  /** The slot of a per-step value. */
  value(name: string): number {
    const s = this.slots.get(name);
    if (s === undefined) throw new Error(`no per-step value "${name}" (declared: ${this.known(this.slots)})`);
    return s;
  }

  /** The flag bit (a mask) of a gate or event. */
  gate(name: string): number {
    const b = this.bits.get(name);
    if (b === undefined) throw new Error(`no gate "${name}" (declared: ${this.known(this.bits)})`);
    return b;
  }

  private known(m: Map<string, number>): string {
    return m.size ? [...m.keys()].join(", ") : "none";
  }

  /**
   * A run's plan as the step table holds it: step s of epoch floor(s / stepsPerEpoch) reads the batch at
   * loader.batchStart(epoch, s % stepsPerEpoch). A name no optimizer declared is an error, and so is a
   * declared value that no step sets (a value a step leaves out is 0 in that step).
   */
  pack(
    plan: readonly PlanStep[],
    loader: { stepsPerEpoch: number; batchStart(epoch: number, batch: number): number },
  ): StepValues[] {
    const set = new Set<string>();
    const out = plan.map((p, step) => {
      const values = new Array<number>(this.slots.size).fill(0);
      for (const [k, v] of Object.entries(p.values)) {
        values[this.value(k)] = v;
        set.add(k);
      }
      let flags = 0;
      for (const [g, on] of Object.entries(p.on ?? {})) {
        const bit = this.gate(g); // a name no optimizer declared is an error even when off
        if (on) flags |= bit;
      }
      const epoch = Math.floor(step / loader.stepsPerEpoch);
      const batchStart = loader.batchStart(epoch, step % loader.stepsPerEpoch);
      return { step, epoch, batchStart, flags: flags >>> 0, values };
    });
    const unset = [...this.slots.keys()].filter((k) => !set.has(k));
    if (plan.length && unset.length) throw new Error(`the plan sets no per-step value ${unset.join(", ")}`);
    return out;
  }
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
