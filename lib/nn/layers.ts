// The layers an experiment builds its network from (see lib/nn/module.ts for the API). Each one names its
// PyTorch counterpart, owns its state-dict entries, infers its output shape, counts its FLOPs and builds its
// forward and backward ops from the kernels in lib/nn/conv.ts and lib/nn/ops.ts.
//
//   Conv2d(cin, cout, k, { padding, bias, frozenWeight, weightInit, biasGroup })   nn.Conv2d (stride 1)
//   GELU()                                      nn.GELU() (exact erf form)
//   MaxPool2d(k)                                nn.MaxPool2d(k); followed by GELU with k = 2: one fused
//   kernel GlobalMaxPool()                             nn.MaxPool2d(H) on an H x H map: 1 x 1 out
//   Flatten()                                   x.view(N, -1) of a 1 x 1 map
//   Linear(cin, 10, { bias: false })            nn.Linear; followed by Mul(s): one kernel, logits in f32
//   Mul(s)                                      x * s (the recipe's Mul), fused into the Linear before it
//   Residual(fn)                                x + fn(x)

import { convForward, convInputGrad, convWeightGrad } from "./conv.ts";
import { biasGrad, type ConvShape, outSize } from "./conv_base.ts";
import type { Op } from "../gpu/gpu.ts";
import {
  type Container,
  type DType,
  type Flops,
  type Init,
  type Layer,
  type LayerCtx,
  type Module,
  type ParamSpec,
  residualWith,
  type Shape,
} from "./module.ts";
import {
  addTensors,
  CLASSES,
  geluBackward,
  geluForward,
  linearBackward,
  linearForward,
  maxpoolBackward,
  maxpoolForward,
  poolGeluBackward,
  poolGeluForward,
} from "./ops.ts";

/** Tag ops with the pass they belong to (bench's per-layer table). */
function asPass(ops: Op[], pass: "input_grad" | "weight_grad"): Op[] {
  return ops.map((op) => ({ ...op, pass }));
}

const NO_FLOPS: Flops = { forward: 0, weightGrad: 0, inputGrad: 0 };

function elems(s: Shape): number {
  return s.H * s.W * s.C;
}

function actInput(types: DType[], what: string) {
  if (types[0] !== "act") throw new Error(`${what} takes an activation tensor, not f32 logits`);
}

/** The output tensor's element count for the whole batch. */
function batchElems(ctx: LayerCtx, s: Shape = ctx.output.shape): number {
  return ctx.batch * elems(s);
}

// ------------------------------------------------------------------------------------------ convolution

export interface ConvOptions {
  padding?: "same" | number;
  bias?: boolean;
  /** The weight never trains (the whitening filters); it is set by the experiment when weightInit is "external". */
  frozenWeight?: boolean;
  weightInit?: Init;
  /** Optimizer group of the bias (lib/train/train_step.ts), e.g. one trained only for the first epochs. */
  biasGroup?: string;
}

