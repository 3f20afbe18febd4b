// Kernel sources and their compilation: the pipeline cache behind Gpu.pipeline.
//
// Kernels live in kernels/*.wgsl. Each kernel file is compiled with a generated header prepended:
//   - `enable f16;` when the activation precision is f16,
//   - `alias act = f16;` / `alias act4 = vec4<f16>;` (or the f32 versions): the storage type of activations
//     and activation gradients. Parameters, their gradients and optimizer state are always f32.
//   - one `const NAME: TYPE = VALUE;` line for each compile-time constant the caller passes (shapes, tile
//   sizes).
// Then the kernel file itself, its `// #include "name.wgsl"` lines replaced by those files (paths relative to
// kernels/, each file at most once per kernel, nested includes resolved the same way): shared WGSL pieces
// such as grid.wgsl (the 2-D grid index) or step.wgsl (the Step struct). Compile errors name the file and the
// line inside it, an included file's own when the error is there.

import { join } from "node:path";
import { ROOT } from "../root.ts";

export type Precision = "f32" | "f16";

export type ConstValue = number | boolean | { u32: number } | { i32: number } | { f32: number };
export type Consts = Record<string, ConstValue>;

// Kernel files are read from disk under Deno; a page registers their text with defineSource() instead.
const KERNEL_DIR = ROOT ? join(ROOT, "kernels") : "";

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
 * kernels/`file` with its include lines replaced by the included files' text (each file once: a second
 * include of the same file, or a cycle, is an empty line), and the origin of every line. `read` gives a
 * file's text.
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
 * One device's kernels: their texts (read from kernels/ once, or registered), the compiled pipelines (one per
 * file, entry, constants and precision) and the compile errors not yet reported.
 */
export class KernelCache {
  private sources = new Map<string, string>();
  private pipelines = new Map<string, GPUComputePipeline>();
  private pendingScopes: Promise<void>[] = [];
  private compileErrors: string[] = [];

  constructor(private readonly device: GPUDevice, private readonly f16: boolean) {}

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
  pipeline(file: string, entry: string, consts: Consts, precision: Precision): GPUComputePipeline {
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
}

function remapError(file: string, entry: string, message: string, origins: LineOrigin[]): string {
  // wgpu/naga messages quote locations as ":LINE:COL", "line LINE" or a "LINE │" gutter, counted in the
  // compiled text; name the kernel file (the kernel's own or an included one) and the line inside it instead.
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
