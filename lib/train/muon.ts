// The Muon optimizer step of airbench94_muon.py for one convolution weight, on the GPU (kernels/muon.wgsl for
// the elementwise and reduction steps, kernels/gemm.wgsl for the Newton-Schulz products). Per step, as
// torch's Muon.step: buf = m * buf + g; g' = g + m * buf (Nesterov) or buf; p *= sqrt(O) / ||p||; X = g'
// viewed as O x (I*KH*KW), X /= ||X|| + 1e-7, three quintic Newton-Schulz iterations (X^T when O > I*KH*KW);
// p -= lr * X. No weight decay. Everything in f32 (torch runs Newton-Schulz in bfloat16; WGSL has no bf16).
//
// The weight is stored HWIO, [KH*KW*ciPad][O] row-major: the matrix M = G^T of torch's O x (I*KH*KW) view G,
// up to a permutation of G's columns plus zero rows for padded input channels. Newton-Schulz commutes with
// that permutation and keeps zero rows zero, so it runs on M directly:
//   O <= I*KH*KW (torch: X = G):   A = M^T M (O x O), B = b*A + c*A@A, M <- a*M + M@B   (B^T = B bit for bit:
//                                  the gemm sums A[i][j] and A[j][i] in the same order, and so for A@A)
//   O >  I*KH*KW (torch: X = G^T): A = M M^T (rows x rows), B as above, M <- a*M + B@M
// All sums have fixed orders (no atomics): the same inputs give the same bits.

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { gemm, GEMM_BLOCK, type GemmBlock, gemmFlops } from "../nn/gemm.ts";
import type { Slot } from "../nn/model.ts";
import type { Optimizer, ParamGroup } from "./optim.ts";
import { STEP_SLOTS } from "../gpu/steps.ts";

type Binding = GPUBuffer | GPUBufferBinding;

/** The recipe's quintic Newton-Schulz: X <- a X + (b A + c A^2) X with A = X X^T, `steps` times. */
export const MUON_NS = { a: 3.4445, b: -4.775, c: 2.0315, steps: 3, eps: 1e-7 } as const;

const WG = 256; // flat kernels and the reductions (a power of two)

/** A convolution weight: torch's OIHW shape and the stored input channels (HWIO, ciPad >= I, zeros beyond I). */
export interface ConvWeightShape {
  O: number;
  I: number;
  KH: number;
  KW: number;
  ciPad: number;
}

/** The matrices of one weight's Newton-Schulz iteration on its stored [rows][O] layout. */
export interface MuonPlan {
  /** Stored rows KH * KW * ciPad (the columns of torch's view, permuted, plus zero rows). */
  rows: number;
  cols: number;
  /** Columns of torch's O x (I*KH*KW) view. */
  realK: number;
  /** torch transposes (O > I*KH*KW): A = M M^T (rows x rows); else A = M^T M (O x O). */
  transposed: boolean;
  /** Side of the Gram matrix A. */
  gram: number;
  count: number;
}

export function muonPlan(s: ConvWeightShape): MuonPlan {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`muon: ${k}=${v} must be a positive integer`);
  }
  if (s.ciPad < s.I) throw new Error(`muon: ciPad=${s.ciPad} is below the input channels I=${s.I}`);
  const rows = s.KH * s.KW * s.ciPad, realK = s.I * s.KH * s.KW;
  const transposed = s.O > realK;
  return { rows, cols: s.O, realK, transposed, gram: transposed ? rows : s.O, count: rows * s.O };
}

/** FLOPs of one Newton-Schulz run (the three gemms per iteration; elementwise work not counted). */
export function newtonSchulzFlops(s: ConvWeightShape): number {
  const p = muonPlan(s);
  const inner = p.transposed ? p.cols : p.rows; // the dimension the Gram matrix sums over
  const perStep = gemmFlops({ M: p.gram, N: p.gram, K: inner }) +
    gemmFlops({ M: p.gram, N: p.gram, K: p.gram }) +
    gemmFlops({ M: p.rows, N: p.cols, K: p.gram });
  return MUON_NS.steps * perStep;
}

interface Scratch {
  x0: GPUBuffer;
  x1: GPUBuffer;
  gram: GPUBuffer;
  poly: GPUBuffer;
  part: GPUBuffer;
  stats: GPUBuffer;
}

function scratch(gpu: Gpu, p: MuonPlan, label: string): Scratch {
  const parts = Math.ceil(p.count / WG);
  return {
    x0: gpu.buffer(p.count * 4, `${label}.x0`),
    x1: gpu.buffer(p.count * 4, `${label}.x1`),
    gram: gpu.buffer(p.gram * p.gram * 4, `${label}.gram`),
    poly: gpu.buffer(p.gram * p.gram * 4, `${label}.poly`),
    part: gpu.buffer(2 * parts * 4, `${label}.part`),
    stats: gpu.buffer(4 * 4, `${label}.stats`),
  };
}

