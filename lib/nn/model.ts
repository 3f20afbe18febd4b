// A traced network (lib/nn/module.ts) on the GPU: where every state-dict entry lives, the parameter /
// gradient / optimizer buffers, and the activations and ops of the forward and backward passes for one batch
// size.
//
// Storage: trained parameters in one flat f32 buffer (`params`, with `grads`, `mom`, `ema` of the same
// layout), grouped by optimizer group so that each group is one contiguous range; frozen parameters (the
// whitening filters) in `frozen`; layer-updated buffers (running statistics) in `buffers` (+ their EMA).
// Every entry starts at a 256-byte aligned offset (storage-buffer binding offsets). Convolution weights are
// stored HWIO with input channels padded to a multiple of 4 (PyTorch's OIHW is converted at the edges).
// Activations are NHWC `act` buffers (f32 or f16), logits f32.

import { type ConvTiles, DEFAULT_TILES } from "./conv.ts";
import { ACT_BYTES, type Gpu, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import {
  type Graph,
  type LayerCtx,
  type NodeInfo,
  type ParamInfo,
  type Shape,
  type TensorBuf,
} from "./module.ts";
import { addTensors } from "./ops.ts";

/** The network input: NHWC 32 x 32 images, RGB padded with a zero 4th channel so every load is a vec4. */
export const INPUT_SHAPE: Shape = { H: 32, W: 32, C: 4 };

export type Store = "params" | "frozen" | "buffers";

export interface Slot extends ParamInfo {
  store: Store;
  offset: number; // in floats, into its store
  count: number; // stored floats
}

const ALIGN = 64; // floats: 256 bytes

/** Where every state-dict entry of a graph lives. */
export class ParamLayout {
  /** State-dict order (the order the layers registered their entries). */
  readonly entries: Slot[] = [];
  readonly sizes: Record<Store, number> = { params: 0, frozen: 0, buffers: 0 };
  /** Trained-parameter groups in storage order, each a contiguous range of `params`. */
  readonly groups: { name: string; start: number; end: number }[] = [];

  constructor(readonly graph: Graph) {
    const stored = (p: ParamInfo) =>
      p.storage === "hwio"
        ? p.torchShape[0] * p.ciPad * p.torchShape[2] * p.torchShape[3]
        : numel(p.torchShape);
    const place = (p: ParamInfo, store: Store): Slot => {
      const slot = { ...p, store, offset: this.sizes[store], count: stored(p) };
      this.sizes[store] += Math.ceil(slot.count / ALIGN) * ALIGN;
      return slot;
    };
    const slots = new Map<string, Slot>();
    const groupOrder = [...new Set(graph.params.filter((p) => p.role === "param").map((p) => p.group))];
    for (const g of groupOrder) {
      const start = this.sizes.params;
      for (const p of graph.params) {
        if (p.role === "param" && p.group === g) slots.set(p.name, place(p, "params"));
      }
      this.groups.push({ name: g, start, end: this.sizes.params });
    }
    for (const p of graph.params) {
      if (p.role !== "param") slots.set(p.name, place(p, p.role === "frozen" ? "frozen" : "buffers"));
    }
    for (const p of graph.params) this.entries.push(slots.get(p.name)!);
  }

  get(name: string): Slot {
    const s = this.entries.find((q) => q.name === name);
    if (!s) throw new Error(`no state-dict entry ${name}`);
    return s;
  }

  get trained(): Slot[] {
    return this.entries.filter((e) => e.store === "params");
  }
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** OIHW (PyTorch) -> HWIO with `ciPad` input channels (extra ones zero). */
export function oihwToHwio(src: ArrayLike<number>, [O, I, H, W]: number[], ciPad = I): Float32Array {
  const out = new Float32Array(H * W * ciPad * O);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          out[((y * W + x) * ciPad + i) * O + o] = src[((o * I + i) * H + y) * W + x];
        }
      }
    }
  }
  return out;
}

