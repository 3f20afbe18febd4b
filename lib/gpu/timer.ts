// GPU time: spans of compute passes (training chunks, evaluation, bench's per-pass table).

import type { Gpu, Pass } from "./gpu.ts";

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
