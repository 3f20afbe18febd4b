// Convolution kernels (forward, input gradient, weight and bias gradient) against the float64 reference, on
// fresh random inputs, in f32 and f16, with every output buffer poisoned before the run.

import { convForward, convInputGrad, type ConvShape, convWeightGrad, outSize } from "../lib/conv.ts";
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
];

for (const [label, s] of SHAPES) {
  Deno.test(`conv ${label}: forward, input grad, weight grad`, async () => {
    const gpu = await testGpu();
    const rand = testRng(freshSeed(`conv ${label}`));
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
        convForward(gpu, p, s, { x: xb, w: wb, b: bb, y }),
        ...convWeightGrad(gpu, p, s, { x: xb, dy: dyb, dw, db }),
      ];
      if (s.PAD * 2 === s.KH - 1) ops.push(...convInputGrad(gpu, p, s, { dy: dyb, w: wb, dx }));
      await gpu.checkCompile();
      gpu.run(ops);
      const ref = convBackwardRef(s, x, w, dy);
      assertClose(await download(gpu, y, ny, p), convForwardRef(s, x, w, b), TOL[p], `conv forward ${p}`);
      assertClose(await download(gpu, dw, nw, "f32"), ref.dw, TOL[p], `conv weight grad ${p}`);
      assertClose(await download(gpu, db, s.CO, "f32"), ref.db, TOL[p], `conv bias grad ${p}`);
      if (s.PAD * 2 === s.KH - 1) {
        assertClose(await download(gpu, dx, nx, p), ref.dx, TOL[p], `conv input grad ${p}`);
      }
    }
  });
}

Deno.test("conv weight grad is deterministic (same bits twice)", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("conv determinism"));
  const s: ConvShape = { N: 4, H: 15, W: 15, CI: 8, CO: 16, KH: 3, KW: 3, PAD: 1 };
  const { HO, WO } = outSize(s);
  const xb = upload(gpu, randn(s.N * s.H * s.W * s.CI, rand), "f32");
  const dyb = upload(gpu, randn(s.N * HO * WO * s.CO, rand), "f32");
  const nw = 9 * s.CI * s.CO;
  const out: Uint8Array[] = [];
  for (let i = 0; i < 2; i++) {
    const dw = poisoned(gpu, nw, "f32");
    gpu.run(convWeightGrad(gpu, "f32", s, { x: xb, dy: dyb, dw }));
    out.push(new Uint8Array(await gpu.read(dw)));
  }
  if (out[0].some((v, i) => v !== out[1][i])) throw new Error("weight gradient differs between two runs");
});
