// WebGPU device layer: the device (lib/gpu/adapter.ts chooses the adapter), kernel pipelines (compiled and
// cached by lib/gpu/kernels.ts), buffers, and the one submit path with its dispatch helpers.

import { type AdapterReport, type DeviceOptions, openDevice } from "./adapter.ts";
import { type Consts, KernelCache, type Precision } from "./kernels.ts";

/**
 * gpu.poison's fill word: a NaN read as one f32 (0x7fc07e00) and as two f16 (0x7e00 and 0x7fc0 are both NaN),
 * so an unwritten output is NaN at every precision.
 */
export const POISON_WORD = 0x7fc07e00;

export class Gpu {
  readonly device: GPUDevice;
  readonly adapter: AdapterReport;
  readonly f16: boolean;
  readonly timestamps: boolean;
  private kernels: KernelCache;
  private lost = false;
  lostReason = "";

  private constructor(device: GPUDevice, report: AdapterReport) {
    this.device = device;
    this.adapter = report;
    this.f16 = report.f16;
    this.timestamps = report.timestampQuery;
    this.kernels = new KernelCache(device, report.f16);
    device.lost.then((info) => {
      this.lost = true;
      this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  static async create(opts: DeviceOptions = {}): Promise<Gpu> {
    const { device, report } = await openDevice(opts);
    return new Gpu(device, report);
  }

  /** Throws when the device was lost, naming the reason. */
  checkAlive(): void {
    if (this.lost) throw new Error(`GPU device lost (${this.lostReason})`);
  }

  /** Register kernel text under a file name instead of reading kernels/<file> (tests, generated kernels). */
  defineSource(file: string, text: string): void {
    this.kernels.defineSource(file, text);
  }

  /** Compile (once) the entry point `entry` of kernels/`file` with the given constants and precision. */
  pipeline(
    file: string,
    entry: string,
    consts: Consts = {},
    precision: Precision = "f32",
  ): GPUComputePipeline {
    return this.kernels.pipeline(file, entry, consts, precision);
  }

  /** Await all compilations so far; throws with file:line of the first error. */
  checkCompile(): Promise<void> {
    return this.kernels.checkCompile();
  }

  /** A storage buffer of `size` bytes (rounded up to 4), optionally initialised. */
  buffer(size: number, label = "", extraUsage = 0): GPUBuffer {
    return this.device.createBuffer({
      size: Math.max(4, Math.ceil(size / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
      label,
    });
  }

  bufferFrom(data: ArrayBufferView, label = "", extraUsage = 0): GPUBuffer {
    const buf = this.buffer(data.byteLength, label, extraUsage);
    this.write(buf, data);
    return buf;
  }

  uniform(data: ArrayBufferView, label = ""): GPUBuffer {
    const buf = this.device.createBuffer({
      size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label,
    });
    this.write(buf, data);
    return buf;
  }

  write(buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    // writeBuffer needs a multiple of 4 bytes.
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength === 0) return; // (Deno's writeBuffer panics on an empty write)
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buf, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buf, offset, padded);
    }
  }

  /** Fill a buffer with NaN (POISON_WORD: NaN as f32 and as both f16 halves), so unwritten outputs show up in tests. */
  poison(buf: GPUBuffer): void {
    const words = new Uint32Array(buf.size / 4).fill(POISON_WORD);
    this.device.queue.writeBuffer(buf, 0, words);
  }

  /** Copy `size` bytes from a GPU buffer back to the host (one map: slow, so call it rarely). */
  async read(buf: GPUBuffer, offset = 0, size = buf.size - offset): Promise<ArrayBuffer> {
    this.checkAlive();
    const aligned = Math.ceil(size / 4) * 4;
    const staging = this.device.createBuffer({
      size: aligned,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, offset, staging, 0, aligned);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, size);
    staging.unmap();
    staging.destroy();
    this.checkAlive();
    return out;
  }

  async readF32(buf: GPUBuffer, offset = 0, count?: number): Promise<Float32Array> {
    return new Float32Array(await this.read(buf, offset, count === undefined ? undefined : count * 4));
  }

  /** Bind group 0 with binding i = entries[i]. */
  bind(pipeline: GPUComputePipeline, entries: (GPUBuffer | GPUBufferBinding)[], label = ""): GPUBindGroup {
    return this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: entries.map((e, i) => ({ binding: i, resource: "buffer" in e ? e : { buffer: e } })),
      label,
    });
  }

  /**
   * The one submit path: encode passes into one command buffer and submit it. Each pass runs `before` on the
   * encoder (e.g. copying the step's uniform), then its ops in one compute pass, optionally with timestamp
   * writes. `warm` encodes each op's one-workgroup warm-up dispatch instead (see warmUp).
   */
  submit(passes: Pass[], warm = false): void {
    this.checkAlive();
    const enc = this.device.createCommandEncoder();
    for (const p of passes) {
      p.before?.(enc);
      const pass = enc.beginComputePass({ timestampWrites: p.timestampWrites });
      for (const op of p.ops) {
        if (warm) op.warm(pass);
        else op.encode(pass);
      }
      pass.end();
    }
    this.device.queue.submit([enc.finish()]);
  }

  /** Run a list of ops in one compute pass and one submit, optionally as a timed span. */
  run(ops: Op[], timestampWrites?: GPUComputePassTimestampWrites): void {
    this.submit([{ ops, timestampWrites }]);
  }

  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.checkAlive();
  }
}

/** One compute pass of a submit (Gpu.submit). */
export interface Pass {
  ops: Op[];
  before?: (enc: GPUCommandEncoder) => void;
  timestampWrites?: GPUComputePassTimestampWrites;
}

/** One compute dispatch with its bind group, built once and encoded as often as needed. */
export interface Op {
  name: string;
  /** Which pass of its layer the op belongs to (bench's per-layer table); forward when absent. */
  pass?: "forward" | "input_grad" | "weight_grad";
  encode(pass: GPUComputePassEncoder): void;
  /** Dispatch a single workgroup: makes drivers that compile on first use (lavapipe) do it, at no real cost. */
  warm(pass: GPUComputePassEncoder): void;
}

export function dispatch(
  gpu: Gpu,
  name: string,
  pipeline: GPUComputePipeline,
  buffers: (GPUBuffer | GPUBufferBinding)[],
  groups: [number, number?, number?],
): Op {
  const bg = gpu.bind(pipeline, buffers, name);
  const [x, y = 1, z = 1] = groups;
  const max = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  if (x > max || y > max || z > max) {
    throw new Error(`${name}: dispatch (${x},${y},${z}) exceeds maxComputeWorkgroupsPerDimension ${max}`);
  }
  return {
    name,
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(x, y, z);
    },
    warm(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(1);
    },
  };
}

/**
 * Compile-on-first-use drivers would otherwise charge shader compilation to the first timed step. Warm-up
 * dispatches touch a workgroup's worth of each op's outputs: run it before loading the real state.
 */
export async function warmUp(gpu: Gpu, ops: Op[]): Promise<void> {
  gpu.submit([{ ops }], true);
  await gpu.sync();
}

/** Split a 1-D count of workgroups into a 2-D grid that fits the per-dimension limit. */
export function grid2d(groups: number, max = 65535): [number, number] {
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

export const ACT_BYTES: Record<Precision, number> = { f32: 4, f16: 2 };