/** HWIO (with `ciPad` stored input channels) -> OIHW (PyTorch). */
export function hwioToOihw(src: ArrayLike<number>, [O, I, H, W]: number[], ciPad = I): Float32Array {
  const out = new Float32Array(O * I * H * W);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          out[((o * I + i) * H + y) * W + x] = src[((y * W + x) * ciPad + i) * O + o];
        }
      }
    }
  }
  return out;
}

export type StateDict = Record<string, { shape: number[]; data: Float32Array }>;

/** Pack PyTorch-layout tensors (every state-dict entry) into the three stores. */
export function packParams(
  layout: ParamLayout,
  tensors: Record<string, ArrayLike<number>>,
): Record<Store, Float32Array> {
  const out = {
    params: new Float32Array(layout.sizes.params),
    frozen: new Float32Array(layout.sizes.frozen),
    buffers: new Float32Array(layout.sizes.buffers),
  };
  for (const e of layout.entries) {
    const t = tensors[e.name];
    const want = numel(e.torchShape);
    if (!t || t.length !== want) {
      throw new Error(
        `state-dict entry ${e.name}: ${t ? `${t.length} values` : "missing"}, expected ${want} ` +
          `(shape [${e.torchShape}])`,
      );
    }
    const data = e.storage === "hwio" ? oihwToHwio(t, e.torchShape, e.ciPad) : Float32Array.from(t);
    out[e.store].set(data, e.offset);
  }
  return out;
}

/** Unpack stores into PyTorch-layout tensors (state-dict order). */
export function unpackParams(layout: ParamLayout, stores: Partial<Record<Store, Float32Array>>): StateDict {
  const out: StateDict = {};
  for (const e of layout.entries) {
    const flat = stores[e.store];
    if (!flat) continue;
    const raw = flat.subarray(e.offset, e.offset + e.count);
    const data = e.storage === "hwio" ? hwioToOihw(raw, e.torchShape, e.ciPad) : Float32Array.from(raw);
    out[e.name] = { shape: e.torchShape, data };
  }
  return out;
}

/**
 * Every state-dict entry initialised as its layer asks (PyTorch's defaults as the recipe uses them).
 * `uniform` draws are taken in state-dict order, `count` per randomly initialised entry; "external" entries
 * are zeros.
 */
export function initParams(layout: ParamLayout, uniform: () => number): Record<string, Float32Array> {
  const t: Record<string, Float32Array> = {};
  for (const e of layout.entries) {
    const a = new Float32Array(numel(e.torchShape));
    if (e.init === "ones") a.fill(1);
    if (e.init === "kaiming_uniform" || e.init === "conv_dirac") {
      const bound = 1 / Math.sqrt(numel(e.torchShape.slice(1)));
      for (let i = 0; i < a.length; i++) a[i] = (uniform() * 2 - 1) * bound;
    }
    if (e.init === "conv_dirac") {
      const [O, I, H, W] = e.torchShape; // dirac_ on w[:I]: identity through the centre tap
      for (let o = 0; o < Math.min(O, I); o++) {
        a.fill(0, o * I * H * W, (o + 1) * I * H * W);
        a[((o * I + o) * H + (H >> 1)) * W + (W >> 1)] = 1;
      }
    }
    t[e.name] = a;
  }
  return t;
}

/** The stores on the GPU: trained parameters with their gradients, momentum and EMA; frozen; buffers + EMA. */
export class NetState {
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly mom: GPUBuffer;
  readonly ema: GPUBuffer;
  readonly frozen: GPUBuffer;
  readonly buffers: GPUBuffer;
  readonly buffersEma: GPUBuffer;

  constructor(readonly gpu: Gpu, readonly layout: ParamLayout) {
    const { params, frozen, buffers } = layout.sizes;
    this.params = gpu.buffer(params * 4, "params");
    this.grads = gpu.buffer(params * 4, "grads");
    this.mom = gpu.buffer(params * 4, "momentum");
    this.ema = gpu.buffer(params * 4, "ema");
    this.frozen = gpu.buffer(frozen * 4, "frozen");
    this.buffers = gpu.buffer(buffers * 4, "buffers");
    this.buffersEma = gpu.buffer(buffers * 4, "buffers.ema");
  }

