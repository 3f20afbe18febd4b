// The layer API: an experiment declares its network as modules (as PyTorch's nn.Sequential), and everything
// else is derived from that declaration by tracing it once, without a GPU:
//   - the parameters with PyTorch state-dict names from their position (`0.weight`, `2.conv1.bias`, ...),
//   - every tensor's shape (per image, NHWC) and whether it needs a gradient,
//   - the FLOPs, the largest batch the adapter's binding limit allows, the bench's per-layer table.
// lib/nn/model.ts then turns the traced graph into GPU buffers and ops (forward in trace order, backward in
// the reverse order; where a tensor feeds two consumers, their gradients are summed).
//
// A module is either a Layer (a leaf: knows its parameters, output shape, FLOPs, forward and backward ops) or
// a container (Sequential, Named, Residual) that traces its children. Containers fuse a layer with the next
// one where a fused kernel exists (max-pool 2 -> GELU, linear -> scale): the state-dict names do not change.

import type { ConvTiles } from "./conv.ts";
import type { Gpu, Op } from "../gpu/gpu.ts";
import type { Precision } from "../gpu/kernels.ts";

/** Shape of one image's activation, NHWC without the batch; C is the stored channel count (a multiple of 4). */
export interface Shape {
  H: number;
  W: number;
  C: number;
}

/** Activations are stored in the run's precision (`act`); logits are always f32. */
export type DType = "act" | "f32";

/**
 * How an entry is initialised: "kaiming_uniform" is PyTorch's default U(+-1/sqrt(fan_in)); "conv_dirac" is
 * that, then dirac_ on the first in_channels filters (the recipe's Conv); "external" is set by the
 * experiment (e.g. the whitening filters from data).
 */
export type Init = "kaiming_uniform" | "conv_dirac" | "zeros" | "ones" | "external";

/** An entry of a layer's state dict. */
export interface ParamSpec {
  name: string; // local name: "weight", "bias", "running_mean"
  torchShape: number[];
  /** "hwio": a PyTorch OIHW convolution weight, stored HWIO with the input channels padded to a multiple of 4. */
  storage: "plain" | "hwio";
  init: Init;
  /**
   * "param": trained by the optimizer; "frozen": a parameter that never trains (no gradient); "buffer": state
   * updated by the layer itself (BatchNorm running statistics). Frozen parameters and buffers are in the
   * state dict; buffers are also averaged by the lookahead EMA.
   */
  role: "param" | "frozen" | "buffer";
  /** Optimizer group of a trained parameter (lr multiplier, gate): see lib/train/train_step.ts. Default "default". */
  group?: string;
}

/** FLOPs of a layer per image: forward, weight gradient (0 when frozen) and input gradient. */
export interface Flops {
  forward: number;
  weightGrad: number;
  inputGrad: number;
}

export interface TensorBuf {
  buf: GPUBuffer;
  shape: Shape;
  dtype: DType;
}

/** What a layer sees when it builds its ops for one batch size. */
export interface LayerCtx {
  gpu: Gpu;
  p: Precision;
  batch: number;
  tiles: ConvTiles;
  label: string; // the layer's path, e.g. "2.conv1"
  /** The training net (batch statistics, running-stat updates) or an evaluation net (PyTorch's eval()). */
  training: boolean;
  inputs: TensorBuf[];
  output: TensorBuf;
  /** The binding of a state-dict entry (by local name), and of its gradient (trained parameters only). */
  param(local: string): GPUBufferBinding;
  grad(local: string): GPUBufferBinding;
  trains(local: string): boolean;
  /** A buffer owned by this layer for this batch size (same buffer for forward and backward). */
  scratch(key: string, bytes: number): GPUBuffer;
}

