// CIFAR-10 batches on the GPU with airbench94's CifarLoader semantics (kernels/loader.wgsl).
//
// The uint8 images (official layout: per image R, G, B planes of 32x32, row-major) are uploaded once, packed
// 4 bytes per u32, split over two buffers when one binding cannot hold them. Kernels normalise through a
// 3x256 table computed here in float64 and rounded to the storage precision, so GPU batches are exact
// copies of host-computable values.
//
// Training (TrainLoader): first epoch mirrors a random half of the images once and keeps that; every epoch
// takes a random translation in -t..t per axis from the reflect-padded images, mirrors the whole set on odd
// epochs, shuffles, and drops the last partial batch. All draws are made here at construction from the seed.
// Test (EvalLoader): images in order, batches of up to 2000, plus translated/mirrored views for TTA.

import { dispatch, type Gpu, grid2d, type Op } from "../gpu/gpu.ts";
import { type Precision } from "../gpu/kernels.ts";
import { Rng } from "./rng.ts";
import { stepsPerEpoch } from "./batches.ts";

export const CIFAR_MEAN = [0.4914, 0.4822, 0.4465];
export const CIFAR_STD = [0.2470, 0.2435, 0.2616];
export const SIDE = 32;
export const IMAGE_BYTES = 3 * SIDE * SIDE;
/** Elements of one network-input image: NHWC [32][32][4], channel 3 = 0. */
export const INPUT_ELEMS = SIDE * SIDE * 4;
const WG = 256;
const THREADS_PER_IMAGE = SIDE * SIDE; // one thread per output pixel
const MAX_SHIFT = SIDE - 1; // reflect padding needs pad < 32

/** Bytes of a network-input batch x (NHWC [batch][32][32][4] in the precision) and of its labels y (u32). */
export function batchBytes(batch: number, precision: Precision): { x: number; y: number } {
  return { x: batch * INPUT_ELEMS * (precision === "f16" ? 2 : 4), y: batch * 4 };
}

/** The normalisation table [3][256]: (v/255 - mean[c]) / std[c], in float64 (round it for storage). */
export function normTable(): Float64Array {
  const t = new Float64Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) t[c * 256 + v] = (v / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c];
  }
  return t;
}

export interface SetOptions {
  precision: Precision;
  /** Largest bytes per image buffer (default: the device's binding and buffer size limits); for tests. */
  maxBindingBytes?: number;
}

/** Images, labels and table on the GPU; shared by both loaders. */
class GpuSet {
  readonly n: number;
  readonly split: number; // images in imgLo
  readonly imgLo: GPUBuffer;
  readonly imgHi: GPUBuffer; // 4-byte placeholder when everything fits in imgLo
  readonly lut: GPUBuffer;
  readonly labels: GPUBuffer;

  constructor(gpu: Gpu, images: Uint8Array, labels: Uint8Array, opts: SetOptions, what: string) {
    const n = labels.length;
    if (n < 1) throw new Error(`${what}: no images`);
    if (images.length !== n * IMAGE_BYTES) {
      throw new Error(`${what}: ${images.length} image bytes for ${n} labels (expected ${n * IMAGE_BYTES})`);
    }
    const limits = gpu.device.limits;
    const maxBytes = opts.maxBindingBytes ??
      Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const perBuffer = Math.floor(maxBytes / IMAGE_BYTES);
    if (2 * perBuffer < n) {
      throw new Error(
        `${what}: ${n} images (${(n * IMAGE_BYTES / 2 ** 20).toFixed(1)} MiB) do not fit in two storage ` +
          `buffers of at most ${maxBytes} bytes (maxStorageBufferBindingSize / maxBufferSize)`,
      );
    }
    this.n = n;
    this.split = Math.min(n, perBuffer);
    this.imgLo = gpu.bufferFrom(images.subarray(0, this.split * IMAGE_BYTES), `${what} images lo`);
    this.imgHi = this.split < n
      ? gpu.bufferFrom(images.subarray(this.split * IMAGE_BYTES), `${what} images hi`)
      : gpu.buffer(4, `${what} images hi (unused)`);
    const table = normTable();
    this.lut = gpu.bufferFrom(
      opts.precision === "f16" ? Float16Array.from(table) : Float32Array.from(table),
      `${what} norm table`,
    );
    this.labels = gpu.bufferFrom(Uint32Array.from(labels), `${what} labels`);
  }

  checkOutputs(what: string, batch: number, precision: Precision, x: GPUBuffer, y: GPUBuffer): void {
    const need = batchBytes(batch, precision);
    if (x.size < need.x) throw new Error(`${what}: x has ${x.size} bytes, needs ${need.x}`);
    if (y.size < need.y) throw new Error(`${what}: y has ${y.size} bytes, needs ${need.y}`);
  }

  destroy(): void {
    for (const b of [this.imgLo, this.imgHi, this.lut, this.labels]) b.destroy();
  }
}