  /** The binding of an entry's values. */
  binding(name: string): GPUBufferBinding {
    const e = this.layout.get(name);
    const buffer = e.store === "params" ? this.params : e.store === "frozen" ? this.frozen : this.buffers;
    return { buffer, offset: e.offset * 4, size: e.count * 4 };
  }

  /** The binding of a trained parameter's gradient. */
  gradBinding(name: string): GPUBufferBinding {
    const e = this.layout.get(name);
    if (e.store !== "params") throw new Error(`${name} is not trained: it has no gradient`);
    return { buffer: this.grads, offset: e.offset * 4, size: e.count * 4 };
  }

  /** Load PyTorch-layout tensors; momentum and gradients zero; the lookahead EMA starts equal to the state. */
  load(tensors: Record<string, ArrayLike<number>>): void {
    const s = packParams(this.layout, tensors);
    this.gpu.write(this.params, s.params);
    this.gpu.write(this.ema, s.params);
    this.gpu.write(this.mom, new Float32Array(s.params.length));
    this.gpu.write(this.grads, new Float32Array(s.params.length));
    this.gpu.write(this.frozen, s.frozen);
    this.gpu.write(this.buffers, s.buffers);
    this.gpu.write(this.buffersEma, s.buffers);
  }

  /** The whole state dict in PyTorch layout. */
  async read(): Promise<StateDict> {
    const [params, frozen, buffers] = [
      await this.gpu.readF32(this.params),
      await this.gpu.readF32(this.frozen),
      await this.gpu.readF32(this.buffers),
    ];
    return unpackParams(this.layout, { params, frozen, buffers });
  }

  /** Gradients of the trained parameters, PyTorch layout. */
  async readGrads(): Promise<StateDict> {
    return unpackParams(this.layout, { params: await this.gpu.readF32(this.grads) });
  }
}

/** The activations and ops of a graph for one batch size; parameters are shared through `state`. */
export class Net {
  readonly x: GPUBuffer; // the input batch, NHWC [B][32][32][4]
  readonly output: GPUBuffer; // the logits, f32 [B][10]
  readonly forwardOps: Op[] = [];
  /** Each node's forward ops (bench's per-layer table). */
  readonly forwardByNode: { node: NodeInfo; ops: Op[] }[] = [];
  private readonly tensors: TensorBuf[] = [];
  private readonly scratch = new Map<string, GPUBuffer>();

  constructor(
    readonly gpu: Gpu,
    readonly p: Precision,
    readonly graph: Graph,
    readonly state: NetState,
    readonly batch: number,
    readonly tiles: ConvTiles = DEFAULT_TILES,
    readonly training = true,
  ) {
    const fit = Net.maxBatch(gpu, p, graph, batch);
    if (fit < batch) {
      throw new Error(
        `batch ${batch} needs activation buffers larger than this adapter's maxStorageBufferBindingSize ` +
          `(${gpu.device.limits.maxStorageBufferBindingSize} bytes): use --batch-size ${fit} or less, or --precision f16`,
      );
    }
    const out = graph.outputInfo;
    if (out.dtype !== "f32" || out.shape.H * out.shape.W !== 1) {
      throw new Error("the network must end in the Linear head (f32 logits [N][classes])");
    }
    const alias = new Map(graph.nodes.filter((n) => n.layer.aliasInput).map((n) => [n.output, n.inputs[0]]));
    const labels = new Map(graph.nodes.map((n) => [n.output, n.label]));
    graph.tensors.forEach((t, i) => {
      const src = alias.get(i);
      const buf = src !== undefined
        ? this.tensors[src].buf
        : this.alloc(t.shape, t.dtype, labels.get(i) ?? "x");
      this.tensors.push({ buf, shape: t.shape, dtype: t.dtype });
    });
    this.x = this.tensors[graph.input].buf;
    this.output = this.tensors[graph.output].buf;
    for (const node of graph.nodes) {
      const ops = node.layer.forward(this.ctx(node));
      this.forwardByNode.push({ node, ops });
      this.forwardOps.push(...ops);
    }
  }

