// Winograd F(2x2,3x3) and F(4x4,3x3) (kernels/winograd.wgsl, lib/nn/winograd.ts): the float64 algorithm
// against the direct float64 convolution, and the kernels (forward and input gradient, through
// lib/nn/conv.ts's variant dispatch) against the float64 reference on fresh random inputs with poisoned
// outputs, on the map sizes the network has (31, 15, 7, 3 after the 2x2 whitening conv and the pools) and
// even ones (32, 16, 8, 4), f32 and f16 storage. ERROR_REPORT=1 prints each variant's largest error beside
// the direct kernel's.

import assert from "node:assert/strict";
import { convForwardWith, convInputGradWith, convWeightGradWith } from "../lib/nn/conv.ts";
import { type ConvShape, outSize, type VariantOp } from "../lib/nn/conv_base.ts";
import {
  candidateVariants,
  convMultiplies,
  fitVariant,
  type KernelVariant,
  parseVariantId,
  variantId,
} from "../lib/nn/conv_variants.ts";
import type { Precision } from "../lib/gpu/kernels.ts";
import { convBackwardRef, convForwardRef } from "../lib/reference/conv.ts";
import { winogradForwardRef } from "../lib/reference/winograd.ts";
import {
  WINOGRAD_KIND,
  winogradChunks,
  winogradConv,
  type WinogradTile,
  winogradTiles,
  winogradWeightGrad,
} from "../lib/nn/winograd.ts";
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

const same = (N: number, H: number, W: number, CI: number, CO: number): ConvShape => ({
  N,
  H,
  W,
  CI,
  CO,
  KH: 3,
  KW: 3,
  PAD: 1,
});

// The network's map sizes and even ones; channel counts that are odd multiples of 4 (a TN4 tail), and wide.
const SHAPES: ConvShape[] = [
  same(2, 31, 31, 12, 20),
  same(3, 15, 15, 20, 12),
  same(2, 7, 7, 36, 28),
  same(5, 3, 3, 12, 4),
  same(1, 32, 32, 8, 12),
  same(2, 16, 16, 4, 36),
  same(3, 8, 8, 28, 8),
  same(4, 4, 4, 64, 68),
];

Deno.test("winograd float64 reference: F(2,3) and F(4,3) equal the direct convolution", () => {
  const rand = testRng(freshSeed("winograd ref"));
  for (const s of SHAPES.slice(0, 6)) {
    const x = randn(s.N * s.H * s.W * s.CI, rand), w = randn(9 * s.CI * s.CO, rand), b = randn(s.CO, rand);
    const direct = convForwardRef(s, x, w, b);
    for (const m of [2, 4] as WinogradTile[]) {
      assertClose(winogradForwardRef(s, m, x, w, b), direct, 1e-12, `winograd ref F(${m},3) ${s.H}x${s.W}`);
    }
  }
});

const DIRECT: KernelVariant = { kind: "register", TM: 8, TN4: 2, WG: 64 };
// The registry's Winograd candidates of the forward (F(2,3) 8x8, F(4,3) 8x8, F(4,3) 4x16), used in every
// pass.
const WINO: KernelVariant[] = WINOGRAD_KIND.candidates("forward");

/**
 * The tolerance of a variant: F(4,3)'s transforms (entries up to 8 and down to 1/24) amplify f32 rounding
 * about tenfold over the direct sum (measured up to 7e-6 relative to max-abs at 64 input channels,
 * ERROR_REPORT=1), so its f32 checks allow 5e-5; F(2,3) and f16 storage (transformed tensors in f32) keep the
 * usual tolerance.
 */
function tolOf(v: KernelVariant, p: Precision): number {
  return v.kind === "winograd" && v.MT === 4 && p === "f32" ? 5 * TOL.f32 : TOL[p];
}