function groupsFor(images: number): [number, number] {
  return grid2d(Math.ceil(images * THREADS_PER_IMAGE / WG));
}

export interface TrainOptions extends SetOptions {
  batchSize: number;
  flip: boolean;
  /** Translation range t (integer 0..31): shifts -t..t per axis from reflect-padded images. */
  translate: number;
  seed: number;
  /** Epochs to plan (rounded up: a fractional last epoch still needs its plan). */
  epochs: number;
}

/** One epoch's augmentation and order, as drawn on the host. */
export interface EpochPlan {
  /** [n] the epoch's image order: batch b is perm[b*batchSize .. (b+1)*batchSize). */
  perm: Uint32Array;
  /** [n][2] (dy, dx) per original image index, each in -translate..translate. */
  shifts: Int8Array;
  /** [n] 1 = image mirrored once at the first epoch (the same in every epoch). */
  flips: Uint8Array;
  /** The whole set is mirrored this epoch (flip on and odd epoch), after cropping. */
  flipAll: boolean;
}

export class TrainLoader {
  readonly n: number;
  readonly batchSize: number;
  readonly stepsPerEpoch: number;
  /** Planned epochs (ceil of the option). */
  readonly epochs: number;
  readonly precision: Precision;
  readonly translate: number;
  readonly flip: boolean;
  /** Images in the first image buffer (n when all fit in one). */
  readonly split: number;
  private readonly gpu: Gpu;
  private readonly set: GpuSet;
  private readonly perms: Uint32Array; // [epochs][n]
  private readonly aug: Uint32Array; // [epochs][n] dy+t | (dx+t) << 8 | flip << 16, by original image
  private readonly permBuf: GPUBuffer;
  private readonly augBuf: GPUBuffer;

  constructor(gpu: Gpu, images: Uint8Array, labels: Uint8Array, opts: TrainOptions) {
    const { batchSize, translate } = opts;
    if (!Number.isInteger(translate) || translate < 0 || translate > MAX_SHIFT) {
      throw new Error(`TrainLoader: translate must be an integer 0..${MAX_SHIFT}, got ${translate}`);
    }
    if (!(opts.epochs > 0)) throw new Error(`TrainLoader: epochs must be > 0, got ${opts.epochs}`);
    const n = labels.length;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > n) {
      throw new Error(`TrainLoader: batchSize must be 1..${n}, got ${batchSize}`);
    }
    this.gpu = gpu;
    this.set = new GpuSet(gpu, images, labels, opts, "TrainLoader");
    this.n = n;
    this.split = this.set.split;
    this.batchSize = batchSize;
    this.stepsPerEpoch = stepsPerEpoch(n, batchSize);
    this.epochs = Math.ceil(opts.epochs);
    this.precision = opts.precision;
    this.translate = translate;
    this.flip = opts.flip;

    // Independent streams per purpose and epoch, so each part of the plan depends only on the seed.
    const root = new Rng(opts.seed);
    const flipRng = root.fork("flip");
    const flips = new Uint8Array(n);
    if (opts.flip) { for (let i = 0; i < n; i++) flips[i] = flipRng.float() < 0.5 ? 1 : 0; }
    this.perms = new Uint32Array(this.epochs * n);
    this.aug = new Uint32Array(this.epochs * n);
    const choices = 2 * translate + 1; // (2t+1)^2 equally likely shifts
    for (let e = 0; e < this.epochs; e++) {
      this.perms.set(root.fork("perm").fork(e).permutation(n), e * n);
      const shiftRng = root.fork("shift").fork(e);
      for (let i = 0; i < n; i++) {
        const dy = shiftRng.int(choices), dx = shiftRng.int(choices); // stored as shift + t
        this.aug[e * n + i] = dy | (dx << 8) | (flips[i] << 16);
      }
    }
    this.permBuf = gpu.bufferFrom(this.perms, "TrainLoader perms");
    this.augBuf = gpu.bufferFrom(this.aug, "TrainLoader aug");
  }

  /** Offset of a batch in the concatenated permutations: the `batch_start` field of Step. */
  batchStart(epoch: number, batchIndex: number): number {
    if (!Number.isInteger(epoch) || epoch < 0 || epoch >= this.epochs) {
      throw new Error(`TrainLoader: epoch ${epoch} outside the ${this.epochs} planned`);
    }
    if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= this.stepsPerEpoch) {
      throw new Error(`TrainLoader: batch ${batchIndex} outside 0..${this.stepsPerEpoch - 1}`);
    }
    return epoch * this.n + batchIndex * this.batchSize;
  }

  /** The host copy of one epoch's plan (for tests and the reference). */
  planFor(epoch: number): EpochPlan {
    this.batchStart(epoch, 0); // range check
    const n = this.n, t = this.translate;
    const shifts = new Int8Array(2 * n), flips = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const a = this.aug[epoch * n + i];
      shifts[2 * i] = (a & 0xff) - t;
      shifts[2 * i + 1] = ((a >> 8) & 0xff) - t;
      flips[i] = (a >> 16) & 1;
    }
    return {
      perm: this.perms.slice(epoch * n, (epoch + 1) * n),
      shifts,
      flips,
      flipAll: this.flip && epoch % 2 === 1,
    };
  }

  /**
   * The op that writes the batch selected by the Step uniform (its `epoch` and `batch_start`) into
   * x: NHWC [batchSize][32][32][4] act (channel 3 = 0) and y: [batchSize] u32 labels.
   */
  gatherOp(stepBuf: GPUBuffer, x: GPUBuffer, y: GPUBuffer): Op {
    this.set.checkOutputs("TrainLoader.gatherOp", this.batchSize, this.precision, x, y);
    const consts = {
      N: this.n,
      SPLIT: this.split,
      BATCH: this.batchSize,
      PAD: this.translate,
      FLIP: this.flip,
    };
    const s = this.set;
    return dispatch(
      this.gpu,
      "loader.gather",
      this.gpu.pipeline("loader.wgsl", "gather", consts, this.precision),
      [stepBuf, s.imgLo, s.imgHi, s.lut, s.labels, x, y, this.permBuf, this.augBuf],
      groupsFor(this.batchSize),
    );
  }

  destroy(): void {
    this.set.destroy();
    this.permBuf.destroy();
    this.augBuf.destroy();
  }
}