export interface Layer {
  readonly kind: "layer";
  readonly type: string; // "Conv2d", "GELU", ...
  readonly params: ParamSpec[];
  /** Output shape and dtype; throws naming the problem when the inputs do not fit. */
  outShape(inputs: Shape[], inputTypes: DType[]): { shape: Shape; dtype: DType };
  flops(inputs: Shape[]): Flops;
  forward(ctx: LayerCtx): Op[];
  /**
   * Ops writing the gradients of the trained parameters and of each input whose gradient is wanted
   * (`wantInput[i]`); returns those input gradients. `grad(i)` allocates a buffer for input i; a layer that
   * passes the gradient through unchanged may return `dy` itself.
   */
  backward(
    ctx: LayerCtx,
    dy: GPUBuffer,
    wantInput: boolean[],
    grad: (i: number) => GPUBuffer,
  ): { ops: Op[]; dx: (GPUBuffer | null)[] };
  /** A layer computing this layer followed by `next` in one kernel, when there is one. */
  fuse?(next: Layer): Layer | undefined;
  /** The output is the input's buffer, reinterpreted (Flatten): no ops, the gradient passes through. */
  readonly aliasInput?: boolean;
  /** The equivalent PyTorch module, for logs and the oracle. */
  readonly torch: string;
  /** Constructor arguments another layer may need to fuse with this one (Mul's scale). */
  readonly args?: Record<string, number>;
}

export interface Container {
  readonly kind: "container";
  readonly type: string;
  /** Trace the children: nodes into `t`, parameter names under `prefix`; returns the output tensor. */
  trace(t: Tracer, x: number, prefix: string): number;
}

export type Module = Layer | Container;

// ------------------------------------------------------------------------------------------ the graph

export interface TensorInfo {
  id: number;
  shape: Shape;
  dtype: DType;
  requiresGrad: boolean;
}

export interface ParamInfo extends ParamSpec {
  local: string; // the name inside its layer
  name: string; // full state-dict name
  node: string; // label of the layer that owns it
  group: string;
  ciPad: number; // stored input channels of an "hwio" weight (torch's I rounded up to 4)
}

export interface NodeInfo {
  label: string;
  layer: Layer;
  prefix: string; // state-dict prefix of the layer's entries
  inputs: number[];
  output: number;
  /** Whether the backward must produce the gradient of each input. */
  wantInput: boolean[];
}

/** Records the nodes a model traces into; owns the tensors and the state-dict entries. */
export class Tracer {
  readonly tensors: TensorInfo[] = [];
  readonly nodes: NodeInfo[] = [];
  readonly params: ParamInfo[] = [];

  tensor(shape: Shape, dtype: DType, requiresGrad: boolean): number {
    this.tensors.push({ id: this.tensors.length, shape, dtype, requiresGrad });
    return this.tensors.length - 1;
  }

  /** Apply a layer to tensors: registers its state-dict entries under `prefix` and returns its output. */
  node(layer: Layer, inputs: number[], prefix: string, label = prefix.replace(/\.$/, "")): number {
    const ins = inputs.map((i) => this.tensors[i]);
    let out;
    try {
      out = layer.outShape(ins.map((t) => t.shape), ins.map((t) => t.dtype));
    } catch (e) {
      throw new Error(`layer ${label} (${layer.torch}): ${(e as Error).message}`);
    }
    for (const spec of layer.params) {
      const name = prefix + spec.name;
      if (this.params.some((q) => q.name === name)) throw new Error(`two state-dict entries named ${name}`);
      const I = spec.torchShape[1] ?? 1;
      this.params.push({
        ...spec,
        local: spec.name,
        name,
        node: label,
        group: spec.group ?? "default",
        ciPad: spec.storage === "hwio" ? Math.ceil(I / 4) * 4 : I,
      });
    }
    const trains = layer.params.some((s) => s.role === "param");
    const output = this.tensor(out.shape, out.dtype, trains || ins.some((t) => t.requiresGrad));
    this.nodes.push({ label, layer, prefix, inputs, output, wantInput: ins.map((t) => t.requiresGrad) });
    return output;
  }