/** Forward, input and weight (+ bias) gradient of `v` on `s` against the float64 reference, in each precision. */
async function checkVariant(v: KernelVariant, s: ConvShape, seedLabel: string) {
  const gpu = await testGpu();
  const rand = testRng(freshSeed(seedLabel));
  const { HO, WO } = outSize(s);
  const nx = s.N * s.H * s.W * s.CI, ny = s.N * HO * WO * s.CO, nw = 9 * s.CI * s.CO;
  const name = v.kind === "winograd" ? `winograd F(${v.MT},3)` : "direct";
  for (const p of precisions(gpu)) {
    const x = quantize(randn(nx, rand), p), dy = quantize(randn(ny, rand), p);
    const w = quantize(randn(nw, rand, 1 / Math.sqrt(9 * s.CI)), "f32");
    const b = quantize(randn(s.CO, rand, 0.5), "f32");
    const bx = upload(gpu, x, p),
      bdy = upload(gpu, dy, p),
      bw = upload(gpu, w, "f32"),
      bb = upload(gpu, b, "f32");
    const y = poisoned(gpu, ny, p), dx = poisoned(gpu, nx, p);
    const dw = poisoned(gpu, nw, "f32"), db = poisoned(gpu, s.CO, "f32");
    const fwd = convForwardWith(gpu, p, s, { x: bx, w: bw, b: bb, y }, v, "wino_test");
    const igr = convInputGradWith(gpu, p, s, { dy: bdy, w: bw, dx }, v, { WG: 64 }, "wino_test.igrad");
    const wgr = convWeightGradWith(gpu, p, s, { x: bx, dy: bdy, dw, db }, v, {}, "wino_test.wgrad");
    const ran = [fwd, ...igr, ...wgr].map((o) => (o as VariantOp).variant).filter(Boolean);
    const kindOf = (id: string) => {
      const r = parseVariantId(id);
      return r.kind === "winograd" ? `winograd-f${r.MT}` : r.kind;
    };
    assert.deepEqual(
      ran.map((id) => kindOf(id!)),
      Array(3).fill(kindOf(variantId(v))),
      `${variantId(v)} on ${JSON.stringify(s)} ran ${ran.join(", ")}`,
    );
    await gpu.checkCompile();
    gpu.run([fwd, ...igr, ...wgr]);
    const where = `[${s.N}x${s.H}x${s.W}x${s.CI}->${s.CO}]`;
    assertClose(
      await download(gpu, y, ny, p),
      convForwardRef(s, x, w, b),
      tolOf(v, p),
      `${name} forward ${p} ${where}`,
    );
    const ref = convBackwardRef(s, x, w, dy);
    assertClose(await download(gpu, dx, nx, p), ref.dx, tolOf(v, p), `${name} input grad ${p} ${where}`);
    assertClose(await download(gpu, dw, nw, "f32"), ref.dw, tolOf(v, p), `${name} weight grad ${p} ${where}`);
    assertClose(await download(gpu, db, s.CO, "f32"), ref.db, TOL[p], `${name} bias grad ${p} ${where}`);
    for (const buf of [bx, bdy, bw, bb, y, dx, dw, db]) buf.destroy();
  }
}

// Every shape for F(2,3) and F(4,3) (the tuner's usual picks); the other GEMM block and the direct kernel
// (for the error report) on three.
for (const v of [...WINO, DIRECT]) {
  for (const s of v.kind === "winograd" && v.TM === 8 ? SHAPES : [SHAPES[0], SHAPES[2], SHAPES[7]]) {
    Deno.test(`winograd ${variantId(v)} forward + input grad ${s.N}x${s.H}x${s.W}x${s.CI}->${s.CO}`, async () => {
      await checkVariant(v, s, `winograd ${variantId(v)} ${s.H}`);
    });
  }
}

Deno.test("winograd: the same inputs give the same bits twice", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("winograd bits"));
  const s = same(3, 15, 15, 16, 24);
  const bx = upload(gpu, randn(s.N * s.H * s.W * s.CI, rand), "f32");
  const bw = upload(gpu, randn(9 * s.CI * s.CO, rand, 0.1), "f32"),
    bb = upload(gpu, randn(s.CO, rand), "f32");
  for (const v of WINO) {
    const out: Uint8Array[] = [];
    for (let i = 0; i < 2; i++) {
      const y = poisoned(gpu, s.N * s.H * s.W * s.CO, "f32");
      gpu.run([convForwardWith(gpu, "f32", s, { x: bx, w: bw, b: bb, y }, v, "bits")]);
      out.push(new Uint8Array(await gpu.read(y)));
    }
    assert.deepEqual(out[0], out[1], `${variantId(v)}: two runs differ in bits`);
  }
});