interface StepConsts {
  momentum: number;
  nesterov: boolean;
  lrSlot: number;
  /** The weight's norm after the rescale: sqrt(len(p)), torch's first dimension (default sqrt(O)). */
  targetNorm?: number;
}

function kernel(gpu: Gpu, s: ConvWeightShape, p: MuonPlan, c: StepConsts) {
  const consts = {
    COUNT: p.count,
    COLS: p.cols,
    CI: s.I,
    CIPAD: s.ciPad,
    WG,
    PARTS: Math.ceil(p.count / WG),
    LR_SLOT: c.lrSlot,
    MOMENTUM: { f32: c.momentum },
    NESTEROV: c.nesterov,
    NS_EPS: { f32: MUON_NS.eps },
    TARGET_NORM: { f32: c.targetNorm ?? Math.sqrt(s.O) },
  };
  const flat = grid2d(Math.ceil(p.count / WG), gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return {
    flat(entry: string, name: string, buffers: Binding[]): Op {
      return dispatch(gpu, name, gpu.pipeline("muon.wgsl", entry, consts), buffers, flat);
    },
    single(entry: string, name: string, buffers: Binding[]): Op {
      return dispatch(gpu, name, gpu.pipeline("muon.wgsl", entry, consts), buffers, [1]);
    },
  };
}

/** stats = (sum x^2, sum y^2, 1 / (||x|| + eps), sqrt(O) / ||y||): two deterministic reduction stages. */
function normOps(k: ReturnType<typeof kernel>, x: Binding, y: Binding, t: Scratch, label: string): Op[] {
  return [
    k.flat("muon_sumsq", `${label}.sumsq`, [x, y, t.part]),
    k.single("muon_norms", `${label}.norms`, [t.part, t.stats]),
  ];
}

/** MUON_NS.steps iterations from t.x0 (already normalised), ping-ponging with t.x1; the last writes `out`. */
function iterationOps(
  gpu: Gpu,
  p: MuonPlan,
  t: Scratch,
  out: Binding,
  block: GemmBlock,
  label: string,
): Op[] {
  const { a, b, c, steps } = MUON_NS;
  const ops: Op[] = [];
  let src: Binding = t.x0;
  for (let s = 0; s < steps; s++) {
    const dst: Binding = s === steps - 1 ? out : src === t.x0 ? t.x1 : t.x0;
    const tag = `${label}.ns${s}`;
    const g = p.gram;
    const gram = p.transposed ? { K: p.cols, transB: true } : { K: p.rows, transA: true };
    // The Gram matrix and its polynomial are symmetric bit for bit, so reading them transposed (along rows,
    // the gemm's vec4 loads) changes nothing.
    const update = p.transposed ? { transA: true, a: t.poly, b: src } : { a: src, b: t.poly };
    ops.push(
      gemm(gpu, { M: g, N: g, ...gram, a: src, b: src, c: t.gram }, block, `${tag}.gram`),
      gemm(
        gpu,
        { M: g, N: g, K: g, transA: true, alpha: c, beta: b, a: t.gram, b: t.gram, d: t.gram, c: t.poly },
        block,
        `${tag}.poly`,
      ),
      gemm(gpu, { M: p.rows, N: p.cols, K: g, beta: a, d: src, c: dst, ...update }, block, `${tag}.x`),
    );
    src = dst;
  }
  return ops;
}

export interface MuonOps {
  ops: Op[];
  /** [4] f32 after the ops: sum g'^2, sum p^2 (before the step), 1 / (||g'|| + eps), sqrt(O) / ||p||. */
  stats: GPUBuffer;
}

/**
 * torch's zeropower_via_newtonschulz5 (in f32) of one stored weight-shaped matrix: `output` = the
 * Newton-Schulz orthogonalisation of `input` ([rows][O], HWIO layout), both f32 [rows * O]; they must not
 * alias.
 */
export function newtonSchulzOps(
  gpu: Gpu,
  a: { input: Binding; output: Binding; shape: ConvWeightShape; label?: string },
  block: GemmBlock = GEMM_BLOCK,
): MuonOps {
  const label = a.label ?? "newton_schulz";
  const p = muonPlan(a.shape);
  const t = scratch(gpu, p, label);
  const k = kernel(gpu, a.shape, p, { momentum: 0, nesterov: false, lrSlot: 0 });
  const ops = [
    ...normOps(k, a.input, a.input, t, label),
    k.flat("muon_scale", `${label}.scale`, [a.input, t.x0, t.stats]),
    ...iterationOps(gpu, p, t, a.output, block, label),
  ];
  return { ops, stats: t.stats };
}

/**
 * One Muon step of one convolution weight: params, grads and mom are that tensor's ranges of the flat buffers
 * (HWIO, [KH*KW*ciPad][O]); the lr is the Step's slot `lrSlot`; momentum and nesterov are compile-time
 * constants. Encode the ops in order (one compute pass is fine: dispatches see each other's writes).
 * Scratch buffers are owned by the returned ops (about 2 weights + 2 Gram matrices).
 */
export function muonOps(
  gpu: Gpu,
  a: {
    params: Binding;
    grads: Binding;
    mom: Binding;
    shape: ConvWeightShape;
    stepBuf: GPUBuffer;
    lrSlot: number;
    momentum: number;
    nesterov: boolean;
    /** sqrt(len(p)) when torch's first dimension is not shape.O (a Linear weight: see muonTensor). */
    targetNorm?: number;
    label?: string;
  },
  block: GemmBlock = GEMM_BLOCK,
): MuonOps {
  const label = a.label ?? "muon";
  if (!Number.isInteger(a.lrSlot) || a.lrSlot < 0 || a.lrSlot >= STEP_SLOTS) {
    throw new Error(`${label}: lrSlot=${a.lrSlot} must be an integer in [0, ${STEP_SLOTS})`);
  }
  if (!(a.momentum >= 0 && a.momentum < 1) || (a.nesterov && a.momentum === 0)) {
    throw new Error(`${label}: momentum=${a.momentum} must be in [0, 1), and > 0 with nesterov`);
  }
  const p = muonPlan(a.shape);
  const t = scratch(gpu, p, label);
  const k = kernel(gpu, a.shape, p, a);
  // g' goes to x1, which the first iteration overwrites only after muon_scale has copied it (scaled) to x0.
  const ops = [
    k.flat("muon_momentum", `${label}.momentum`, [a.grads, a.mom, t.x1]),
    ...normOps(k, t.x1, a.params, t, label),
    k.flat("muon_scale", `${label}.scale`, [t.x1, t.x0, t.stats]),
    ...iterationOps(gpu, p, t, t.x1, block, label),
    k.flat("muon_update", `${label}.update`, [a.params, t.x1, t.stats, a.stepBuf]),
  ];
  return { ops, stats: t.stats };
}

// ------------------------------------------------------------------------------------- the optimizer seam

/**
 * How muonOps sees a trained parameter. A convolution filter (rank 4, stored HWIO) is itself. A Linear weight
 * (rank 2, stored "plain" as torch's [out][in] row-major) is the same memory as the HWIO store of a 1x1
 * convolution with O = in, I = ciPad = out, whose torch view is G^T: Newton-Schulz of G^T is that of G
 * transposed (torch transposes the wider side either way), and the rescale keeps torch's len(p) = out.
 */
export function muonTensor(e: Slot): { shape: ConvWeightShape; targetNorm: number } {
  const t = e.torchShape;
  if (t.length === 4 && e.storage === "hwio") {
    return { shape: { O: t[0], I: t[1], KH: t[2], KW: t[3], ciPad: e.ciPad }, targetNorm: Math.sqrt(t[0]) };
  }
  if (t.length === 2 && e.storage === "plain") {
    return { shape: { O: t[1], I: t[0], KH: 1, KW: 1, ciPad: t[0] }, targetNorm: Math.sqrt(t[0]) };
  }
  throw new Error(
    `muon: ${e.name} of shape [${t}] is neither a convolution filter nor a Linear weight; give it to ` +
      `another optimizer (Muon takes matrices: e.g. params ofRank(4))`,
  );
}

/** Muon's settings (airbench94_muon.py's Muon(params, lr, momentum, nesterov)); a group may override them. */
export interface MuonOptions {
  momentum: number;
  nesterov: boolean;
}

export interface MuonGroup extends ParamGroup, Partial<MuonOptions> {
  /** The name of the per-step value that is this group's lr. */
  lr: string;
}

/**
 * The Muon optimizer over parameter groups: `Muon([{ params: ofRank(4), lr: "lr_muon" }], { momentum: 0.6,
 * nesterov: true })`. Per claimed tensor, in storage order, its muonOps (momentum, rescale, Newton-Schulz,
 * step); the momentum buffer is the tensor's range of the shared `mom` store. No weight decay, as the
 * recipe's.
 */
export function Muon(groups: MuonGroup[], defaults: MuonOptions): Optimizer {
  return {
    name: "muon",
    groups,
    values: groups.map((g) => g.lr),
    gates: [],
    ops(ctx, params) {
      const s = ctx.state;
      return params.flatMap((entries, i) => {
        const g = groups[i];
        return entries.flatMap((e) => {
          const range = (buffer: GPUBuffer) => ({ buffer, offset: e.offset * 4, size: e.count * 4 });
          return muonOps(ctx.gpu, {
            params: range(s.params),
            grads: range(s.grads),
            mom: range(s.mom),
            ...muonTensor(e),
            stepBuf: ctx.stepBuf,
            lrSlot: ctx.slots.value(g.lr),
            momentum: g.momentum ?? defaults.momentum,
            nesterov: g.nesterov ?? defaults.nesterov,
            label: `muon.${e.name}`,
          }).ops;
        });
      });
    },
  };
}