  /** Trace a module (a layer or a container) applied to tensor x. */
  apply(m: Module, x: number, prefix: string): number {
    return m.kind === "layer" ? this.node(m, [x], prefix) : m.trace(this, x, prefix);
  }

  /** Children in order, each under `prefix + name + "."`, fusing a layer with the next where possible. */
  applyChildren(children: [string, Module][], x: number, prefix: string): number {
    for (let i = 0; i < children.length; i++) {
      const [name, m] = children[i];
      const next = children[i + 1]?.[1];
      if (m.kind === "layer" && next?.kind === "layer" && next.params.length === 0) {
        const fused = m.fuse?.(next);
        if (fused) {
          x = this.node(fused, [x], `${prefix}${name}.`, `${prefix}${name}+${children[i + 1][0]}`);
          i++;
          continue;
        }
      }
      x = this.apply(m, x, `${prefix}${name}.`);
    }
    return x;
  }
}

/** A model traced on an input shape: tensors, nodes in forward order, and the state dict. */
export class Graph {
  readonly tensors: TensorInfo[];
  readonly nodes: NodeInfo[];
  readonly params: ParamInfo[];
  readonly input: number;
  readonly output: number;

  constructor(readonly model: Module, readonly inputShape: Shape) {
    const t = new Tracer();
    this.input = t.tensor(inputShape, "act", false);
    this.output = t.apply(model, this.input, "");
    [this.tensors, this.nodes, this.params] = [t.tensors, t.nodes, t.params];
  }

  get outputInfo(): TensorInfo {
    return this.tensors[this.output];
  }

  /** Bytes of the largest activation of one image (the binding limit bounds the batch by it). */
  maxTensorBytes(actBytes: number): number {
    return Math.max(
      ...this.tensors.map((t) => t.shape.H * t.shape.W * t.shape.C * (t.dtype === "f32" ? 4 : actBytes)),
    );
  }

  /** FLOPs of one image: forward only, or a training step (forward, weight and wanted input gradients). */
  flopsPerImage(train: boolean): number {
    return this.nodes.reduce((sum, n) => sum + nodeFlops(this, n, train).total, 0);
  }
}

/** A node's FLOPs per image by pass; gradients only when training and wanted. */
export function nodeFlops(g: Graph, n: NodeInfo, train: boolean): Flops & { total: number } {
  const f = n.layer.flops(n.inputs.map((i) => g.tensors[i].shape));
  const weightGrad = train && g.tensors[n.output].requiresGrad ? f.weightGrad : 0;
  const inputGrad = train && n.wantInput.some((w) => w) ? f.inputGrad : 0;
  return { forward: f.forward, weightGrad, inputGrad, total: f.forward + weightGrad + inputGrad };
}

// ------------------------------------------------------------------------------------------ containers

/** nn.Sequential: children named 0, 1, 2, ... */
export function Sequential(...children: Module[]): Container {
  const named: [string, Module][] = children.map((m, i) => [String(i), m]);
  return {
    kind: "container",
    type: "Sequential",
    trace: (t, x, prefix) => t.applyChildren(named, x, prefix),
  };
}

/**
 * A module with named children applied in order (a PyTorch module whose forward calls its attributes in
 * sequence, like airbench's ConvGroup): { conv1: ..., pool: ..., activ: ... }.
 */
export function Named(children: Record<string, Module>): Container {
  const named = Object.entries(children);
  return { kind: "container", type: "Named", trace: (t, x, prefix) => t.applyChildren(named, x, prefix) };
}

/** y = add(x, fn(x)) (lib/nn/layers.ts's Residual): x feeds two consumers, so its gradient sums both paths. */
export function residualWith(fn: Module, add: Layer): Container {
  return {
    kind: "container",
    type: "Residual",
    trace(t, x, prefix) {
      const y = t.apply(fn, x, `${prefix}fn.`);
      return t.node(add, [x, y], `${prefix}add.`);
    },
  };
}