Deno.test("winograd variants: ids parse back, offered for every pass, direct on other shapes", () => {
  for (const v of WINO) {
    assert.equal(JSON.stringify(parseVariantId(variantId(v))), JSON.stringify(v), variantId(v));
  }
  assert.equal(variantId(WINO[1]), "winograd-f4-8x8", "id changed");
  const kinds = (pass: "forward" | "input_grad" | "weight_grad") =>
    candidateVariants(pass).filter((v) => v.kind === "winograd").length;
  for (const pass of ["forward", "input_grad", "weight_grad"] as const) {
    assert.ok(kinds(pass) > 0, `winograd candidates: every pass (none for ${pass})`);
  }
  const whiten: ConvShape = { N: 2, H: 32, W: 32, CI: 4, CO: 24, KH: 2, KW: 2, PAD: 0 };
  for (const v of WINO) {
    assert.equal(fitVariant(v, "forward", whiten).kind, "register", "2x2 conv must run direct");
  }
  // multiplies: F(2,3) on 8x8 does 16 per 2x2 tile and channel pair, F(4,3) 36 per 4x4 tile, direct 9 per
  // pixel
  const s = same(1, 8, 8, 4, 4);
  const got = [
    convMultiplies(s, "forward", "winograd-f2-8x8"),
    convMultiplies(s, "forward", "winograd-f4-8x8"),
  ];
  const direct = convMultiplies(s, "forward", "register-8x8-wg64");
  assert.deepEqual(
    [...got, direct],
    [16 * 16 * 16, 4 * 36 * 16, 64 * 9 * 16],
    `multiplies ${got} / ${direct}`,
  );
});

Deno.test("winograd in chunks of tiles (a partial last chunk): forward bits of one chunk, weight grad summed", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("winograd chunks"));
  const s = same(3, 9, 7, 8, 12);
  const nx = s.N * s.H * s.W * s.CI, ny = s.N * s.H * s.W * s.CO, nw = 9 * s.CI * s.CO;
  const x = quantize(randn(nx, rand), "f32"), w = quantize(randn(nw, rand, 0.1), "f32");
  const b = quantize(randn(s.CO, rand), "f32"), dy = quantize(randn(ny, rand), "f32");
  const bx = upload(gpu, x, "f32"), bw = upload(gpu, w, "f32"), bb = upload(gpu, b, "f32");
  const bdy = upload(gpu, dy, "f32");
  const ref = convBackwardRef(s, x, w, dy);
  for (const MT of [2, 4] as WinogradTile[]) {
    const v = { kind: "winograd" as const, MT, TM: 8, TN4: 2 };
    // 7 (F(2,3)) or 4 (F(4,3)) tiles per chunk at most: several chunks, the last one partial
    const cap = (MT === 2 ? 7 : 4) * (MT + 2) ** 2 * s.CO * 4;
    const { chunks, PC } = winogradChunks(s, MT, cap), { P } = winogradTiles(s, MT);
    const split = `F(${MT},3): ${chunks} chunks of ${PC} for ${P} tiles`;
    assert.ok(chunks >= 3, split);
    assert.notEqual(PC * chunks, P, split);
    const ys = [0, 1].map(() => poisoned(gpu, ny, "f32")), dw = poisoned(gpu, nw, "f32");
    const a = (y: GPUBuffer) => ({ x: bx, w: bw, b: bb, y });
    gpu.run([
      ...winogradConv(gpu, "f32", s, a(ys[0]), v, false, "chunks", cap),
      ...winogradConv(gpu, "f32", s, a(ys[1]), v, false, "one"),
      ...winogradWeightGrad(gpu, "f32", s, { x: bx, dy: bdy, dw }, v, "chunks.wgrad", cap),
    ]);
    const got = [await gpu.read(ys[0]), await gpu.read(ys[1])].map((r) => new Uint8Array(r));
    assert.deepEqual(got[0], got[1], `F(${MT},3): chunked and whole differ in bits`);
    const y = await download(gpu, ys[0], ny, "f32");
    assertClose(y, convForwardRef(s, x, w, b), tolOf(v, "f32"), `winograd F(${MT},3) chunked`);
    const dwGot = await download(gpu, dw, nw, "f32");
    assertClose(dwGot, ref.dw, tolOf(v, "f32"), `winograd F(${MT},3) weight grad chunked`);
  }
});
