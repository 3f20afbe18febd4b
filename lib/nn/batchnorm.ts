// BatchNorm2d with PyTorch semantics (kernels/batchnorm.wgsl): training forward with batch statistics and the
// running-statistics update, eval forward with the running statistics, and the training-mode backward.
//
// Layouts: x, y, dy, dx NHWC [N][H][W][C] in `act` storage (f32 or f16, math and accumulation in f32);
// weight, bias, mean, invstd, running statistics and the gradients f32 [C], bound as given (GPUBufferBinding
// sub-ranges of flat buffers are fine). C must be a multiple of 4. Outputs must not alias inputs (WebGPU
// forbids a writable binding overlapping another binding of the same dispatch).
//
// The reductions over the M = N*H*W rows are split into chunks (one workgroup per chunk and channel block,
// row lanes combined by a fixed tree), then combined per channel in a fixed order: the same inputs give the
// same bits on the same adapter. The statistics use Welford / Chan merges (no cancellation for large means).

import { type Consts, type Precision } from "../gpu/kernels.ts";
import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import type { Init, Layer, LayerCtx, ParamSpec } from "./module.ts";

type Binding = GPUBuffer | GPUBufferBinding;

export interface BatchNormShape {
  N: number;
  H: number;
  W: number;
  C: number;
}

const WG = 256; // workgroup size of every batchnorm kernel

/**
 * Split sizing: a split reduction aims at rowsPerThread rows per thread and at most maxSplits chunks. Tests
 * lower rowsPerThread (many chunks on small tensors) and maxGroupsPerDim (2-D grids).
 */
export const batchNormLimits = { rowsPerThread: 64, maxSplits: 256, maxGroupsPerDim: 65535 };

interface Plan {
  consts: Consts;
  M: number;
  C: number;
  KSPLIT: number;
  splitGrid: [number, number]; // bn_stats, bn_bwd_partial
  channelGrid: [number, number]; // bn_finalize, bn_bwd_reduce
  elementGrid: [number, number]; // bn_apply, bn_eval, bn_bwd_dx
}

