// WebGPU device layer: adapter choice, limits, kernel compilation (cached), buffers and dispatch helpers.
//
// Kernels live in kernels/*.wgsl. Each kernel file is compiled with a generated header prepended:
//   - `enable f16;` when the activation precision is f16,
//   - `alias act = f16;` / `alias act4 = vec4<f16>;` (or the f32 versions): the storage type of activations
//     and activation gradients. Parameters, their gradients and optimizer state are always f32.
//   - one `const NAME: TYPE = VALUE;` line for each compile-time constant the caller passes (shapes, tile sizes).
// Then the kernel file itself, its `// #include "name.wgsl"` lines replaced by those files (paths relative to
// kernels/, each file at most once per kernel, nested includes resolved the same way): shared WGSL pieces such
// as grid.wgsl (the 2-D grid index) or step.wgsl (the Step struct). Compile errors name the file and the line
// inside it, an included file's own when the error is there.

import { join } from "node:path";
import { ROOT } from "../root.ts";

export type Precision = "f32" | "f16";

export interface AdapterReport {
  name: string;
  vendor: string;
  architecture: string;
  backend: string;
  isCpu: boolean;
  f16: boolean;
  timestampQuery: boolean;
  /** The device has the "subgroups" feature (requested by trying: Deno's adapter.features does not list it). */
  subgroups: boolean;
  /** The adapter's driver description (adapter.info.description; part of the tuning cache key). */
  driver?: string;
  limits: Record<string, number>;
}

// Kernel files are read from disk under Deno; a page registers their text with defineSource() instead.
const KERNEL_DIR = ROOT ? join(ROOT, "kernels") : "";

// The limits we ask for: the adapter's own (Deno otherwise hands out WebGPU's minimums).
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "maxBindGroups",
] as const;

const INCLUDE_LINE = /^\s*\/\/\s*#include\s+"([\w./-]+\.wgsl)"\s*$/;

/** Where one line of a compiled kernel came from: a kernel file (relative to kernels/) and its 1-based line. */
export interface LineOrigin {
  file: string;
  line: number;
}

/** The files `text` names in its `// #include "name.wgsl"` lines, in order. */
export function includesOf(text: string): string[] {
  return text.split("\n").map((l) => l.match(INCLUDE_LINE)?.[1]).filter((f): f is string => f !== undefined);
}

/**
 * kernels/`file` with its include lines replaced by the included files' text (each file once: a second include
 * of the same file, or a cycle, is an empty line), and the origin of every line. `read` gives a file's text.
 */
export function expandIncludes(
  file: string,
  read: (file: string) => string,
): { lines: string[]; origins: LineOrigin[] } {
  const lines: string[] = [];
  const origins: LineOrigin[] = [];
  const seen = new Set<string>();
  const visit = (f: string) => {
    seen.add(f);
    read(f).split("\n").forEach((text, i) => {
      const inc = text.match(INCLUDE_LINE)?.[1];
      if (inc === undefined || seen.has(inc)) {
        lines.push(inc === undefined ? text : "");
        origins.push({ file: f, line: i + 1 });
        return;
      }
      try {
        read(inc);
      } catch (e) {
        throw new Error(`kernels/${f}:${i + 1}: #include "${inc}": ${(e as Error).message}`);
      }
      visit(inc);
    });
  };
  visit(file);
  return { lines, origins };
}

export type ConstValue = number | boolean | { u32: number } | { i32: number } | { f32: number };
export type Consts = Record<string, ConstValue>;

