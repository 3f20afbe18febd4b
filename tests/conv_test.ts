// Convolution kernels (forward, input gradient, weight and bias gradient) against the float64 reference, on
// fresh random inputs, in f32 and f16, with every output buffer poisoned before the run.

import assert from "node:assert/strict";
import {
  convForward,
  convForwardWith,
  convInputGrad,
  convInputGradWith,
  type ConvTiles,
  convWeightGrad,
  convWeightGradWith,
  DEFAULT_TILES,
  resolveVariant,
  tilesFor,
} from "../lib/nn/conv.ts";
import { biasGrad, type ConvShape, outSize } from "../lib/nn/conv_base.ts";
import { tiledBlock, tiledWorkgroupBytes, tiledWorkgroupSize } from "../lib/nn/conv_tiled.ts";
import {
  candidateVariants,
  type KernelVariant,
  type KindName,
  kindNames,
  parseVariantId,
  variantId,
} from "../lib/nn/conv_variants.ts";
import type { AdapterReport } from "../lib/gpu/adapter.ts";
import type { Gpu, Op } from "../lib/gpu/gpu.ts";
import type { Precision } from "../lib/gpu/kernels.ts";
import { convBackwardRef, convForwardRef } from "../lib/reference/conv.ts";
import {
  assertClose,
  download,
  freshSeed,
  POISON,
  POISON_2,
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

// Every kind a session's tiles can default to (register, tiled): what a network runs without choices.
const VARIANTS: KindName[] = kindNames(true);

for (const variant of VARIANTS) {
  for (const [label, s] of SHAPES) {
    Deno.test(`conv ${variant} ${label}: forward, input grad, weight grad`, async () => {
      await checkConv(variant, label, s);
    });
  }
}

type ConvBuffers = Record<"x" | "w" | "b" | "y" | "dy" | "dx" | "dw" | "db", GPUBuffer>;
type ConvOps = (
  gpu: Gpu,
  p: Precision,
  bufs: ConvBuffers,
) => { forward: Op[]; weightGrad: Op[]; inputGrad: () => Op[] };
type CheckLabel = (pass: "forward" | "weight grad" | "bias grad" | "input grad", p: Precision) => string;

/**
 * The convolution ops `build` makes, on fresh random inputs in each precision with poisoned outputs, against
 * the float64 reference: forward, weight and bias gradient, and (for "same" shapes) the input gradient.
 */
async function checkPasses(s: ConvShape, seedLabel: string, build: ConvOps, label: CheckLabel) {
  const gpu = await testGpu();
  const rand = testRng(freshSeed(seedLabel));
  const { HO, WO } = outSize(s);
  const nx = s.N * s.H * s.W * s.CI, ny = s.N * HO * WO * s.CO, nw = s.KH * s.KW * s.CI * s.CO;
  const same = s.PAD * 2 === s.KH - 1;
  for (const p of precisions(gpu)) {
    const x = quantize(randn(nx, rand), p);
    const w = quantize(randn(nw, rand, 1 / Math.sqrt(s.KH * s.KW * s.CI)), "f32");
    const b = quantize(randn(s.CO, rand, 0.5), "f32");
    const dy = quantize(randn(ny, rand), p);
    const bufs: ConvBuffers = {
      x: upload(gpu, x, p),
      dy: upload(gpu, dy, p),
      w: upload(gpu, w, "f32"),
      b: upload(gpu, b, "f32"),
      y: poisoned(gpu, ny, p),
      dx: poisoned(gpu, nx, p),
      dw: poisoned(gpu, nw, "f32"),
      db: poisoned(gpu, s.CO, "f32"),
    };
    const made = build(gpu, p, bufs);
    const ops = [...made.forward, ...made.weightGrad, ...(same ? made.inputGrad() : [])];
    await gpu.checkCompile();
    gpu.run(ops);
    const ref = convBackwardRef(s, x, w, dy);
    const yRef = convForwardRef(s, x, w, b);
    assertClose(await download(gpu, bufs.y, ny, p), yRef, TOL[p], label("forward", p));
    assertClose(await download(gpu, bufs.dw, nw, "f32"), ref.dw, TOL[p], label("weight grad", p));
    assertClose(await download(gpu, bufs.db, s.CO, "f32"), ref.db, TOL[p], label("bias grad", p));
    if (same) assertClose(await download(gpu, bufs.dx, nx, p), ref.dx, TOL[p], label("input grad", p));
  }
}

/** The ops a network runs (chosen from `tiles`) for one default variant. */
function checkConv(variant: KindName, label: string, s: ConvShape) {
  const tiles: ConvTiles = { ...DEFAULT_TILES, variant };
  return checkPasses(s, `conv ${variant} ${label}`, (g, p, bf) => ({
    forward: [convForward(g, p, s, { x: bf.x, w: bf.w, b: bf.b, y: bf.y }, tiles)],
    weightGrad: convWeightGrad(g, p, s, { x: bf.x, dy: bf.dy, dw: bf.dw, db: bf.db }, tiles),
    inputGrad: () => convInputGrad(g, p, s, { dy: bf.dy, w: bf.w, dx: bf.dx }, tiles),
  }), (pass, p) => `conv ${variant} ${pass} ${p}`);
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
    subgroups: false,
    limits: {},
  };
}

