// Per-step values on the GPU, and encoding many training steps into one submit.
//
// Every step's `Step` struct (kernels/shared/step.wgsl) is written once into a table; before each step's
// compute pass the encoder copies that entry into the small uniform buffer the kernels bind. The host
// therefore never waits inside an epoch: it only reads the per-step loss/accuracy stats at the end of a
// chunk.

import type { Gpu, Op, Pass } from "./gpu.ts";
import type { GpuTimer } from "./timer.ts";

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
 * Encode steps [from, to) into one command buffer and submit it: per step, copy its Step entry into the
 * uniform, then one compute pass with all the step's ops. With a timer (lib/gpu/timer.ts), the chunk is one
 * timed span.
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
