// The BatchNorm-free airbench94 network on the GPU: parameter layout, buffers, and the forward / backward /
// optimizer ops of one training step, built once and encoded as often as needed.
//
//   0  whitening conv 3(->4)->24, 2x2 valid, bias      x [B][32][32][4] -> w0 [B][31][31][24]   (weights frozen)
//   1  GELU                                             -> a0
//   2,3,4  ConvGroup: conv3x3 same + bias -> maxpool2 -> GELU -> conv3x3 same + bias -> GELU
//   5  maxpool3 (3x3 -> 1x1), 6 flatten, 7 linear C->10 no bias, 8 multiply by scale (1/9)
// Activations are NHWC `act` buffers (f32 or f16); parameters are f32 in one flat buffer, each tensor at a
// 256-byte aligned offset, convolution weights stored HWIO (PyTorch's OIHW is converted at import/export).

import {
  biasGrad,
  convForward,
  convInputGrad,
  type ConvShape,
  type ConvTiles,
  convWeightGrad,
  DEFAULT_TILES,
} from "./conv.ts";
import { ACT_BYTES, type Gpu, type Op, type Precision } from "./gpu.ts";
import {
  crossEntropy,
  emaUpdate,
  geluBackward,
  geluForward,
  linearBackward,
  linearForward,
  maxpoolBackward,
  maxpoolForward,
  poolGeluBackward,
  poolGeluForward,
  sgdStep,
} from "./ops.ts";

export const WHITEN_WIDTH = 24; // 2 * 3 * 2 * 2: +- each eigenvector of the 12-dim patch covariance
export const IMG = 32;
export const IN_CHANNELS = 4; // RGB padded with a zero channel for vec4 loads
export const CLASSES = 10;

export interface NetConfig {
  widths: [number, number, number];
  scale: number; // output multiplier (1/9)
  smoothing: number; // label smoothing of the loss
}

export interface ParamInfo {
  name: string; // PyTorch state-dict name
  torchShape: number[];
  offset: number; // in floats, into the flat buffer
  count: number;
  layout: "OIHW->HWIO" | "plain";
  trainable: boolean;
}

/** Flat f32 layout of all parameters; `0.weight` (frozen whitening filters) lives in its own buffer. */
export class ParamLayout {
  readonly params: ParamInfo[] = [];
  readonly total: number;
  readonly whiten: ParamInfo;

  constructor(readonly cfg: NetConfig) {
    let off = 0;
    const add = (name: string, torchShape: number[], layout: ParamInfo["layout"]) => {
      const count = torchShape.reduce((a, b) => a * b, 1);
      this.params.push({ name, torchShape, offset: off, count, layout, trainable: true });
      off += Math.ceil(count / 64) * 64; // 256-byte alignment for storage-buffer binding offsets
    };
    add("0.bias", [WHITEN_WIDTH], "plain");
    let cin = WHITEN_WIDTH;
    cfg.widths.forEach((c, i) => {
      for (const conv of ["conv1", "conv2"]) {
        add(`${i + 2}.${conv}.weight`, [c, conv === "conv1" ? cin : c, 3, 3], "OIHW->HWIO");
        add(`${i + 2}.${conv}.bias`, [c], "plain");
      }
      cin = c;
    });
    add("7.weight", [CLASSES, cfg.widths[2]], "plain");
    this.total = off;
    this.whiten = {
      name: "0.weight",
      torchShape: [WHITEN_WIDTH, 3, 2, 2],
      offset: 0,
      count: 2 * 2 * IN_CHANNELS * WHITEN_WIDTH, // stored HWIO with the 4th input channel zero
      layout: "OIHW->HWIO",
      trainable: false,
    };
  }

  get(name: string): ParamInfo {
    const p = this.params.find((q) => q.name === name);
    if (!p) throw new Error(`no parameter ${name}`);
    return p;
  }

