// Convolution kernels (forward, input gradient, weight and bias gradient) against the float64 reference, on
// fresh random inputs, in f32 and f16, with every output buffer poisoned before the run.

import {
  convForward,
  convInputGrad,
  type ConvShape,
  type ConvTiles,
  type ConvVariant,
  convWeightGrad,
  DEFAULT_TILES,
  outSize,
  tiledBlock,
  tiledWorkgroupBytes,
  tiledWorkgroupSize,
  tilesFor,
} from "../lib/conv.ts";
import type { AdapterReport } from "../lib/gpu.ts";
import { convBackwardRef, convForwardRef } from "../lib/reference/conv.ts";
import {
  assertClose,
  download,
  freshSeed,
  poisoned,
  precisions,
  quantize,
  randn,
  testGpu,
  testRng,
  TOL,
  upload,
} from "./util.ts";

const SHAPES: [string, ConvShape][] = [
  ["3x3 same", { N: 3, H: 7, W: 5, CI: 8, CO: 12, KH: 3, KW: 3, PAD: 1 }],
  ["3x3 same odd batch", { N: 5, H: 9, W: 9, CI: 24, CO: 16, KH: 3, KW: 3, PAD: 1 }],
  ["3x3 same wide", { N: 2, H: 3, W: 3, CI: 32, CO: 40, KH: 3, KW: 3, PAD: 1 }],
  ["2x2 valid (whitening)", { N: 3, H: 12, W: 11, CI: 4, CO: 24, KH: 2, KW: 2, PAD: 0 }],
  ["3x3 same large K (split)", { N: 6, H: 15, W: 15, CI: 8, CO: 8, KH: 3, KW: 3, PAD: 1 }],
  // two channel tiles of the workgroup variant (64 + a tail of 4), K = 180 not a multiple of BK
  ["3x3 same two channel tiles", { N: 2, H: 5, W: 6, CI: 20, CO: 68, KH: 3, KW: 3, PAD: 1 }],
];

const VARIANTS: ConvVariant[] = ["register", "workgroup"];

for (const variant of VARIANTS) {
  for (const [label, s] of SHAPES) {
    Deno.test(`conv ${variant} ${label}: forward, input grad, weight grad`, async () => {
      await checkConv(variant, label, s);
    });
  }
}

async function checkConv(variant: ConvVariant, label: string, s: ConvShape) {
  const tiles: ConvTiles = { ...DEFAULT_TILES, variant };
  const gpu = await testGpu();
  const rand = testRng(freshSeed(`conv ${variant} ${label}`));
  const { HO, WO } = outSize(s);
  const nx = s.N * s.H * s.W * s.CI, ny = s.N * HO * WO * s.CO, nw = s.KH * s.KW * s.CI * s.CO;
  for (const p of precisions(gpu)) {
    const x = quantize(randn(nx, rand), p);
    const w = quantize(randn(nw, rand, 1 / Math.sqrt(s.KH * s.KW * s.CI)), "f32");
    const b = quantize(randn(s.CO, rand, 0.5), "f32");
    const dy = quantize(randn(ny, rand), p);
    const xb = upload(gpu, x, p), dyb = upload(gpu, dy, p);
    const wb = upload(gpu, w, "f32"), bb = upload(gpu, b, "f32");
    const y = poisoned(gpu, ny, p), dx = poisoned(gpu, nx, p);
    const dw = poisoned(gpu, nw, "f32"), db = poisoned(gpu, s.CO, "f32");
    const ops = [
      convForward(gpu, p, s, { x: xb, w: wb, b: bb, y }, tiles),
      ...convWeightGrad(gpu, p, s, { x: xb, dy: dyb, dw, db }, tiles),
    ];
    if (s.PAD * 2 === s.KH - 1) ops.push(...convInputGrad(gpu, p, s, { dy: dyb, w: wb, dx }, tiles));
    await gpu.checkCompile();
    gpu.run(ops);
    const ref = convBackwardRef(s, x, w, dy);
    const yRef = convForwardRef(s, x, w, b);
    assertClose(await download(gpu, y, ny, p), yRef, TOL[p], `conv ${variant} forward ${p}`);
    assertClose(await download(gpu, dw, nw, "f32"), ref.dw, TOL[p], `conv ${variant} weight grad ${p}`);
    assertClose(await download(gpu, db, s.CO, "f32"), ref.db, TOL[p], `conv ${variant} bias grad ${p}`);
    if (s.PAD * 2 === s.KH - 1) {
      assertClose(await download(gpu, dx, nx, p), ref.dx, TOL[p], `conv ${variant} input grad ${p}`);
    }
  }
}

function adapter(isCpu: boolean): AdapterReport {
  return {
    name: isCpu ? "llvmpipe (LLVM 19.1.7, 256 bits)" : "NVIDIA H100",
    vendor: isCpu ? "mesa" : "nvidia",
    architecture: "",
    backend: "vulkan",
    isCpu,
    f16: true,
    timestampQuery: true,
    limits: {},
  };
}

Deno.test("conv tilesFor: register blocking on CPU adapters, workgroup tiling on GPUs", () => {
  const cpu = tilesFor(adapter(true)), gpu = tilesFor(adapter(false));
  if (cpu.variant !== "register" || gpu.variant !== "workgroup") {
    throw new Error(`tilesFor: CPU ${cpu.variant}, GPU ${gpu.variant}`);
  }
  if (DEFAULT_TILES.variant !== "register") throw new Error("DEFAULT_TILES must stay on register blocking");
  // everything but the variant is the defaults
  for (const t of [cpu, gpu]) {
    if (JSON.stringify({ ...t, variant: "register" }) !== JSON.stringify(DEFAULT_TILES)) {
      throw new Error(`tilesFor changed more than the variant: ${JSON.stringify(t)}`);
    }
  }
});

Deno.test("conv tiled blocks fit WebGPU's default limits (16 KiB workgroup memory, 256 invocations)", () => {
  for (const CO of [4, 8, 24, 32, 36, 64, 256, 1024]) {
    const t = tiledBlock(CO);
    const bytes = tiledWorkgroupBytes(t), size = tiledWorkgroupSize(t);
    if (bytes > 16384 || size > 256 || t.BK % 4 || t.TM % 4 || t.BM % t.TM || (t.BN / 4) % t.TN4) {
      throw new Error(`CO=${CO}: block ${JSON.stringify(t)} has ${bytes} B, ${size} invocations`);
    }
  }
});

for (const variant of VARIANTS) {
  Deno.test(`conv ${variant} weight grad is deterministic (same bits twice)`, async () => {
    const gpu = await testGpu();
    const rand = testRng(freshSeed(`conv ${variant} determinism`));
    const s: ConvShape = { N: 4, H: 15, W: 15, CI: 8, CO: 16, KH: 3, KW: 3, PAD: 1 };
    const { HO, WO } = outSize(s);
    const xb = upload(gpu, randn(s.N * s.H * s.W * s.CI, rand), "f32");
    const dyb = upload(gpu, randn(s.N * HO * WO * s.CO, rand), "f32");
    const nw = 9 * s.CI * s.CO;
    const out: Uint8Array[] = [];
    for (let i = 0; i < 2; i++) {
      const dw = poisoned(gpu, nw, "f32");
      gpu.run(convWeightGrad(gpu, "f32", s, { x: xb, dy: dyb, dw }, { ...DEFAULT_TILES, variant }));
      out.push(new Uint8Array(await gpu.read(dw)));
    }
    if (out[0].some((v, i) => v !== out[1][i])) throw new Error("weight gradient differs between two runs");
  });
}
