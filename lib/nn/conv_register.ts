// The "register" kind of convolution variant (kernels/conv.wgsl, kernels/conv_wgrad.wgsl): implicit GEMM with
// register blocking, vec4 global loads and no workgroup memory (fastest on CPU adapters such as lavapipe,
// where workgroup memory and barriers buy nothing). Each invocation owns TM x 4*TN4 outputs (forward: TM
// pixels x 4*TN4 channels; weight gradient: TM input channels, a multiple of 4, x 4*TN4 output channels); WG
// invocations per workgroup. The input gradient is the forward kernel on dy with the weights transposed.

import { dispatch, type Gpu, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import {
  type ConvKind,
  type ConvPass,
  type ConvShape,
  DEFAULT_SPLIT_TARGET,
  DEFAULT_WG,
  directMultiplies,
  type ForwardBuffers,
  groups,
  largestDivisor,
  maxInvocations,
  outSize,
  registerBlockProblem,
  sizesProblem,
  splitCount,
  splitWeightGrad,
  transposedInputGrad,
  withVariant,
} from "./conv_base.ts";

export interface RegisterVariant {
  kind: "register";
  TM: number;
  TN4: number;
  WG: number;
}

const reg = (TM: number, TN4: number, WG = 64): RegisterVariant => ({ kind: "register", TM, TN4, WG });

function id(v: RegisterVariant): string {
  return `register-${v.TM}x${4 * v.TN4}-wg${v.WG}`;
}

/** The blocks shrunk to what the shape's channel counts divide (as the register kernels always did). */
function fit(v: RegisterVariant, pass: ConvPass, s: ConvShape): RegisterVariant {
  const TN4 = largestDivisor(s.CO / 4, [v.TN4, 2, 1]);
  if (pass !== "weight_grad") return { ...v, TN4 };
  return { ...v, TM: 4 * largestDivisor(s.CI / 4, [Math.max(1, v.TM / 4), 2, 1]), TN4 };
}

function forward(gpu: Gpu, p: Precision, s: ConvShape, a: ForwardBuffers, v: RegisterVariant, name: string) {
  const { HO, WO } = outSize(s);
  const { TM, TN4, WG } = v;
  const threads = Math.ceil((s.N * HO * WO) / TM) * (s.CO / 4 / TN4);
  const pipe = gpu.pipeline("conv.wgsl", "conv_forward", { ...s, HO, WO, TM, TN4, WG }, p);
  return withVariant(dispatch(gpu, name, pipe, [a.x, a.w, a.b, a.y], groups(gpu, threads, WG).grid), id(v));
}

export const REGISTER_KIND: ConvKind<RegisterVariant> = {
  name: "register",
  files: [
    "conv.wgsl",
    "conv_transpose.wgsl",
    "conv_wgrad.wgsl",
    "conv_bias_grad.wgsl",
    "reduce_splits.wgsl",
    "reduce_splits2.wgsl",
  ],
  id,
  parse(text) {
    const m = /^register-(\d+)x(\d+)-wg(\d+)$/.exec(text);
    return m ? reg(+m[1], +m[2] / 4, +m[3]) : undefined;
  },
  invalid: (v, pass) =>
    sizesProblem({ TM: v.TM, TN: 4 * v.TN4, WG: v.WG }) ?? registerBlockProblem(v.TM, v.TN4, pass),
  unfit(v, limits) {
    const max = maxInvocations(limits);
    return v.WG > max ? `${v.WG} invocations > ${max}` : undefined;
  },
  fit,
  // 8 pixels x 8 channels per invocation for the forward and 8 input x 16 output channels for the weight
  // gradient first: measured fastest on lavapipe (larger blocks spill registers)
  candidates: (pass) =>
    pass === "weight_grad"
      ? [reg(8, 4), reg(4, 4), reg(8, 2), reg(4, 2)]
      : [reg(8, 2), reg(4, 2), reg(8, 4), reg(4, 4)],
  fromTiles: (t, pass) => pass === "weight_grad" ? reg(4 * t.TMV, t.TN4W, t.WG) : reg(t.TM, t.TN4, t.WG),
  multiplies: (s) => directMultiplies(s),
  forward,
  inputGrad: (gpu, p, s, a, v, o, name) =>
    transposedInputGrad(gpu, s, a, o.WG ?? DEFAULT_WG, name, (ts, fa) => forward(gpu, p, ts, fa, v, name)),
  weightGrad(gpu, p, s, a, v, o, name): Op[] {
    const WG = o.WG ?? DEFAULT_WG;
    const { HO, WO } = outSize(s);
    const TMV = v.TM / 4, TN4 = v.TN4;
    const blocks = (s.CO / 4 / TN4) * s.KH * s.KW * (s.CI / 4 / TMV);
    return splitWeightGrad(gpu, s, a, WG, name, (K) => {
      const KSPLIT = splitCount(K, blocks, o.splitTarget ?? DEFAULT_SPLIT_TARGET);
      const consts = { ...s, HO, WO, TMV, TN4, KSPLIT, WG: v.WG };
      const pipe = gpu.pipeline("conv_wgrad.wgsl", "conv_wgrad", consts, p);
      const grid = groups(gpu, blocks * KSPLIT, v.WG).grid;
      return {
        KSPLIT,
        weights: (part) => withVariant(dispatch(gpu, `${name}.w`, pipe, [a.x, a.dy, part], grid), id(v)),
        // kernels/conv_bias_grad.wgsl's bias_grad into the partials (reduced with the weights')
        bias(part, KSPLITB) {
          const bconsts = { M: K, CO: s.CO, KSPLIT: KSPLITB, WG };
          const bpipe = gpu.pipeline("conv_bias_grad.wgsl", "bias_grad", bconsts, p);
          return dispatch(gpu, `${name}.b`, bpipe, [a.dy, part], groups(gpu, (s.CO / 4) * KSPLITB, WG).grid);
        },
      };
    });
  },
};