  /** The range the whitening-bias gate of the optimizer covers. */
  get whitenBiasRange(): { start: number; end: number } {
    const p = this.get("0.bias");
    return { start: p.offset, end: p.offset + p.count };
  }
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

/** Pack PyTorch-layout tensors into the flat parameter array (and the whitening weight buffer). */
export function packParams(layout: ParamLayout, tensors: Record<string, ArrayLike<number>>): {
  flat: Float32Array;
  whiten: Float32Array;
} {
  const flat = new Float32Array(layout.total);
  for (const p of layout.params) {
    const t = tensors[p.name];
    if (!t || t.length !== p.count) throw new Error(`parameter ${p.name}: missing or wrong size`);
    flat.set(p.layout === "OIHW->HWIO" ? oihwToHwio(t, p.torchShape) : Float32Array.from(t), p.offset);
  }
  const w = tensors["0.weight"];
  if (!w || w.length !== 24 * 12) throw new Error("parameter 0.weight: missing or wrong size");
  return { flat, whiten: oihwToHwio(w, layout.whiten.torchShape, IN_CHANNELS) };
}

/** Unpack the flat array (and whitening weights) into PyTorch-layout tensors. */
export function unpackParams(
  layout: ParamLayout,
  flat: Float32Array,
  whiten: Float32Array,
): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  out["0.weight"] = {
    shape: layout.whiten.torchShape,
    data: hwioToOihw(whiten, layout.whiten.torchShape, IN_CHANNELS),
  };
  for (const p of layout.params) {
    const raw = flat.subarray(p.offset, p.offset + p.count);
    out[p.name] = {
      shape: p.torchShape,
      data: p.layout === "OIHW->HWIO" ? hwioToOihw(raw, p.torchShape) : Float32Array.from(raw),
    };
  }
  return out;
}

/** PyTorch's default init as the recipe uses it: U(+-1/sqrt(fan_in)), conv biases zero, dirac first filters. */
export function initParams(layout: ParamLayout, uniform: () => number): Record<string, Float32Array> {
  const t: Record<string, Float32Array> = {};
  for (const p of layout.params) {
    const a = new Float32Array(p.count);
    if (p.name.endsWith("weight")) {
      const fanIn = p.torchShape.slice(1).reduce((x, y) => x * y, 1);
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < a.length; i++) a[i] = (uniform() * 2 - 1) * bound;
      if (p.torchShape.length === 4) {
        const [, I, H, W] = p.torchShape; // dirac_ on w[:I]: identity through the centre tap
        for (let o = 0; o < I; o++) {
          for (let i = 0; i < I * H * W; i++) a[o * I * H * W + i] = 0;
          a[((o * I + o) * H + (H >> 1)) * W + (W >> 1)] = 1;
        }
      }
    }
    t[p.name] = a;
  }
  t["0.weight"] = new Float32Array(24 * 12); // set from data by the whitening init
  return t;
}

interface Block {
  c1: GPUBuffer; // conv1 output, [B][H][W][C]
  pre: GPUBuffer; // maxpool output (GELU input), [B][H/2][W/2][C]
  g: GPUBuffer; // GELU(pre), conv2 input
  c2: GPUBuffer; // conv2 output
  out: GPUBuffer; // GELU(c2)
  s1: ConvShape;
  s2: ConvShape;
}

/** Activations and ops of the network for one batch size. Shares parameter buffers across instances. */
export class Net {
  readonly x: GPUBuffer; // input batch NHWC [B][32][32][4]
  readonly logits: GPUBuffer; // f32 [B][10]
  readonly forwardOps: Op[] = [];
  private w0: GPUBuffer; // whitening conv output NHWC [B][31][31][24]
  private a0: GPUBuffer;
  private blocks: Block[] = [];
  private feat: GPUBuffer; // maxpool3 output [B][1][1][C3] = [B][C3]