Deno.test("conv tilesFor: register blocking on CPU adapters, workgroup tiling on GPUs", () => {
  const cpu = tilesFor(adapter(true)), gpu = tilesFor(adapter(false));
  assert.deepEqual([cpu.variant, gpu.variant], ["register", "tiled"]);
  assert.equal(DEFAULT_TILES.variant, "register", "DEFAULT_TILES must stay on register blocking");
  // everything but the variant is the defaults
  for (const t of [cpu, gpu]) {
    assert.deepEqual({ ...t, variant: "register" }, DEFAULT_TILES, "tilesFor changed more than the variant");
  }
});

Deno.test("conv tiled blocks fit WebGPU's default limits (16 KiB workgroup memory, 256 invocations)", () => {
  for (const CO of [4, 8, 24, 32, 36, 64, 256, 1024]) {
    const t = tiledBlock(CO);
    const bytes = tiledWorkgroupBytes(t), size = tiledWorkgroupSize(t);
    const block = `CO=${CO}: block ${JSON.stringify(t)} has ${bytes} B, ${size} invocations`;
    assert.ok(bytes <= 16384 && size <= 256, block);
    assert.deepEqual([t.BK % 4, t.TM % 4, t.BM % t.TM, (t.BN / 4) % t.TN4], [0, 0, 0, 0], block);
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
    // Each run's output poisoned with another NaN: an element neither run writes differs too.
    for (const word of [POISON, POISON_2]) {
      const dw = poisoned(gpu, nw, "f32", "", word);
      gpu.run(convWeightGrad(gpu, "f32", s, { x: xb, dy: dyb, dw }, { ...DEFAULT_TILES, variant }));
      out.push(new Uint8Array(await gpu.read(dw)));
    }
    const at = out[0].findIndex((v, i) => v !== out[1][i]);
    assert.equal(at, -1, `weight gradient differs between two runs (element ${at >> 2})`);
  });
}

// ------------------------------------------------------------------------------------------ every variant

// Odd shapes for the variants: pixels not a multiple of any tile, CO = 68 (a channel tail of 4 beyond 64),
// K = 180 (not a multiple of BK), the 2x2 whitening conv, an odd batch.
const VARIANT_SHAPES: [string, ConvShape][] = [
  ["odd batch", { N: 5, H: 9, W: 9, CI: 24, CO: 16, KH: 3, KW: 3, PAD: 1 }],
  ["two channel tiles", { N: 2, H: 5, W: 6, CI: 20, CO: 68, KH: 3, KW: 3, PAD: 1 }],
  ["2x2 valid", { N: 3, H: 12, W: 11, CI: 4, CO: 24, KH: 2, KW: 2, PAD: 0 }],
];

