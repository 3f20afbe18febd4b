// Small ops of the network and the training loop (kernels/gelu.wgsl, pool.wgsl, linear.wgsl, loss.wgsl,
// optim.wgsl): GELU, max pooling (plain and fused with GELU), the linear head, the label-smoothed
// cross-entropy, evaluation accuracy, logit averaging, SGD and the lookahead EMA.
//
// Layouts: activations and their gradients NHWC in `act` storage (f32 or f16, math in f32); parameters, their
// gradients, momentum and EMA in flat f32 buffers (sub-ranges bound via GPUBufferBinding); logits and dlogits
// f32 [N][10]; labels u32 [N]. All reductions are deterministic (fixed order, no atomics).

import { type ConstValue, type Precision } from "../gpu/kernels.ts";
import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { STEP_SLOTS } from "../gpu/steps.ts";

type Binding = GPUBuffer | GPUBufferBinding;

/** Number of classes of the linear head and the loss (CLASSES in the kernels). */
export const CLASSES = 10;

const WG = 256; // workgroup size of the elementwise and gather kernels
const DW_LANES = 32; // linear weight gradient: channels per workgroup (DW_LANES in kernels/linear.wgsl)

/** Tests lower this to exercise the 2-D grid path with small tensors. */
export const opsLimits = { maxGroupsPerDim: 65535 };

function grid(gpu: Gpu, groups: number): [number, number] {
  const max = Math.min(opsLimits.maxGroupsPerDim, gpu.device.limits.maxComputeWorkgroupsPerDimension);
  return grid2d(Math.max(1, groups), max);
}