/** nn.Conv2d(cin, cout, k, padding, bias), stride 1; the recipe's init (dirac, zero bias) by default. */
export function Conv2d(cin: number, cout: number, k: number, o: ConvOptions = {}): Layer {
  const pad = o.padding === undefined || o.padding === "same" ? (k - 1) / 2 : o.padding;
  if (!Number.isInteger(pad)) throw new Error(`Conv2d: padding "same" needs an odd kernel size (k=${k})`);
  if (cout % 4) {
    throw new Error(`Conv2d(${cin}, ${cout}): out_channels must be a multiple of 4 (vec4 kernels)`);
  }
  const params: ParamSpec[] = [{
    name: "weight",
    torchShape: [cout, cin, k, k],
    storage: "hwio",
    init: o.weightInit ?? "conv_dirac",
    role: o.frozenWeight ? "frozen" : "param",
  }];
  if (o.bias) {
    params.push({
      name: "bias",
      torchShape: [cout],
      storage: "plain",
      init: "zeros",
      role: "param",
      group: o.biasGroup,
    });
  }
  const shapeOf = (ctx: LayerCtx): ConvShape => {
    const s = ctx.inputs[0].shape;
    return { N: ctx.batch, H: s.H, W: s.W, CI: s.C, CO: cout, KH: k, KW: k, PAD: pad };
  };
  const flopsOf = (s: Shape) => {
    const { HO, WO } = outSize({ N: 1, H: s.H, W: s.W, CI: s.C, CO: cout, KH: k, KW: k, PAD: pad });
    return 2 * HO * WO * k * k * cin * cout;
  };
  return {
    kind: "layer",
    type: "Conv2d",
    torch: `nn.Conv2d(${cin}, ${cout}, kernel_size=${k}, padding=${pad}, bias=${o.bias ? "True" : "False"})`,
    params,
    outShape([s], types) {
      actInput(types, "Conv2d");
      const want = Math.ceil(cin / 4) * 4;
      if (s.C !== want) throw new Error(`expects ${cin} input channels, got ${s.C}`);
      const H = s.H + 2 * pad - k + 1, W = s.W + 2 * pad - k + 1;
      if (H < 1 || W < 1) throw new Error(`a ${s.H}x${s.W} input is smaller than the ${k}x${k} kernel`);
      return { shape: { H, W, C: cout }, dtype: "act" };
    },
    flops([s]) {
      const f = flopsOf(s);
      return { forward: f, weightGrad: o.frozenWeight ? 0 : f, inputGrad: f };
    },
    forward(ctx) {
      const b = o.bias ? ctx.param("bias") : { buffer: ctx.scratch("zero_bias", cout * 4) };
      const a = { x: ctx.inputs[0].buf, w: ctx.param("weight"), b, y: ctx.output.buf };
      return [convForward(ctx.gpu, ctx.p, shapeOf(ctx), a, ctx.tiles, ctx.label)];
    },
    backward(ctx, dy, wantInput, grad) {
      const { gpu, p, tiles, label } = ctx, s = shapeOf(ctx), ops: Op[] = [];
      const db = o.bias && ctx.trains("bias") ? ctx.grad("bias") : undefined;
      if (ctx.trains("weight")) {
        const a = { x: ctx.inputs[0].buf, dy, dw: ctx.grad("weight"), db };
        ops.push(...asPass(convWeightGrad(gpu, p, s, a, tiles, label), "weight_grad"));
      } else if (db) {
        const { HO, WO } = outSize(s);
        const a = { dy, db, M: s.N * HO * WO, C: cout };
        ops.push(...asPass(biasGrad(gpu, p, a, tiles.WG, `${label}.bias_grad`), "weight_grad"));
      }
      if (!wantInput[0]) return { ops, dx: [null] };
      const dx = grad(0);
      const a = { dy, w: ctx.param("weight"), dx };
      ops.push(...asPass(convInputGrad(gpu, p, s, a, tiles, label), "input_grad"));
      return { ops, dx: [dx] };
    },
  };
}

// ------------------------------------------------------------------------------------------ activations

/** nn.GELU(): y = x * Phi(x), exact. */
export function GELU(): Layer {
  return {
    kind: "layer",
    type: "GELU",
    torch: "nn.GELU()",
    params: [],
    outShape([s], types) {
      actInput(types, "GELU");
      return { shape: s, dtype: "act" };
    },
    flops: () => NO_FLOPS,
    forward: (ctx) => [
      geluForward(ctx.gpu, ctx.p, { x: ctx.inputs[0].buf, y: ctx.output.buf, n: batchElems(ctx) }),
    ],
    backward(ctx, dy, _want, grad) {
      const dx = grad(0);
      const a = { x: ctx.inputs[0].buf, dy, dx, n: batchElems(ctx) };
      return { ops: [geluBackward(ctx.gpu, ctx.p, a)], dx: [dx] };
    },
  };
}

// ------------------------------------------------------------------------------------------ pooling

function poolShape(s: Shape, K: number): Shape {
  const H = Math.floor(s.H / K), W = Math.floor(s.W / K);
  if (H < 1 || W < 1) {
    throw new Error(`a ${s.H}x${s.W} map is smaller than the ${K}x${K} window (too many blocks for 32x32?)`);
  }
  return { H, W, C: s.C };
}