  constructor(
    readonly gpu: Gpu,
    readonly p: Precision,
    readonly layout: ParamLayout,
    readonly state: NetState,
    readonly batch: number,
    readonly tiles: ConvTiles = DEFAULT_TILES,
  ) {
    const B = batch, ab = ACT_BYTES[p];
    const fit = Net.maxBatch(gpu, p, layout, batch);
    if (fit < batch) {
      throw new Error(
        `batch ${batch} needs activation buffers larger than this adapter's maxStorageBufferBindingSize ` +
          `(${gpu.device.limits.maxStorageBufferBindingSize} bytes): use --batch-size ${fit} or less, or --precision f16`,
      );
    }
    const act = (n: number, label: string) => gpu.buffer(n * ab, label);
    const prm = (name: string) => state.range(state.params, name);
    this.x = act(B * IMG * IMG * IN_CHANNELS, "x");
    const ws: ConvShape = { N: B, H: IMG, W: IMG, CI: IN_CHANNELS, CO: WHITEN_WIDTH, KH: 2, KW: 2, PAD: 0 };
    let H = IMG - 1, cin = WHITEN_WIDTH;
    this.w0 = act(B * H * H * cin, "w0");
    this.a0 = act(B * H * H * cin, "a0");
    const f = this.forwardOps;
    f.push(
      convForward(gpu, p, ws, { x: this.x, w: state.whiten, b: prm("0.bias"), y: this.w0 }, tiles, "whiten"),
    );
    f.push(geluForward(gpu, p, { x: this.w0, y: this.a0, n: B * H * H * cin }));
    let input = this.a0;
    layout.cfg.widths.forEach((c, i) => {
      const Hp = Math.floor(H / 2);
      const s1: ConvShape = { N: B, H, W: H, CI: cin, CO: c, KH: 3, KW: 3, PAD: 1 };
      const s2: ConvShape = { N: B, H: Hp, W: Hp, CI: c, CO: c, KH: 3, KW: 3, PAD: 1 };
      const blk: Block = {
        c1: act(B * H * H * c, `b${i}.c1`),
        pre: act(B * Hp * Hp * c, `b${i}.pre`),
        g: act(B * Hp * Hp * c, `b${i}.g`),
        c2: act(B * Hp * Hp * c, `b${i}.c2`),
        out: act(B * Hp * Hp * c, `b${i}.out`),
        s1,
        s2,
      };
      const pre = `${i + 2}.`;
      f.push(
        convForward(
          gpu,
          p,
          s1,
          { x: input, w: prm(pre + "conv1.weight"), b: prm(pre + "conv1.bias"), y: blk.c1 },
          tiles,
          `${pre}conv1`,
        ),
        poolGeluForward(gpu, p, { x: blk.c1, pre: blk.pre, y: blk.g, N: B, H, W: H, C: c }),
        convForward(
          gpu,
          p,
          s2,
          { x: blk.g, w: prm(pre + "conv2.weight"), b: prm(pre + "conv2.bias"), y: blk.c2 },
          tiles,
          `${pre}conv2`,
        ),
        geluForward(gpu, p, { x: blk.c2, y: blk.out, n: B * Hp * Hp * c }),
      );
      this.blocks.push(blk);
      input = blk.out;
      H = Hp;
      cin = c;
    });
    const C3 = layout.cfg.widths[2];
    this.feat = act(B * C3, "feat");
    this.logits = gpu.buffer(B * CLASSES * 4, "logits");
    f.push(
      maxpoolForward(gpu, p, { x: input, y: this.feat, N: B, H, W: H, C: C3, K: 3 }),
      linearForward(gpu, p, {
        x: this.feat,
        w: prm("7.weight"),
        logits: this.logits,
        N: B,
        C: C3,
        scale: layout.cfg.scale,
      }),
    );
  }