function grid(gpu: Gpu, groups: number): [number, number] {
  const max = Math.min(batchNormLimits.maxGroupsPerDim, gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return grid2d(Math.max(1, groups), max);
}

function checkScalar(name: string, what: string, v: number, ok: boolean) {
  if (!Number.isFinite(v) || !ok) throw new Error(`${name}: ${what}=${v} is out of range`);
}

/** Shape checks, split sizing and the constants every pipeline of batchnorm.wgsl defines. */
function plan(
  gpu: Gpu,
  name: string,
  s: BatchNormShape,
  eps: number,
  momentum: number,
  minRows: number,
): Plan {
  for (const [k, v] of Object.entries({ N: s.N, H: s.H, W: s.W, C: s.C })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k}=${v} must be a positive integer`);
  }
  if (s.C % 4 !== 0) throw new Error(`${name}: C=${s.C} must be a multiple of 4 (kernels load vec4s)`);
  const M = s.N * s.H * s.W, C4 = s.C / 4;
  if (M < minRows) {
    throw new Error(`${name}: batch statistics need more than one value per channel (N*H*W=${M})`);
  }
  // Row counts are f32 in the kernels (exact up to 2^24) and indices u32.
  if (M > 2 ** 24 || M * s.C > 2 ** 31) throw new Error(`${name}: ${M} rows x ${s.C} channels is too large`);
  checkScalar(name, "eps", eps, eps >= 0);
  checkScalar(name, "momentum", momentum, momentum >= 0 && momentum <= 1);
  const C4B = Math.min(C4, WG), LANES = Math.floor(WG / C4B), CBLOCKS = Math.ceil(C4 / C4B);
  const LP2 = 2 ** Math.ceil(Math.log2(LANES));
  const { rowsPerThread, maxSplits } = batchNormLimits;
  let KSPLIT = Math.max(1, Math.min(maxSplits, Math.ceil(M / (LANES * rowsPerThread))));
  const KCHUNK = Math.ceil(M / KSPLIT);
  KSPLIT = Math.ceil(M / KCHUNK); // no empty chunk
  const consts: Consts = {
    M,
    C4,
    KSPLIT,
    KCHUNK,
    C4B,
    LANES,
    LP2,
    CBLOCKS,
    WG,
    EPS: { f32: eps },
    MOMENTUM: { f32: momentum },
  };
  return {
    consts,
    M,
    C: s.C,
    KSPLIT,
    splitGrid: grid(gpu, KSPLIT * CBLOCKS),
    channelGrid: grid(gpu, Math.ceil(C4 / WG)),
    elementGrid: grid(gpu, Math.ceil((M * C4) / WG)),
  };
}

function bindingBytes(b: Binding): number {
  if ("buffer" in b) return b.size ?? b.buffer.size - (b.offset ?? 0);
  return b.size;
}

/** Every binding must hold at least its tensor: `act` tensors M*C elements, per-channel ones C f32. */
function checkBindings(name: string, p: Precision, pl: Plan, acts: Record<string, Binding>, chans: object) {
  const actBytes = pl.M * pl.C * (p === "f16" ? 2 : 4);
  const need = (what: string, b: Binding, bytes: number) => {
    if (bindingBytes(b) < bytes) {
      throw new Error(`${name}: ${what} holds ${bindingBytes(b)} bytes, needs ${bytes}`);
    }
  };
  for (const [k, b] of Object.entries(acts)) need(k, b, actBytes);
  for (const [k, b] of Object.entries(chans)) if (b) need(k, b as Binding, pl.C * 4);
}

/** The layer's parameters, running statistics and eps, as the forward passes take them. */
interface BnState {
  weight: Binding;
  bias: Binding;
  runningMean: Binding;
  runningVar: Binding;
  eps: number;
}

/** The activation's dimensions every BatchNorm op takes: NHWC. */
interface BnDims {
  N: number;
  H: number;
  W: number;
  C: number;
}

/**
 * Training forward with batch statistics over N, H, W: mean and invstd = 1 / sqrt(var_biased + eps) are
 * saved (f32 [C], for the backward); y = (x - mean) * invstd * weight + bias; in place,
 * runningMean = (1 - momentum) * runningMean + momentum * mean and
 * runningVar = (1 - momentum) * runningVar + momentum * var_unbiased (PyTorch's momentum).
 * Ops: split statistics, per-channel finalize, elementwise normalize. Like every op's warm(), the finalize's
 * warm-up writes its outputs, here the running statistics too: initialise them after warmUp().
 */
export function batchNormTrainForward(
  gpu: Gpu,
  p: Precision,
  a: BnDims & BnState & {
    x: Binding;
    y: Binding;
    mean: Binding;
    invstd: Binding;
    momentum: number;
  },
): Op[] {
  const name = "batchNormTrainForward";
  const pl = plan(gpu, name, a, a.eps, a.momentum, 2);
  const { x, y, weight, bias, mean, invstd, runningMean, runningVar } = a;
  checkBindings(name, p, pl, { x, y }, { weight, bias, mean, invstd, runningMean, runningVar });
  const part = gpu.buffer(pl.KSPLIT * 2 * pl.C * 4, "batchnorm.stats_partial");
  const pipe = (entry: string) => gpu.pipeline("batchnorm.wgsl", entry, pl.consts, p);
  return [
    dispatch(gpu, "batchnorm_stats", pipe("bn_stats"), [x, part], pl.splitGrid),
    dispatch(
      gpu,
      "batchnorm_finalize",
      pipe("bn_finalize"),
      [part, mean, invstd, runningMean, runningVar],
      pl.channelGrid,
    ),
    dispatch(gpu, "batchnorm_apply", pipe("bn_apply"), [x, y, weight, bias, mean, invstd], pl.elementGrid),
  ];
}

/** Eval forward: y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias. */
export function batchNormEvalForward(
  gpu: Gpu,
  p: Precision,
  a: BnDims & BnState & { x: Binding; y: Binding },
): Op {
  const name = "batchNormEvalForward";
  const pl = plan(gpu, name, a, a.eps, 0, 1);
  const { x, y, weight, bias, runningMean, runningVar } = a;
  checkBindings(name, p, pl, { x, y }, { weight, bias, runningMean, runningVar });
  const pipe = gpu.pipeline("batchnorm.wgsl", "bn_eval", pl.consts, p);
  return dispatch(gpu, "batchnorm_eval", pipe, [x, y, weight, bias, runningMean, runningVar], pl.elementGrid);
}

/**
 * Training-mode backward through the batch statistics, with xhat = (x - mean) * invstd (mean, invstd saved
 * by the forward): dbias = sum dy, dweight = sum dy * xhat (only when dweight is given), and
 * dx = weight * invstd / M * (M * dy - dbias - xhat * sum(dy * xhat)). Gradients are written, not
 * accumulated.
 */
export function batchNormBackward(
  gpu: Gpu,
  p: Precision,
  a: BnDims & {
    x: Binding;
    dy: Binding;
    dx: Binding;
    weight: Binding;
    mean: Binding;
    invstd: Binding;
    dweight?: Binding;
    dbias: Binding;
  },
): Op[] {
  const name = "batchNormBackward";
  const pl = plan(gpu, name, a, 0, 0, 2);
  const { x, dy, dx, weight, mean, invstd, dweight, dbias } = a;
  checkBindings(name, p, pl, { x, dy, dx }, { weight, mean, invstd, dweight, dbias });
  const part = gpu.buffer(pl.KSPLIT * 2 * pl.C * 4, "batchnorm.grad_partial");
  const coef = gpu.buffer(3 * pl.C * 4, "batchnorm.grad_coef");
  const pipe = (entry: string) => gpu.pipeline("batchnorm.wgsl", entry, pl.consts, p);
  const reduce = dweight
    ? dispatch(
      gpu,
      "batchnorm_backward_reduce",
      pipe("bn_bwd_reduce_dw"),
      [part, weight, invstd, coef, dbias, dweight],
      pl.channelGrid,
    )
    : dispatch(
      gpu,
      "batchnorm_backward_reduce",
      pipe("bn_bwd_reduce"),
      [part, weight, invstd, coef, dbias],
      pl.channelGrid,
    );
  return [
    dispatch(gpu, "batchnorm_backward_partial", pipe("bn_bwd_partial"), [x, dy, mean, part], pl.splitGrid),
    reduce,
    dispatch(
      gpu,
      "batchnorm_backward_dx",
      pipe("bn_bwd_dx"),
      [x, dy, dx, mean, invstd, coef],
      pl.elementGrid,
    ),
  ];
}

// ------------------------------------------------------------------------------------------ the layer

export interface BatchNormOptions {
  /** PyTorch's momentum of the running statistics (airbench's batchnorm_momentum m is PyTorch's 1 - m). */
  momentum?: number;
  eps?: number;
  /** The weight (scale) never trains (airbench: requires_grad False, it stays 1). Default true. */
  weightFrozen?: boolean;
  /** Optimizer group of the bias (lib/train/train_step.ts), e.g. one with a larger lr multiplier. */
  biasGroup?: string;
}

/**
 * nn.BatchNorm2d(C, eps, momentum) with the state-dict entries weight, bias, running_mean, running_var
 * (num_batches_tracked is not kept: it only matters with momentum=None). A training net normalizes with the
 * batch statistics and updates the running statistics (once per forward, as PyTorch's train()); an evaluation
 * net normalizes with the running statistics (eval()).
 */
export function BatchNorm2d(C: number, o: BatchNormOptions = {}): Layer {
  const momentum = o.momentum ?? 0.1, eps = o.eps ?? 1e-5, weightFrozen = o.weightFrozen ?? true;
  if (C % 4) throw new Error(`BatchNorm2d(${C}): num_features must be a multiple of 4 (vec4 kernels)`);
  checkScalar("BatchNorm2d", "momentum", momentum, momentum >= 0 && momentum <= 1);
  checkScalar("BatchNorm2d", "eps", eps, eps >= 0);
  const plain = (name: string, init: Init, role: ParamSpec["role"], group?: string): ParamSpec => ({
    name,
    torchShape: [C],
    storage: "plain",
    init,
    role,
    group,
  });
  const params: ParamSpec[] = [
    plain("weight", "ones", weightFrozen ? "frozen" : "param"),
    plain("bias", "zeros", "param", o.biasGroup),
    plain("running_mean", "zeros", "buffer"),
    plain("running_var", "ones", "buffer"),
  ];
  const shapeOf = (ctx: LayerCtx) => ({ N: ctx.batch, ...ctx.inputs[0].shape });
  const saved = (ctx: LayerCtx) => ({
    mean: ctx.scratch("mean", C * 4),
    invstd: ctx.scratch("invstd", C * 4),
  });
  return {
    kind: "layer",
    type: "BatchNorm2d",
    torch: `nn.BatchNorm2d(${C}, eps=${eps}, momentum=${momentum})` +
      (weightFrozen ? " (weight frozen)" : ""),
    params,
    outShape([s], types) {
      if (types[0] !== "act") throw new Error("BatchNorm2d takes an activation tensor, not f32 logits");
      if (s.C !== C) throw new Error(`expects ${C} channels, got ${s.C}`);
      return { shape: s, dtype: "act" };
    },
    flops([s]) {
      const e = s.H * s.W * s.C; // statistics + normalize; backward: two reductions + dx
      return { forward: 6 * e, weightGrad: 0, inputGrad: 8 * e };
    },
    forward(ctx) {
      const common = {
        x: ctx.inputs[0].buf,
        y: ctx.output.buf,
        weight: ctx.param("weight"),
        bias: ctx.param("bias"),
        runningMean: ctx.param("running_mean"),
        runningVar: ctx.param("running_var"),
        ...shapeOf(ctx),
        eps,
      };
      if (!ctx.training) return [batchNormEvalForward(ctx.gpu, ctx.p, common)];
      return batchNormTrainForward(ctx.gpu, ctx.p, { ...common, ...saved(ctx), momentum });
    },
    backward(ctx, dy, wantInput, grad) {
      if (!ctx.training) throw new Error(`${ctx.label}: BatchNorm2d has no backward in an evaluation net`);
      // The kernel always writes dx (it shares the reduction with dbias): a scratch buffer when unwanted.
      const dx = wantInput[0] ? grad(0) : ctx.scratch("dx_unused", ctx.inputs[0].buf.size);
      const dbias = ctx.trains("bias") ? ctx.grad("bias") : ctx.scratch("dbias_unused", C * 4);
      const ops = batchNormBackward(ctx.gpu, ctx.p, {
        x: ctx.inputs[0].buf,
        dy,
        dx,
        weight: ctx.param("weight"),
        ...saved(ctx),
        dweight: ctx.trains("weight") ? ctx.grad("weight") : undefined,
        dbias,
        ...shapeOf(ctx),
      });
      return {
        ops: ops.map((op) => ({ ...op, pass: "input_grad" as const })),
        dx: [wantInput[0] ? dx : null],
      };
    },
  };
}