/** nn.MaxPool2d(K) (stride K, floor); the first maximum of a window gets the gradient. */
export function MaxPool2d(K: number, global = false): Layer {
  const kOf = (s: Shape) => (global ? s.H : K);
  const layer: Layer = {
    kind: "layer",
    type: global ? "GlobalMaxPool" : "MaxPool2d",
    torch: global ? "nn.MaxPool2d(H) (H x H input)" : `nn.MaxPool2d(${K})`,
    params: [],
    outShape([s], types) {
      actInput(types, "MaxPool2d");
      if (global && s.H !== s.W) throw new Error(`a global max pool needs a square map, got ${s.H}x${s.W}`);
      return { shape: poolShape(s, kOf(s)), dtype: "act" };
    },
    flops: () => NO_FLOPS,
    forward(ctx) {
      const s = ctx.inputs[0].shape;
      const a = { x: ctx.inputs[0].buf, y: ctx.output.buf, N: ctx.batch, ...s, K: kOf(s) };
      return [maxpoolForward(ctx.gpu, ctx.p, a)];
    },
    backward(ctx, dy, _want, grad) {
      const s = ctx.inputs[0].shape, dx = grad(0);
      const a = { x: ctx.inputs[0].buf, dy, dx, N: ctx.batch, ...s, K: kOf(s) };
      return { ops: [maxpoolBackward(ctx.gpu, ctx.p, a)], dx: [dx] };
    },
    fuse: (next) => (!global && K === 2 && next.type === "GELU" ? PoolGelu() : undefined),
  };
  return layer;
}

/** nn.MaxPool2d(H) on an H x H map: the last pool of the network, whatever the number of blocks. */
export function GlobalMaxPool(): Layer {
  return MaxPool2d(0, true);
}

/** MaxPool2d(2) then GELU in one kernel; keeps the pooled values (`pre`) for the backward. */
function PoolGelu(): Layer {
  const pre = (ctx: LayerCtx) => ctx.scratch("pre", ctx.output.buf.size);
  return {
    kind: "layer",
    type: "MaxPool2d+GELU",
    torch: "nn.MaxPool2d(2), nn.GELU()",
    params: [],
    outShape([s], types) {
      actInput(types, "MaxPool2d");
      return { shape: poolShape(s, 2), dtype: "act" };
    },
    flops: () => NO_FLOPS,
    forward(ctx) {
      const a = {
        x: ctx.inputs[0].buf,
        pre: pre(ctx),
        y: ctx.output.buf,
        N: ctx.batch,
        ...ctx.inputs[0].shape,
      };
      return [poolGeluForward(ctx.gpu, ctx.p, a)];
    },
    backward(ctx, dy, _want, grad) {
      const dx = grad(0);
      const a = { x: ctx.inputs[0].buf, pre: pre(ctx), dy, dx, N: ctx.batch, ...ctx.inputs[0].shape };
      return { ops: [poolGeluBackward(ctx.gpu, ctx.p, a)], dx: [dx] };
    },
  };
}

// ------------------------------------------------------------------------------------------ head

/** x.view(N, -1) of a 1 x 1 map (NHWC and PyTorch's NCHW flatten agree only there). */
export function Flatten(): Layer {
  return {
    kind: "layer",
    type: "Flatten",
    torch: "Flatten()",
    params: [],
    aliasInput: true,
    outShape([s]) {
      if (s.H !== 1 || s.W !== 1) {
        throw new Error(`expects a 1x1 map (put a GlobalMaxPool before it), got ${s.H}x${s.W}`);
      }
      return { shape: s, dtype: "act" };
    },
    flops: () => NO_FLOPS,
    forward: () => [],
    backward: (_ctx, dy) => ({ ops: [], dx: [dy] }),
  };
}