/** Forward, input gradient and weight (+ bias) gradient of explicit variants against the float64 reference. */
function checkVariants(
  label: string,
  s: ConvShape,
  fv: KernelVariant,
  iv: KernelVariant,
  wv: KernelVariant,
  subgroups: boolean,
) {
  const what = `${variantId(fv)} / ${variantId(iv)} / ${variantId(wv)}${subgroups ? " sg" : ""}`;
  return checkPasses(
    s,
    `conv variants ${label} ${what}`,
    (g, p, bf) => ({
      forward: [convForwardWith(g, p, s, { x: bf.x, w: bf.w, b: bf.b, y: bf.y }, fv)],
      weightGrad: convWeightGradWith(g, p, s, { x: bf.x, dy: bf.dy, dw: bf.dw, db: bf.db }, wv, {
        subgroups,
      }),
      inputGrad: () => convInputGradWith(g, p, s, { dy: bf.dy, w: bf.w, dx: bf.dx }, iv),
    }),
    (pass, p) =>
      pass === "forward"
        ? `conv ${variantId(fv)} forward ${p} [${label}]`
        : `conv ${variantId(pass === "input grad" ? iv : wv)} ${pass} ${p}`,
  );
}

// Every candidate the tuner may pick (as many as lavapipe's limits admit: it allows 32 KiB of workgroup
// memory, so even the 128x128 tiles run here), each pass's list walked in step, on each odd shape.
{
  const limits = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 };
  // (the Winograd candidates: tests/winograd_test.ts, with their own shapes and tolerance)
  const direct = (v: KernelVariant) => v.kind !== "winograd";
  const fwd = candidateVariants("forward", limits).filter(direct);
  const igr = candidateVariants("input_grad", limits).filter(direct);
  const wgr = candidateVariants("weight_grad", limits);
  const n = Math.max(fwd.length, igr.length, wgr.length);
  const workgroupBytes = (await testGpu()).device.limits.maxComputeWorkgroupStorageSize;
  for (const [label, s] of VARIANT_SHAPES) {
    for (let i = 0; i < n; i++) {
      const fv = fwd[i % fwd.length], iv = igr[(i + 1) % igr.length], wv = wgr[i % wgr.length];
      const skip = [fv, iv, wv].some((v) => v.kind === "tiled" && tiledWorkgroupBytes(v) > workgroupBytes);
      Deno.test({
        name: `conv variants ${label}: ${variantId(fv)}, igrad ${variantId(iv)}, wgrad ${variantId(wv)}${
          skip ? ` (skipped: the device has ${workgroupBytes} bytes of workgroup memory)` : ""
        }`,
        ignore: skip,
        fn: () => checkVariants(label, s, fv, iv, wv, false),
      });
    }
  }
}

// The bias gradient of the tiled weight gradient: subgroup sums and the workgroup-memory tree.
for (const subgroups of [true, false]) {
  const skip = subgroups && !(await testGpu()).adapter.subgroups;
  Deno.test({
    name: `conv tiled weight grad, bias gradient ${subgroups ? "with" : "without"} subgroups${
      skip ? " (skipped: the device has no subgroups feature)" : ""
    }`,
    ignore: skip,
    fn: async () => {
      const wv: KernelVariant = { kind: "tiled", BM: 64, BN: 64, BK: 16, TM: 4, TN4: 1, DB: 2 };
      for (const [label, s] of VARIANT_SHAPES) await checkVariants(label, s, wv, wv, wv, subgroups);
      // a large M: many pixels per invocation, many chunks
      const big: ConvShape = { N: 9, H: 17, W: 13, CI: 8, CO: 12, KH: 3, KW: 3, PAD: 1 };
      await checkVariants("large M", big, wv, wv, wv, subgroups);
    },
  });
}

Deno.test("conv subgroups: Gpu.create has them exactly when the adapter grants them (lavapipe does)", async () => {
  const gpu = await testGpu();
  assert.equal(
    gpu.adapter.subgroups,
    gpu.device.features.has("subgroups"),
    `the adapter report says subgroups ${gpu.adapter.subgroups}, the device disagrees`,
  );
  // Ask a fresh adapter for a device with the feature, as Gpu.create does (adapter.features omits it in
  // Deno).
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  let granted = false;
  try {
    const device = await adapter!.requestDevice({ requiredFeatures: ["subgroups" as GPUFeatureName] });
    granted = device.features.has("subgroups");
    device.destroy();
  } catch {
    granted = false;
  }
  assert.equal(
    granted,
    gpu.adapter.subgroups,
    `the adapter grants subgroups: ${granted}, but Gpu.create has them: ${gpu.adapter.subgroups}`,
  );
  assert.ok(
    granted || !/llvmpipe|lavapipe/i.test(gpu.adapter.name),
    "lavapipe runs subgroup ops, but its device did not get the subgroups feature",
  );
});