function constLine(name: string, v: ConstValue): string {
  if (typeof v === "boolean") return `const ${name}: bool = ${v};`;
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 0) {
      throw new Error(`kernel constant ${name}=${v}: plain numbers must be non-negative integers (u32)`);
    }
    return `const ${name}: u32 = ${v}u;`;
  }
  if ("u32" in v) return `const ${name}: u32 = ${v.u32}u;`;
  if ("i32" in v) return `const ${name}: i32 = ${v.i32}i;`;
  const f = v.f32;
  if (!Number.isFinite(f)) throw new Error(`kernel constant ${name}=${f} is not finite`);
  return `const ${name}: f32 = ${f.toExponential(9)}f;`;
}

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
  private sources = new Map<string, string>();
  private pipelines = new Map<string, GPUComputePipeline>();
  private lost = false;
  lostReason = "";

  private constructor(device: GPUDevice, report: AdapterReport) {
    this.device = device;
    this.adapter = report;
    this.f16 = report.f16;
    this.timestamps = report.timestampQuery;
    device.lost.then((info) => {
      this.lost = true;
      this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  static async create(
    opts: { f16?: boolean; timestamps?: boolean; subgroups?: boolean } = {},
  ): Promise<Gpu> {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new Error(
        "WebGPU is not available in this Deno (navigator.gpu is missing). Use Deno 2.x: npm i -g deno@2.9.6",
      );
    }
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new Error(
        "No WebGPU adapter found. Install a GPU driver with Vulkan/Metal/D3D12 support, or on a machine " +
          "without a GPU, Mesa's lavapipe: apt-get install -t bookworm-backports mesa-vulkan-drivers",
      );
    }
    const features: GPUFeatureName[] = [];
    const hasF16 = adapter.features.has("shader-f16");
    const hasTs = adapter.features.has("timestamp-query");
    if (hasF16 && opts.f16 !== false) features.push("shader-f16");
    if (hasTs && opts.timestamps !== false) features.push("timestamp-query");
    const requiredLimits: Record<string, number> = {};
    for (const k of WANTED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[k];
      if (typeof v === "number") requiredLimits[k] = v;
    }
    // Subgroups: Deno accepts the feature in requestDevice although adapter.features does not list it (Mesa's
    // lavapipe runs subgroup ops, size 8). Try with it; fall back without.
    let device: GPUDevice | undefined;
    let subgroups = false;
    if (opts.subgroups !== false) {
      try {
        const withSg = [...features, "subgroups" as GPUFeatureName];
        device = await adapter.requestDevice({ requiredFeatures: withSg, requiredLimits });
        subgroups = device.features.has("subgroups");
      } catch {
        device = undefined;
      }
    }
    device ??= await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
    const info = adapter.info;
    const desc = info.description || "";
    // Browsers often leave description and device empty (Chrome: vendor "google", architecture
    // "swiftshader"), so the name and the CPU test fall back to vendor and architecture.
    const vendorArch = [info.vendor, info.architecture].filter(Boolean).join(" ");
    const isCpu = /llvmpipe|lavapipe|swiftshader|warp|software/i.test(`${desc} ${vendorArch}`) ||
      (info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
    const limits: Record<string, number> = {};
    for (const k of WANTED_LIMITS) {
      limits[k] = (device.limits as unknown as Record<string, number>)[k];
    }
    const report: AdapterReport = {
      name: desc || info.device || vendorArch || "unknown",
      vendor: info.vendor || "unknown",
      architecture: info.architecture || "",
      // Deno's WebGPU (wgpu) does not expose the backend; infer it from the platform.
      backend: typeof Deno === "undefined"
        ? "browser"
        : Deno.build.os === "darwin"
        ? "metal"
        : Deno.build.os === "windows"
        ? "dx12/vulkan"
        : "vulkan",
      isCpu,
      f16: features.includes("shader-f16"),
      timestampQuery: features.includes("timestamp-query"),
      subgroups,
      driver: desc,
      limits,
    };
    return new Gpu(device, report);
  }

  /** Throws when the device was lost, naming the reason. */
  checkAlive(): void {
    if (this.lost) throw new Error(`GPU device lost (${this.lostReason})`);
  }

  /** Register kernel text under a file name instead of reading kernels/<file> (tests, generated kernels). */
  defineSource(file: string, text: string): void {
    this.sources.set(file, text);
  }

  private source(file: string): string {
    let s = this.sources.get(file);
    if (s === undefined) {
      if (!KERNEL_DIR) {
        throw new Error(`kernels/${file}: not registered (Gpu.defineSource) and no file system here`);
      }
      s = Deno.readTextFileSync(join(KERNEL_DIR, file));
      this.sources.set(file, s);
    }
    return s;
  }

  /** Compile (once) the entry point `entry` of kernels/`file` with the given constants and precision. */
  pipeline(
    file: string,
    entry: string,
    consts: Consts = {},
    precision: Precision = "f32",
  ): GPUComputePipeline {
    const keys = Object.keys(consts).sort();
    const key = `${file}|${entry}|${precision}|` +
      keys.map((k) => `${k}=${JSON.stringify(consts[k])}`).join(",");
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    if (precision === "f16" && !this.f16) {
      throw new Error(`kernel ${file}: f16 requested but the adapter has no shader-f16; use --precision f32`);
    }
    const header = [
      ...(precision === "f16" ? ["enable f16;"] : []),
      `alias act = ${precision};`,
      `alias act4 = vec4<${precision}>;`,
      ...keys.map((k) => constLine(k, consts[k])),
    ];
    const body = expandIncludes(file, (f) => this.source(f));
    const code = [...header, ...body.lines].join("\n");
    const origins = [...header.map((_, i) => ({ file: "(generated header)", line: i + 1 })), ...body.origins];
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code, label: file });
    const pipe = this.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: entry },
    });
    // Errors surface asynchronously; check them in checkCompile() (callers await it once after building).
    this.pendingScopes.push(
      this.device.popErrorScope().then((err) => {
        if (err) this.compileErrors.push(remapError(file, entry, err.message, origins));
      }),
    );
    this.pipelines.set(key, pipe);
    return pipe;
  }

  private pendingScopes: Promise<void>[] = [];
  private compileErrors: string[] = [];

  /** Await all compilations so far; throws with file:line of the first error. */
  async checkCompile(): Promise<void> {
    await Promise.all(this.pendingScopes);
    this.pendingScopes = [];
    if (this.compileErrors.length) {
      const msg = this.compileErrors.join("\n");
      this.compileErrors = [];
      throw new Error(msg);
    }
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

function remapError(file: string, entry: string, message: string, origins: LineOrigin[]): string {
  // wgpu/naga messages quote locations as ":LINE:COL", "line LINE" or a "LINE │" gutter, counted in the compiled
  // text; name the kernel file (the kernel's own or an included one) and the line inside it instead.
  const at = (l: string) => {
    const o = origins[Number(l) - 1];
    return o ? `${o.file}:${o.line}` : `${file}:?`;
  };
  const fixed = message
    .replace(/(wgsl|[\w/]+\.wgsl)?:(\d+):(\d+)/g, (_m, _f, l, c) => `${at(l)}:${c}`)
    .replace(/line (\d+)/g, (_m, l) => `line ${at(l)}`)
    .replace(/^(\s*)(\d+)( │)/gm, (_m, s, l, b) => `${s}${at(l)}${b}`);
  return `WGSL error in kernels/${file} (entry ${entry}): ${fixed}`;
}

export const ACT_BYTES: Record<Precision, number> = { f32: 4, f16: 2 };
