// kernels/gemm.wgsl against the float64 reference: every transpose combination, odd shapes, both entry
// points, several register blocks, NaN-poisoned outputs; bit-identical reruns.

import assert from "node:assert/strict";
import { gemm, GEMM_BLOCK, type GemmBlock, type GemmShape, vec4Block } from "../lib/nn/gemm.ts";
import { gemmRef } from "../lib/reference/gemm.ts";
import {
  assertClose,
  freshSeed,
  POISON_2,
  poisoned,
  quantize,
  randn,
  testGpu,
  testRng,
  TOL,
} from "./util.ts";

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [5, 7, 3],
  [37, 29, 61],
  [64, 64, 216],
  [130, 67, 9],
  [3, 101, 40],
];
const BLOCKS: GemmBlock[] = [{ TM: 4, TN: 4 }, { TM: 1, TN: 1 }, { TM: 8, TN: 2 }, { TM: 8, TN: 16 }];

Deno.test("gemm: alpha op(A) op(B) [+ beta D], all transposes, odd shapes vs float64", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("gemm"));
  // Each (shape, transposes) pair runs one block and one entry point, rotating so every block meets both
  // entry points (compiling every combination takes minutes on lavapipe).
  let combo = 0;
  for (const [M, N, K] of SHAPES) {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const block = BLOCKS[combo % BLOCKS.length], withD = Math.floor(combo / BLOCKS.length) % 2 === 1;
      combo++;
      const a = quantize(randn(M * K, rand), "f32"), b = quantize(randn(K * N, rand), "f32");
      const d = quantize(randn(M * N, rand), "f32");
      const alpha = Math.fround(0.5 + rand()), beta = Math.fround(rand() * 4 - 2);
      const s: GemmShape = { M, N, K, transA, transB, alpha, ...(withD ? { beta } : {}) };
      const buffers = {
        a: gpu.bufferFrom(new Float32Array(a)),
        b: gpu.bufferFrom(new Float32Array(b)),
        c: poisoned(gpu, M * N, "f32"),
        ...(withD ? { d: gpu.bufferFrom(new Float32Array(d)) } : {}),
      };
      const op = gemm(gpu, { ...s, ...buffers }, block);
      await gpu.checkCompile();
      gpu.run([op]);
      const tag = `[${M}x${N}x${K} ${transA ? "T" : "N"}${transB ? "T" : "N"} ${block.TM}x${block.TN}` +
        `${withD ? " +D" : ""}]`;
      const expected = gemmRef(a, b, s, withD ? d : undefined);
      assertClose(await gpu.readF32(buffers.c), expected, TOL.f32, `gemm ${tag}`);
    }
  }
});

Deno.test("gemm: the vec4 path gives the scalar path's bits, all transposes", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("gemm vec4"));
  // [12, 8, 5]: the 8 x 16 block does not tile C, the vec4 path falls back to 4 x 4
  for (const [M, N, K] of [[16, 32, 7], [64, 64, 216], [12, 8, 5]]) {
    assert.ok(vec4Block({ M, N }, GEMM_BLOCK), `${M}x${N} takes the vec4 path`);
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = quantize(randn(M * K, rand), "f32"), b = quantize(randn(K * N, rand), "f32");
      const d = new Float32Array(randn(M * N, rand));
      const s: GemmShape = { M, N, K, transA, transB, alpha: 1.5, beta: -0.5 };
      const ab = gpu.bufferFrom(new Float32Array(a)), bb = gpu.bufferFrom(new Float32Array(b));
      const db = gpu.bufferFrom(d);
      const cv = poisoned(gpu, M * N, "f32"), cs = poisoned(gpu, M * N, "f32", "", POISON_2);
      const ops = [
        gemm(gpu, { ...s, a: ab, b: bb, d: db, c: cv }),
        gemm(gpu, { ...s, a: ab, b: bb, d: db, c: cs, scalar: true }),
      ];
      await gpu.checkCompile();
      gpu.run(ops);
      const tag = `[${M}x${N}x${K} ${transA ? "T" : "N"}${transB ? "T" : "N"}]`;
      const [v, sc] = [await gpu.readF32(cv), await gpu.readF32(cs)];
      assertClose(v, gemmRef(a, b, s, d), TOL.f32, `gemm vec4 ${tag}`);
      const at = v.findIndex((x, i) => !Object.is(x, sc[i]));
      assert.equal(at, -1, `gemm ${tag}: vec4 ${v[at]} != scalar ${sc[at]} at ${at}`);
    }
  }
});

Deno.test("gemm: the same inputs give the same bits; D may alias A", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("gemm bits"));
  const [M, N, K] = [45, 45, 45];
  const a = new Float32Array(randn(M * K, rand)), b = new Float32Array(randn(K * N, rand));
  const ab = gpu.bufferFrom(a), bb = gpu.bufferFrom(b);
  const c1 = poisoned(gpu, M * N, "f32"), c2 = poisoned(gpu, M * N, "f32", "", POISON_2);
  const s = { M, N, K, transA: true, alpha: 2, beta: -1 };
  const op1 = gemm(gpu, { ...s, a: ab, b: bb, c: c1, d: ab });
  const op2 = gemm(gpu, { ...s, a: ab, b: bb, c: c2, d: ab });
  await gpu.checkCompile();
  gpu.run([op1, op2]);
  const [r1, r2] = [await gpu.readF32(c1), await gpu.readF32(c2)];
  assertClose(r1, gemmRef(Float64Array.from(a), Float64Array.from(b), s, a), TOL.f32, "gemm D = A");
  const at = r1.findIndex((x, i) => !Object.is(x, r2[i]));
  assert.equal(at, -1, `gemm rerun: element ${at} differs (${r1[at]} vs ${r2[at]})`);
});

Deno.test("gemm: bad arguments are rejected with the reason", async () => {
  const gpu = await testGpu();
  const buf = gpu.buffer(16 * 4);
  assert.throws(() => gemm(gpu, { M: 4, N: 4, K: 4, a: buf, b: buf, c: buf, d: buf }), /both d and beta/);
  assert.throws(() => gemm(gpu, { M: 5, N: 4, K: 4, a: buf, b: buf, c: buf }), /a holds 16 floats, needs 20/);
  assert.throws(() => gemm(gpu, { M: 0, N: 4, K: 4, a: buf, b: buf, c: buf }), /M=0 must be a positive/);
});