Deno.test("conv register weight grad: the combined bias gradient has the bits of the separate bias kernel", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("conv combined bias bits"));
  for (
    const s of [SHAPES[1][1], SHAPES[4][1], { N: 4, H: 32, W: 32, CI: 16, CO: 32, KH: 3, KW: 3, PAD: 1 }]
  ) {
    const { HO, WO } = outSize(s);
    for (const p of precisions(gpu)) {
      const xb = upload(gpu, randn(s.N * s.H * s.W * s.CI, rand), p);
      const dyb = upload(gpu, randn(s.N * HO * WO * s.CO, rand), p);
      const nw = s.KH * s.KW * s.CI * s.CO;
      const dw2 = poisoned(gpu, nw, "f32"), db2 = poisoned(gpu, s.CO, "f32");
      const dw3 = poisoned(gpu, nw, "f32"), db3 = poisoned(gpu, s.CO, "f32");
      const combined = convWeightGrad(gpu, p, s, { x: xb, dy: dyb, dw: dw3, db: db3 });
      const separate = [
        ...convWeightGrad(gpu, p, s, { x: xb, dy: dyb, dw: dw2 }),
        ...biasGrad(gpu, p, { dy: dyb, db: db2, M: s.N * HO * WO, C: s.CO }),
      ];
      assert.ok(combined.length <= 3, `weight + bias gradient: ${combined.length} dispatches, not 3`);
      gpu.run([...combined, ...separate]);
      for (
        const [a, b, what] of [[dw3, dw2, "dw"], [db3, db2, "db"]] as const
      ) {
        const u = new Uint8Array(await gpu.read(a)), v = new Uint8Array(await gpu.read(b));
        assert.deepEqual(u, v, `${what} ${p}: combined and separate differ in bits`);
      }
    }
  }
});

Deno.test("conv variants: stable ids, parsed back, per-layer choices resolved by layer label", () => {
  const all = [
    ...candidateVariants("forward", { maxComputeWorkgroupStorageSize: 1 << 20 }),
    ...candidateVariants("weight_grad", { maxComputeWorkgroupStorageSize: 1 << 20 }),
  ];
  for (const v of all) {
    assert.deepEqual(parseVariantId(variantId(v)), v, `${variantId(v)} does not parse back`);
  }
  assert.equal(variantId({ kind: "register", TM: 8, TN4: 2, WG: 64 }), "register-8x8-wg64");
  assert.equal(
    variantId({ kind: "tiled", BM: 128, BN: 128, BK: 8, TM: 8, TN4: 2, DB: 2 }),
    "tiled-128x128x8-8x8-db2",
  );
  // WebGPU's default limits (16 KiB) rule out the 128x128x16 tiles
  assert.ok(
    !candidateVariants("forward").some((v) => v.kind === "tiled" && tiledWorkgroupBytes(v) > 16384),
    "a candidate exceeds the default workgroup memory",
  );
  const s: ConvShape = { N: 2, H: 8, W: 8, CI: 16, CO: 32, KH: 3, KW: 3, PAD: 1 };
  const pick: KernelVariant = { kind: "tiled", BM: 64, BN: 64, BK: 16, TM: 4, TN4: 1, DB: 2 };
  const tiles: ConvTiles = { ...DEFAULT_TILES, choices: { "2.conv1|weight_grad": pick } };
  const ran = (t: ConvTiles, label: string, pass: "forward" | "weight_grad", shape: ConvShape) =>
    variantId(resolveVariant(t, label, pass, shape));
  assert.equal(ran(tiles, "2.conv1", "weight_grad", s), variantId(pick), "2.conv1's weight gradient choice");
  assert.equal(ran(tiles, "2.conv1", "forward", s), "register-8x8-wg64", "default forward");
  assert.equal(ran(tiles, "2.conv2", "weight_grad", s), "register-8x16-wg64", "another layer: the default");
  assert.equal(ran(tiles, "2.conv1", "weight_grad", { ...s, CI: 4, CO: 8 }), variantId(pick), "choice lost");
  assert.equal(ran(DEFAULT_TILES, "x", "weight_grad", { ...s, CI: 4, CO: 8 }), "register-4x8-wg64");
});
