// General f32 matrix products on the GPU (kernels/gemm.wgsl): C = alpha * op(A) @ op(B) [+ beta * D], op the
// identity or the transpose, any M, N, K. Register-blocked (TM x TN outputs per invocation), deterministic;
// vec4 loads and stores where M and N are multiples of the block, scalar with bounds checks elsewhere.

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";

type Binding = GPUBuffer | GPUBufferBinding;

const WG = 64;

/** Outputs per invocation: TM rows x TN columns of C. */
export interface GemmBlock {
  TM: number;
  TN: number;
}

/**
 * The default block: 8 x 16, the fastest of 4x16, 8x8, 8x16, 16x8 and 16x16 on lavapipe for a Muon step of
 * the recipe's six filters (the bench's matmul probe also picks 8 x 16 there).
 */
export const GEMM_BLOCK: GemmBlock = { TM: 8, TN: 16 };

/**
 * The block of the vec4 path for this shape: `block` when it tiles C exactly (TM, TN multiples of 4 dividing
 * M, N), else 4 x 4 when that does; undefined when the shape needs the scalar path (M or N not a multiple of
 * 4).
 */
export function vec4Block(s: { M: number; N: number }, block: GemmBlock): GemmBlock | undefined {
  for (const b of [block, { TM: 4, TN: 4 }]) {
    if (b.TM % 4 === 0 && b.TN % 4 === 0 && s.M % b.TM === 0 && s.N % b.TN === 0) return b;
  }
  return undefined;
}

export interface GemmShape {
  /** Rows of op(A) and C. */
  M: number;
  /** Columns of op(B) and C. */
  N: number;
  /** Columns of op(A) = rows of op(B). */
  K: number;
  /** op(A) = A^T: A is stored [K][M] (else [M][K]). */
  transA?: boolean;
  /** op(B) = B^T: B is stored [N][K] (else [K][N]). */
  transB?: boolean;
  alpha?: number;
  /** Weight of D; requires d (and d requires a beta). */
  beta?: number;
}

function floats(b: Binding): number {
  const bytes = "buffer" in b ? (b.size ?? b.buffer.size - (b.offset ?? 0)) : b.size;
  return Math.floor(bytes / 4);
}

/**
 * C = alpha * op(A) @ op(B) (+ beta * D when `d` is given), all row-major f32. C must not alias A, B or D
 * (D may alias A or B). One dispatch, one fixed summation order per element (k ascending, fma).
 */
export function gemm(
  gpu: Gpu,
  a: GemmShape & { a: Binding; b: Binding; c: Binding; d?: Binding; scalar?: boolean },
  block: GemmBlock = GEMM_BLOCK,
  name = "gemm",
): Op {
  const { M, N, K, transA = false, transB = false, alpha = 1, beta } = a;
  for (const [k, v] of Object.entries({ M, N, K, TM: block.TM, TN: block.TN })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k}=${v} must be a positive integer`);
  }
  if ((a.d === undefined) !== (beta === undefined)) {
    throw new Error(`${name}: pass both d and beta (C = alpha * op(A) @ op(B) + beta * D) or neither`);
  }
  if (!Number.isFinite(alpha) || (beta !== undefined && !Number.isFinite(beta))) {
    throw new Error(`${name}: alpha=${alpha} and beta=${beta} must be finite`);
  }
  const need: [string, Binding | undefined, number][] = [
    ["a", a.a, M * K],
    ["b", a.b, K * N],
    ["c", a.c, M * N],
    ["d", a.d, M * N],
  ];
  for (const [what, buf, n] of need) {
    if (buf && floats(buf) < n) throw new Error(`${name}: ${what} holds ${floats(buf)} floats, needs ${n}`);
  }
  // vec4 loads and stores where the shape allows (same fma chain per element: the same bits); `scalar`
  // forces the scalar path (tests compare the two)
  const v4 = a.scalar ? undefined : vec4Block(a, block);
  const used = v4 ?? block;
  const consts = {
    M,
    N,
    K,
    TA: transA,
    TB: transB,
    ALPHA: { f32: alpha },
    BETA: { f32: beta ?? 0 },
    TM: used.TM,
    TN: used.TN,
    WG,
  };
  const entry = `${v4 ? "gemm_v4" : "gemm"}${a.d ? "_add" : ""}`;
  const pipe = gpu.pipeline("gemm.wgsl", entry, consts);
  const threads = Math.ceil(M / used.TM) * Math.ceil(N / used.TN);
  const groups = grid2d(Math.ceil(threads / WG), gpu.device.limits.maxComputeWorkgroupsPerDimension);
  const buffers = a.d ? [a.a, a.b, a.c, a.d] : [a.a, a.b, a.c];
  return dispatch(gpu, name, pipe, buffers, groups);
}

/** Floating-point operations of one gemm: 2 per multiply-add of the product (the alpha/beta terms not counted). */
export function gemmFlops(s: GemmShape): number {
  return 2 * s.M * s.N * s.K;
}