function checkCount(name: string, values: Record<string, number>) {
  for (const [k, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k}=${v} must be a positive integer`);
  }
}

// ---------------------------------------------------------------------------------------------------- GELU

/** Activation tensors hold whole vec4s: every channel count of the network is a multiple of 4. */
function checkVec4(name: string, what: string, v: number) {
  if (v % 4 !== 0) throw new Error(`${name}: ${what}=${v} must be a multiple of 4 (kernels load vec4s)`);
}

/** y = gelu(x) (exact erf form, PyTorch nn.GELU()), elementwise over n `act` values (n % 4 == 0). */
export function geluForward(gpu: Gpu, p: Precision, a: { x: GPUBuffer; y: GPUBuffer; n: number }): Op {
  checkCount("geluForward", { n: a.n });
  checkVec4("geluForward", "n", a.n);
  const count = a.n / 4;
  const pipe = gpu.pipeline("gelu.wgsl", "gelu_fwd", { COUNT: count, WG }, p);
  return dispatch(gpu, "gelu_forward", pipe, [a.x, a.y], grid(gpu, Math.ceil(count / WG)));
}

/** dx = dy * gelu'(x), elementwise over n `act` values (n % 4 == 0). */
export function geluBackward(
  gpu: Gpu,
  p: Precision,
  a: { x: GPUBuffer; dy: GPUBuffer; dx: GPUBuffer; n: number },
): Op {
  checkCount("geluBackward", { n: a.n });
  checkVec4("geluBackward", "n", a.n);
  const count = a.n / 4;
  const pipe = gpu.pipeline("gelu.wgsl", "gelu_bwd", { COUNT: count, WG }, p);
  return dispatch(gpu, "gelu_backward", pipe, [a.x, a.dy, a.dx], grid(gpu, Math.ceil(count / WG)));
}

/** y = a + b, elementwise over n `act` values (n % 4 == 0); a and b may be the same buffer. */
export function addTensors(
  gpu: Gpu,
  p: Precision,
  a: { a: GPUBuffer; b: GPUBuffer; y: GPUBuffer; n: number },
  name = "add",
): Op {
  checkCount("addTensors", { n: a.n });
  checkVec4("addTensors", "n", a.n);
  const count = a.n / 4;
  const pipe = gpu.pipeline("add.wgsl", "add", { COUNT: count, WG }, p);
  return dispatch(gpu, name, pipe, [a.a, a.b, a.y], grid(gpu, Math.ceil(count / WG)));
}

// ------------------------------------------------------------------------------------------------ max pool

interface PoolShape {
  N: number;
  H: number;
  W: number;
  C: number;
  K: number;
}

/** Output size of KxK / stride K max pooling with floor (PyTorch nn.MaxPool2d(K)). */
export function poolOutSize(H: number, W: number, K: number): { HO: number; WO: number } {
  return { HO: Math.floor(H / K), WO: Math.floor(W / K) };
}

function poolSetup(gpu: Gpu, name: string, p: Precision, s: PoolShape, entry: string, backward: boolean) {
  checkCount(name, { N: s.N, H: s.H, W: s.W, C: s.C, K: s.K });
  const { HO, WO } = poolOutSize(s.H, s.W, s.K);
  if (HO < 1 || WO < 1) throw new Error(`${name}: ${s.H}x${s.W} is smaller than the ${s.K}x${s.K} window`);
  checkVec4(name, "C", s.C);
  const CV = s.C / 4;
  const WY = Math.ceil(s.H / s.K), WX = Math.ceil(s.W / s.K);
  const consts = { N: s.N, H: s.H, W: s.W, K: s.K, HO, WO, WY, WX, CV, WG };
  const pipe = gpu.pipeline("pool.wgsl", entry, consts, p);
  const threads = backward ? s.N * WY * WX * CV : s.N * HO * WO * CV;
  return { pipe, groups: grid(gpu, Math.ceil(threads / WG)) };
}

/** y = maxpool_KxK(x), stride K, floor. x [N][H][W][C], y [N][H/K][W/K][C], both `act`. */
export function maxpoolForward(
  gpu: Gpu,
  p: Precision,
  a: { x: GPUBuffer; y: GPUBuffer; N: number; H: number; W: number; C: number; K: number },
): Op {
  const { pipe, groups } = poolSetup(gpu, "maxpoolForward", p, a, "pool_fwd", false);
  return dispatch(gpu, "maxpool_forward", pipe, [a.x, a.y], groups);
}

/**
 * dx = dy routed to the first maximum of each window; every element of dx [N][H][W][C] is written (0 off the
 * argmax and outside the windows). dy [N][H/K][W/K][C].
 */
export function maxpoolBackward(
  gpu: Gpu,
  p: Precision,
  a: { x: GPUBuffer; dy: GPUBuffer; dx: GPUBuffer; N: number; H: number; W: number; C: number; K: number },
): Op {
  const { pipe, groups } = poolSetup(gpu, "maxpoolBackward", p, a, "pool_bwd", true);
  return dispatch(gpu, "maxpool_backward", pipe, [a.x, a.dy, a.dx], groups);
}

/** The ConvGroup's pool -> GELU: pre = maxpool2(x), y = gelu(pre). x [N][H][W][C]; pre, y [N][H/2][W/2][C] */
export function poolGeluForward(
  gpu: Gpu,
  p: Precision,
  a: { x: GPUBuffer; pre: GPUBuffer; y: GPUBuffer; N: number; H: number; W: number; C: number },
): Op {
  const { pipe, groups } = poolSetup(gpu, "poolGeluForward", p, { ...a, K: 2 }, "pool_gelu_fwd", false);
  return dispatch(gpu, "pool_gelu_forward", pipe, [a.x, a.pre, a.y], groups);
}

/** dx = route(dy * gelu'(pre)) to the argmax of each 2x2 window; dx [N][H][W][C] fully written. */
export function poolGeluBackward(
  gpu: Gpu,
  p: Precision,
  a: {
    x: GPUBuffer;
    pre: GPUBuffer;
    dy: GPUBuffer;
    dx: GPUBuffer;
    N: number;
    H: number;
    W: number;
    C: number;
  },
): Op {
  const { pipe, groups } = poolSetup(gpu, "poolGeluBackward", p, { ...a, K: 2 }, "pool_gelu_bwd", true);
  return dispatch(gpu, "pool_gelu_backward", pipe, [a.x, a.dy, a.dx, a.pre], groups);
}

// --------------------------------------------------------------------------------------------- linear head

function linearConsts(name: string, N: number, C: number, scale: number) {
  checkCount(name, { N, C });
  if (!Number.isFinite(scale)) throw new Error(`${name}: scale=${scale} is not finite`);
  return { N, C, SCALE: { f32: scale }, WG, CLASSES };
}

/** logits[n][k] = scale * sum_c x[n][c] * w[k][c]. x `act` [N][C], w f32 [10][C], logits f32 [N][10]. */
export function linearForward(
  gpu: Gpu,
  p: Precision,
  a: { x: GPUBuffer; w: Binding; logits: GPUBuffer; N: number; C: number; scale: number },
): Op {
  const pipe = gpu.pipeline("linear.wgsl", "linear_fwd", linearConsts("linearForward", a.N, a.C, a.scale), p);
  return dispatch(gpu, "linear_forward", pipe, [a.x, a.w, a.logits], grid(gpu, a.N));
}

/**
 * dx[n][c] = scale * sum_k dlogits[n][k] * w[k][c] (`act` [N][C]) and
 * dw[k][c] = scale * sum_n dlogits[n][k] * x[n][c] (f32 [10][C], written, not accumulated).
 */
export function linearBackward(
  gpu: Gpu,
  p: Precision,
  a: {
    x: GPUBuffer;
    w: Binding;
    dlogits: GPUBuffer;
    dx: GPUBuffer;
    dw: Binding;
    N: number;
    C: number;
    scale: number;
  },
): Op[] {
  const consts = linearConsts("linearBackward", a.N, a.C, a.scale);
  const dxPipe = gpu.pipeline("linear.wgsl", "linear_bwd_dx", consts, p);
  const dwPipe = gpu.pipeline("linear.wgsl", "linear_bwd_dw", consts, p);
  return [
    dispatch(
      gpu,
      "linear_backward_dx",
      dxPipe,
      [a.dlogits, a.w, a.dx],
      grid(gpu, Math.ceil((a.N * a.C) / WG)),
    ),
    dispatch(gpu, "linear_backward_dw", dwPipe, [a.x, a.dlogits, a.dw], [Math.ceil(a.C / DW_LANES)]),
  ];
}

// ------------------------------------------------------------------------------------------ loss, accuracy

/**
 * Cross-entropy with label smoothing, summed over the batch (PyTorch CrossEntropyLoss(label_smoothing,
 * reduction='sum')): dlogits = softmax(logits) - ((1 - eps) * onehot + eps / 10); stats[2 * step] = loss sum,
 * stats[2 * step + 1] = number of rows with argmax == label (f32), step read from the Step uniform `stepBuf`.
 * logits, dlogits f32 [N][10]; labels u32 [N]; stats f32 [steps][2]. One workgroup (deterministic sums).
 */
export function crossEntropy(
  gpu: Gpu,
  a: {
    logits: GPUBuffer;
    labels: GPUBuffer;
    dlogits: GPUBuffer;
    stats: GPUBuffer;
    stepBuf: GPUBuffer;
    N: number;
    smoothing: number;
  },
): Op[] {
  checkCount("crossEntropy", { N: a.N });
  if (!(a.smoothing >= 0 && a.smoothing <= 1)) throw new Error(`crossEntropy: smoothing=${a.smoothing}`);
  const pipe = gpu.pipeline("loss.wgsl", "cross_entropy", {
    N: a.N,
    CLASSES,
    SMOOTHING: { f32: a.smoothing },
  });
  return [dispatch(gpu, "cross_entropy", pipe, [a.logits, a.labels, a.dlogits, a.stats, a.stepBuf], [1])];
}

/** out[slot] (u32) = number of rows n with argmax(logits[n]) == labels[n] (first maximum wins ties). */
export function countCorrect(
  gpu: Gpu,
  a: { logits: GPUBuffer; labels: GPUBuffer; out: GPUBuffer; slot: number; N: number },
): Op {
  checkCount("countCorrect", { N: a.N });
  if (!Number.isInteger(a.slot) || a.slot < 0 || (a.slot + 1) * 4 > a.out.size) {
    throw new Error(`countCorrect: slot ${a.slot} outside the ${a.out.size}-byte output buffer`);
  }
  const pipe = gpu.pipeline("accuracy.wgsl", "count_correct", { N: a.N, CLASSES });
  const args = gpu.uniform(new Uint32Array([a.slot, 0, 0, 0]), "count_correct.slot");
  return dispatch(gpu, "count_correct", pipe, [a.logits, a.labels, a.out, args], [1]);
}

// ---------------------------------------------------------------------------------------- flat f32 kernels

/** The pipeline of kernels/<entry>.wgsl (one entry point, named as its file) over n f32 values, and its grid. */
function flatPipeline(
  gpu: Gpu,
  name: string,
  entry: string,
  n: number,
  consts: Record<string, ConstValue> = {},
) {
  checkCount(name, { n });
  const pipe = gpu.pipeline(`${entry}.wgsl`, entry, { ...consts, COUNT: n, WG });
  return { pipe, groups: grid(gpu, Math.ceil(n / WG)) };
}

/** A Step slot index, or the mask of one Step flag bit, as a pipeline constant. */
function checkSlot(name: string, what: string, v: number, below: number) {
  if (!Number.isInteger(v) || v < 0 || v >= below) {
    throw new Error(`${name}: ${what} ${v} not in [0, ${below})`);
  }
}

function checkBit(name: string, what: string, mask: number) {
  if (!Number.isInteger(mask) || mask <= 0 || mask > 0x80000000 || (mask & (mask - 1)) !== 0) {
    throw new Error(`${name}: ${what} ${mask} is not one flag bit`);
  }
}

/** acc = a * acc + b * x over n f32 values (TTA logit averaging); a = 0 overwrites (even a NaN acc). */
export function scaleAdd(gpu: Gpu, a: { acc: GPUBuffer; x: GPUBuffer; n: number; a: number; b: number }): Op {
  const { pipe, groups } = flatPipeline(gpu, "scaleAdd", "scale_add", a.n);
  const args = gpu.uniform(new Float32Array([a.a, a.b, 0, 0]), "scale_add.args");
  return dispatch(gpu, "scale_add", pipe, [a.acc, a.x, args], groups);
}

/**
 * The settings of one SGD dispatch (torch.optim.SGD, dampening 0): its lr is the Step's slot `lrSlot` each
 * step; momentum, weight decay (coupled, as torch: g = grad + wd * p) and Nesterov are constant over the run.
 * With a gate, elements [gate.start, gate.end) train only in steps whose flags have `gate.bit` (a mask).
 */
export interface SgdSettings {
  lrSlot: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
  gate?: { start: number; end: number; bit: number };
}

/**
 * One step of torch.optim.SGD over n f32 values: g = grad + wd * p; buf = mom * buf + g; then
 * p -= lr * (g + mom * buf) (Nesterov) or p -= lr * buf.
 */
export function sgdStep(
  gpu: Gpu,
  a: { params: Binding; grads: Binding; mom: Binding; n: number; stepBuf: GPUBuffer } & SgdSettings,
  name = "sgd_step",
): Op {
  checkSlot("sgdStep", "lr slot", a.lrSlot, STEP_SLOTS);
  if (!(a.momentum >= 0 && a.momentum < 1) || !(a.weightDecay >= 0) || !Number.isFinite(a.weightDecay)) {
    throw new Error(`sgdStep: momentum ${a.momentum} must be in [0, 1), weight decay ${a.weightDecay} >= 0`);
  }
  if (a.nesterov && a.momentum === 0) throw new Error("sgdStep: Nesterov momentum needs momentum > 0");
  const gate = a.gate ?? { start: 0, end: 0, bit: 1 };
  if (
    !Number.isInteger(gate.start) || !Number.isInteger(gate.end) || gate.start < 0 || gate.end < gate.start
  ) {
    throw new Error(`sgdStep: gate [${gate.start}, ${gate.end}) is not a range`);
  }
  if (gate.end > a.n) throw new Error(`sgdStep: gate [${gate.start}, ${gate.end}) outside [0, ${a.n})`);
  checkBit("sgdStep", "gate bit", gate.bit);
  const { pipe, groups } = flatPipeline(gpu, "sgdStep", "sgd", a.n, {
    LR_SLOT: a.lrSlot,
    // rounded to f32 here: the constant's decimal text then reads back as exactly that f32
    MOMENTUM: { f32: Math.fround(a.momentum) },
    WEIGHT_DECAY: { f32: Math.fround(a.weightDecay) },
    NESTEROV: a.nesterov,
    GATE_START: gate.start,
    GATE_END: gate.end,
    GATE_BIT: { u32: gate.bit },
  });
  return dispatch(gpu, name, pipe, [a.params, a.grads, a.mom, a.stepBuf], groups);
}

/**
 * Lookahead over n f32 values: in steps whose flags have `eventBit` (a mask), ema = torch.lerp(ema, params,
 * 1 - decay) and params = ema, with decay the Step's slot `decaySlot`; in other steps nothing.
 */
export function emaUpdate(
  gpu: Gpu,
  a: { params: Binding; ema: Binding; n: number; stepBuf: GPUBuffer; decaySlot: number; eventBit: number },
  name = "ema_update",
): Op {
  checkSlot("emaUpdate", "decay slot", a.decaySlot, STEP_SLOTS);
  checkBit("emaUpdate", "event bit", a.eventBit);
  const { pipe, groups } = flatPipeline(gpu, "emaUpdate", "lookahead", a.n, {
    DECAY_SLOT: a.decaySlot,
    EVENT_BIT: { u32: a.eventBit },
  });
  return dispatch(gpu, name, pipe, [a.params, a.ema, a.stepBuf], groups);
}