  private alloc(s: Shape, dtype: "act" | "f32", label: string): GPUBuffer {
    return this.gpu.buffer(this.batch * s.H * s.W * s.C * (dtype === "f32" ? 4 : ACT_BYTES[this.p]), label);
  }

  private ctx(node: NodeInfo): LayerCtx {
    const { gpu, p, batch, tiles, state } = this;
    return {
      gpu,
      p,
      batch,
      tiles,
      label: node.label,
      training: this.training,
      inputs: node.inputs.map((i) => this.tensors[i]),
      output: this.tensors[node.output],
      param: (local) => state.binding(node.prefix + local),
      grad: (local) => state.gradBinding(node.prefix + local),
      trains: (local) => state.layout.get(node.prefix + local).store === "params",
      scratch: (key, bytes) => {
        const k = `${node.label}.${key}`;
        if (!this.scratch.has(k)) this.scratch.set(k, gpu.buffer(bytes, k));
        return this.scratch.get(k)!;
      },
    };
  }

  /**
   * The backward pass from the gradient of the logits: the nodes in reverse order, each writing the
   * gradients of its trained parameters and of the inputs that need one. A tensor consumed by several nodes
   * gets the sum of their gradients (added once all consumers are done: just before its producer runs).
   */
  backward(dOutput: GPUBuffer): { ops: Op[]; byNode: { node: NodeInfo; ops: Op[] }[] } {
    const { graph } = this;
    const parts = new Map<number, GPUBuffer[]>([[graph.output, [dOutput]]]);
    const byNode: { node: NodeInfo; ops: Op[] }[] = [];
    for (const node of [...graph.nodes].reverse()) {
      const got = parts.get(node.output);
      if (!got || !graph.tensors[node.output].requiresGrad) continue;
      const ops: Op[] = [];
      const dy = got.length === 1 ? got[0] : this.sum(got, node, ops);
      const grad = (i: number) => {
        const t = this.tensors[node.inputs[i]];
        return this.alloc(t.shape, t.dtype, `d.${node.label}.in${i}`);
      };
      const r = node.layer.backward(this.ctx(node), dy, node.wantInput, grad);
      ops.push(...r.ops);
      r.dx.forEach((dx, i) => {
        if (!dx || !node.wantInput[i]) return;
        const t = node.inputs[i];
        parts.set(t, [...(parts.get(t) ?? []), dx]);
      });
      byNode.push({ node, ops });
    }
    return { ops: byNode.flatMap((b) => b.ops), byNode };
  }

  /** Sum of the gradient contributions of a tensor with several consumers. */
  private sum(got: GPUBuffer[], node: NodeInfo, ops: Op[]): GPUBuffer {
    const t = this.tensors[node.output];
    const n = this.batch * t.shape.H * t.shape.W * t.shape.C;
    let acc = got[0];
    for (let i = 1; i < got.length; i++) {
      const y = this.alloc(t.shape, t.dtype, `d.${node.label}.sum${i}`);
      ops.push(addTensors(this.gpu, this.p, { a: acc, b: got[i], y, n }, `${node.label}.grad_sum`));
      acc = y;
    }
    return acc;
  }

  /** Largest batch (<= want) whose biggest activation buffer fits the storage-binding limit. */
  static maxBatch(gpu: Gpu, p: Precision, graph: Graph, want: number): number {
    const perImage = graph.maxTensorBytes(ACT_BYTES[p]);
    const fit = Math.floor(gpu.device.limits.maxStorageBufferBindingSize / perImage);
    if (fit < 1) throw new Error("the network's activations of one image exceed maxStorageBufferBindingSize");
    return Math.min(want, fit);
  }
}
