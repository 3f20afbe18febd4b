// The bench's ceiling probes: a register-blocked matmul (the practical f32 ceiling of an adapter) and a vec4
// buffer copy (its bandwidth), each timed with the one GPU timer.

import { dispatch, type Gpu, grid2d, type Op, warmUp } from "./gpu.ts";
import type { GpuTimer } from "./timer.ts";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** (max - min) / median, the spread reported beside each median. */
export function spread(xs: number[]): number {
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
  const pipe = gpu.pipeline("bench/matmul.wgsl", "matmul", { M, N, K, TMV, TN4, WG: PROBE_WG });
  return dispatch(gpu, "matmul", pipe, [bufs.at, bufs.b, bufs.c], grid);
}

/** dst = src over `bytes` (a multiple of 16). */
export function copyOp(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, bytes: number): Op {
  const grid = grid2d(Math.ceil(bytes / 16 / PROBE_WG));
  const pipe = gpu.pipeline("bench/copy.wgsl", "copy", { L4: bytes / 16, WG: PROBE_WG });
  return dispatch(gpu, "copy", pipe, [src, dst], grid);
}

export async function ceilingProbe(gpu: Gpu, timer: GpuTimer, size: number, repeats: number) {
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
  await timer.time([...mmOps.map((o) => ({ ops: [o] })), { ops: [cpOp] }]); // warm-up
  const mmT: number[][] = shapes.map(() => []), cpT: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t = await timer.time([...mmOps.map((o) => ({ ops: [o] })), { ops: [cpOp] }]);
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