/** nn.Linear(cin, 10, bias=False), times `scale` (a following Mul fuses into it); logits in f32. */
export function Linear(cin: number, cout: number, o: { bias?: boolean } = {}, scale = 1): Layer {
  if (cout !== CLASSES || o.bias) {
    throw new Error(`Linear(${cin}, ${cout}): the head kernel computes ${CLASSES} outputs without a bias`);
  }
  const args = (ctx: LayerCtx) => ({
    x: ctx.inputs[0].buf,
    w: ctx.param("weight"),
    N: ctx.batch,
    C: cin,
    scale,
  });
  return {
    kind: "layer",
    type: "Linear",
    torch: `nn.Linear(${cin}, ${cout}, bias=False)${scale !== 1 ? `, Mul(${scale})` : ""}`,
    params: [{
      name: "weight",
      torchShape: [cout, cin],
      storage: "plain",
      init: "kaiming_uniform",
      role: "param",
    }],
    outShape([s], types) {
      actInput(types, "Linear");
      if (s.H * s.W !== 1 || s.C !== cin) throw new Error(`expects [N, ${cin}], got ${s.H}x${s.W}x${s.C}`);
      return { shape: { H: 1, W: 1, C: cout }, dtype: "f32" };
    },
    flops: () => ({ forward: 2 * cin * cout, weightGrad: 2 * cin * cout, inputGrad: 2 * cin * cout }),
    forward: (ctx) => [linearForward(ctx.gpu, ctx.p, { ...args(ctx), logits: ctx.output.buf })],
    backward(ctx, dy, wantInput, grad) {
      const dx = grad(0);
      const [dxOp, dwOp] = linearBackward(ctx.gpu, ctx.p, {
        ...args(ctx),
        dlogits: dy,
        dx,
        dw: ctx.grad("weight"),
      });
      return {
        ops: [...asPass([dxOp], "input_grad"), ...asPass([dwOp], "weight_grad")],
        dx: [wantInput[0] ? dx : null],
      };
    },
    fuse: (
      next,
    ) => (next.type === "Mul" ? Linear(cin, cout, o, scale * Number(next.args?.scale)) : undefined),
  };
}

/** x * scale (the recipe's Mul); supported right after Linear, whose kernel applies it. */
/** Why `v` cannot be a WGSL f32 factor (it must be a finite, nonzero, normal f32), or undefined. */
export function f32FactorProblem(v: number): string | undefined {
  const MIN_NORMAL = 2 ** -126;
  const f = Math.fround(v);
  if (!Number.isFinite(f) || Math.abs(f) < MIN_NORMAL) {
    return `expected a finite nonzero f32 (${MIN_NORMAL.toPrecision(2)} <= |x| <= 3.4e38)`;
  }
  return undefined;
}

export function Mul(scale: number): Layer {
  const why = f32FactorProblem(scale);
  if (why) throw new Error(`Mul(${scale}): ${why}`);
  return {
    kind: "layer",
    type: "Mul",
    args: { scale },
    torch: `Mul(${scale})`,
    params: [],
    outShape() {
      throw new Error("Mul is supported directly after Linear (the head kernel applies the scale)");
    },
    flops: () => NO_FLOPS,
    forward: () => [],
    backward: (_ctx, dy) => ({ ops: [], dx: [dy] }),
  };
}

// ------------------------------------------------------------------------------------------ residual

/** y = a + b of two activations of the same shape; both inputs get the output's gradient. */
export function Add(): Layer {
  return {
    kind: "layer",
    type: "Add",
    torch: "torch.add",
    params: [],
    outShape([a, b], types) {
      if (types.some((t) => t !== "act")) throw new Error("adds activation tensors only");
      if (a.H !== b.H || a.W !== b.W || a.C !== b.C) {
        throw new Error(`shapes differ: ${a.H}x${a.W}x${a.C} and ${b.H}x${b.W}x${b.C}`);
      }
      return { shape: a, dtype: "act" };
    },
    flops: () => NO_FLOPS,
    forward(ctx) {
      const [a, b] = ctx.inputs.map((t) => t.buf);
      return [addTensors(ctx.gpu, ctx.p, { a, b, y: ctx.output.buf, n: batchElems(ctx) }, ctx.label)];
    },
    backward: (_ctx, dy, want) => ({ ops: [], dx: want.map((w) => (w ? dy : null)) }),
  };
}

/** x + fn(x) (fn keeps the shape): state-dict names `<i>.fn.<...>`. */
export function Residual(fn: Module): Container {
  return residualWith(fn, Add());
}