/** A test-time view: translate by (dy, dx) with reflect padding, then mirror left-right if flip. */
export interface View {
  flip: boolean;
  dy: number;
  dx: number;
}

export interface EvalOptions extends SetOptions {
  /** Images per batch (default 2000, as the recipe); the last batch may be partial. */
  batchSize?: number;
}

export class EvalLoader {
  readonly n: number;
  readonly batchSize: number;
  readonly numBatches: number;
  readonly precision: Precision;
  readonly split: number;
  private readonly gpu: Gpu;
  private readonly set: GpuSet;
  private readonly uniforms: GPUBuffer[] = [];

  constructor(gpu: Gpu, images: Uint8Array, labels: Uint8Array, opts: EvalOptions) {
    const batchSize = opts.batchSize ?? 2000;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new Error(`EvalLoader: batchSize must be a positive integer, got ${batchSize}`);
    }
    this.gpu = gpu;
    this.set = new GpuSet(gpu, images, labels, opts, "EvalLoader");
    this.n = this.set.n;
    this.split = this.set.split;
    this.batchSize = batchSize;
    this.numBatches = Math.ceil(this.n / batchSize);
    this.precision = opts.precision;
  }

  // BATCH, PAD and FLIP belong to `gather`, but the shared module needs them defined.
  private get consts() {
    return { N: this.n, SPLIT: this.split, BATCH: 1, PAD: 0, FLIP: false };
  }

  /** First image of a batch. */
  batchStart(batchIndex: number): number {
    if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= this.numBatches) {
      throw new Error(`EvalLoader: batch ${batchIndex} outside 0..${this.numBatches - 1}`);
    }
    return batchIndex * this.batchSize;
  }

  /** Images in a batch (batchSize, or fewer in the last one). */
  batchCount(batchIndex: number): number {
    return Math.min(this.batchSize, this.n - this.batchStart(batchIndex));
  }

  /**
   * The op that writes one view of a test batch: x[j][y][x] = img[reflect(y + dy)][reflect(x' + dx)] with
   * x' = 31 - x when mirrored, NHWC [count][32][32][4] act (channel 3 = 0), and y: [count] u32 labels.
   * Only `batchCount(batchIndex)` images are written.
   */
  viewOp(batchIndex: number, view: View, x: GPUBuffer, y: GPUBuffer): Op {
    const start = this.batchStart(batchIndex), count = this.batchCount(batchIndex);
    for (const s of [view.dy, view.dx]) {
      if (!Number.isInteger(s) || Math.abs(s) > MAX_SHIFT) {
        throw new Error(`EvalLoader: view shifts must be integers in -${MAX_SHIFT}..${MAX_SHIFT}, got ${s}`);
      }
    }
    this.set.checkOutputs("EvalLoader.viewOp", count, this.precision, x, y);
    const params = new ArrayBuffer(20); // struct View in kernels/loader.wgsl
    const dv = new DataView(params);
    dv.setUint32(0, start, true);
    dv.setUint32(4, count, true);
    dv.setUint32(8, view.flip ? 1 : 0, true);
    dv.setInt32(12, view.dy, true);
    dv.setInt32(16, view.dx, true);
    const uni = this.gpu.uniform(new Uint8Array(params), "EvalLoader view");
    this.uniforms.push(uni);
    const s = this.set;
    return dispatch(
      this.gpu,
      "loader.view",
      this.gpu.pipeline("loader.wgsl", "view", this.consts, this.precision),
      [uni, s.imgLo, s.imgHi, s.lut, s.labels, x, y],
      groupsFor(count),
    );
  }

  destroy(): void {
    this.set.destroy();
    for (const u of this.uniforms) u.destroy();
  }
}