  /**
   * Loss, backward and optimizer ops of a training step. `labels` u32 [B]; `stats` f32 [2 * steps] receives
   * the summed loss and the number correct of each step; `stepBuf` is the Step uniform.
   */
  buildTrainOps(labels: GPUBuffer, stats: GPUBuffer, stepBuf: GPUBuffer): Op[] {
    const { gpu, p, batch: B, state, layout } = this;
    const ab = ACT_BYTES[p];
    const act = (n: number, label: string) => gpu.buffer(n * ab, label);
    const prm = (name: string) => state.range(state.params, name);
    const grd = (name: string) => state.range(state.grads, name);
    const ops: Op[] = [];
    const dlogits = gpu.buffer(B * CLASSES * 4, "dlogits");
    ops.push(
      ...crossEntropy(gpu, {
        logits: this.logits,
        labels,
        dlogits,
        stats,
        stepBuf,
        N: B,
        smoothing: layout.cfg.smoothing,
      }),
    );
    const C3 = layout.cfg.widths[2];
    const dfeat = act(B * C3, "dfeat");
    ops.push(
      ...linearBackward(gpu, p, {
        x: this.feat,
        w: prm("7.weight"),
        dlogits,
        dx: dfeat,
        dw: grd("7.weight"),
        N: B,
        C: C3,
        scale: layout.cfg.scale,
      }),
    );
    // Gradient buffers of the block outputs, from the last block down.
    let dout = act(this.blocks[2].out.size / ab, "d.b2.out");
    ops.push(
      maxpoolBackward(gpu, p, { x: this.blocks[2].out, dy: dfeat, dx: dout, N: B, H: 3, W: 3, C: C3, K: 3 }),
    );
    for (let i = 2; i >= 0; i--) {
      const blk = this.blocks[i], pre = `${i + 2}.`;
      const { s1, s2 } = blk;
      const dc2 = act(blk.c2.size / ab, `d.b${i}.c2`);
      const dg = act(blk.g.size / ab, `d.b${i}.g`);
      const dc1 = act(blk.c1.size / ab, `d.b${i}.c1`);
      const din = act(s1.N * s1.H * s1.W * s1.CI, `d.b${i}.in`);
      const input = i === 0 ? this.a0 : this.blocks[i - 1].out;
      ops.push(
        geluBackward(gpu, p, { x: blk.c2, dy: dout, dx: dc2, n: blk.c2.size / ab }),
        ...convWeightGrad(
          gpu,
          p,
          s2,
          { x: blk.g, dy: dc2, dw: grd(pre + "conv2.weight"), db: grd(pre + "conv2.bias") },
          this.tiles,
          `${pre}conv2.wgrad`,
        ),
        ...convInputGrad(
          gpu,
          p,
          s2,
          { dy: dc2, w: prm(pre + "conv2.weight"), dx: dg },
          this.tiles,
          `${pre}conv2.igrad`,
        ),
        poolGeluBackward(gpu, p, {
          x: blk.c1,
          pre: blk.pre,
          dy: dg,
          dx: dc1,
          N: B,
          H: s1.H,
          W: s1.W,
          C: s1.CO,
        }),
        ...convWeightGrad(
          gpu,
          p,
          s1,
          { x: input, dy: dc1, dw: grd(pre + "conv1.weight"), db: grd(pre + "conv1.bias") },
          this.tiles,
          `${pre}conv1.wgrad`,
        ),
        ...convInputGrad(
          gpu,
          p,
          s1,
          { dy: dc1, w: prm(pre + "conv1.weight"), dx: din },
          this.tiles,
          `${pre}conv1.igrad`,
        ),
      );
      dout = din;
    }
    // Down to the whitening bias: d(w0) = GELU'(w0) * d(a0); d(0.bias) = sum over pixels.
    const dw0 = act(this.w0.size / ab, "d.w0");
    ops.push(
      geluBackward(gpu, p, { x: this.w0, dy: dout, dx: dw0, n: this.w0.size / ab }),
      ...biasGrad(gpu, p, { dy: dw0, db: grd("0.bias"), M: B * 31 * 31, C: WHITEN_WIDTH }, 64, "0.bias.grad"),
    );
    ops.push(
      sgdStep(gpu, {
        params: state.params,
        grads: state.grads,
        mom: state.mom,
        n: layout.total,
        stepBuf,
        gate: layout.whitenBiasRange,
      }),
      emaUpdate(gpu, { params: state.params, ema: state.ema, n: layout.total, stepBuf }),
    );
    this.trainOps = ops;
    return ops;
  }

  /** Loss, backward and optimizer ops (after buildTrainOps). */
  trainOps: Op[] = [];

  /** Largest batch (<= want) whose biggest activation buffer fits the storage-binding limit. */
  static maxBatch(gpu: Gpu, p: Precision, layout: ParamLayout, want: number): number {
    const [w1, w2, w3] = layout.cfg.widths;
    const perImage = Math.max(31 * 31 * Math.max(w1, WHITEN_WIDTH), 15 * 15 * w2, 7 * 7 * w3) * ACT_BYTES[p];
    const fit = Math.floor(gpu.device.limits.maxStorageBufferBindingSize / perImage);
    if (fit < 1) throw new Error("the network's activations of one image exceed maxStorageBufferBindingSize");
    return Math.min(want, fit);
  }
}

/** Parameter, gradient, momentum and EMA buffers (f32, flat) plus the frozen whitening weights. */
export class NetState {
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly mom: GPUBuffer;
  readonly ema: GPUBuffer;
  readonly whiten: GPUBuffer;

  constructor(readonly gpu: Gpu, readonly layout: ParamLayout) {
    const bytes = layout.total * 4;
    this.params = gpu.buffer(bytes, "params");
    this.grads = gpu.buffer(bytes, "grads");
    this.mom = gpu.buffer(bytes, "momentum");
    this.ema = gpu.buffer(bytes, "ema");
    this.whiten = gpu.buffer(layout.whiten.count * 4, "whiten.weight");
  }

  range(buf: GPUBuffer, name: string): GPUBufferBinding {
    const p = this.layout.get(name);
    return { buffer: buf, offset: p.offset * 4, size: p.count * 4 };
  }

  /** Load PyTorch-layout tensors; momentum zero; the lookahead EMA starts equal to the parameters. */
  load(tensors: Record<string, ArrayLike<number>>): void {
    const { flat, whiten } = packParams(this.layout, tensors);
    this.gpu.write(this.params, flat);
    this.gpu.write(this.ema, flat);
    this.gpu.write(this.mom, new Float32Array(this.layout.total));
    this.gpu.write(this.grads, new Float32Array(this.layout.total));
    this.gpu.write(this.whiten, whiten);
  }

  async read(): Promise<Record<string, { shape: number[]; data: Float32Array }>> {
    const flat = await this.gpu.readF32(this.params);
    const whiten = await this.gpu.readF32(this.whiten);
    return unpackParams(this.layout, flat, whiten);
  }

  async readGrads(): Promise<Record<string, { shape: number[]; data: Float32Array }>> {
    const flat = await this.gpu.readF32(this.grads);
    const out = unpackParams(this.layout, flat, new Float32Array(this.layout.whiten.count));
    delete out["0.weight"];
    return out;
  }
}

/** Forward + backward FLOPs of one training image (the convolutions and the linear layer; 3x the forward). */
export function trainFlopsPerImage(layout: ParamLayout): number {
  let flops = 2 * 31 * 31 * 12 * WHITEN_WIDTH; // whitening conv (forward only, frozen)
  let H = 31, cin = WHITEN_WIDTH;
  for (const c of layout.cfg.widths) {
    const Hp = Math.floor(H / 2);
    flops += 3 * (2 * H * H * 9 * cin * c + 2 * Hp * Hp * 9 * c * c);
    H = Hp;
    cin = c;
  }
  return flops + 3 * 2 * cin * CLASSES;
}
