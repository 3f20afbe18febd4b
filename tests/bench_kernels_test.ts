// The bench's ceiling probes are kernels too: the matmul and the copy against plain references.

import { copyOp, matmulOp } from "../lib/gpu/probe.ts";
import { assertClose, download, freshSeed, poisoned, randn, testGpu, testRng, upload } from "./util.ts";

Deno.test("bench probes: register-blocked matmul and vec4 copy match their references", async () => {
  const gpu = await testGpu();
  const rand = testRng(freshSeed("matmul probe"));
  for (const [M, N, K, TMV, TN4] of [[8, 16, 12, 2, 4], [24, 32, 7, 2, 2], [12, 48, 9, 1, 4]]) {
    const at = randn(K * M, rand), b = randn(K * N, rand); // at is A stored K-major: at[k][i] = A[i][k]
    const c = poisoned(gpu, M * N, "f32");
    gpu.run([matmulOp(gpu, { at: upload(gpu, at, "f32"), b: upload(gpu, b, "f32"), c }, M, N, K, TMV, TN4)]);
    const ref = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let k = 0; k < K; k++) {
        const av = Math.fround(at[k * M + i]);
        for (let j = 0; j < N; j++) ref[i * N + j] += av * Math.fround(b[k * N + j]);
      }
    }
    assertClose(await download(gpu, c, M * N, "f32"), ref, 1e-5, "matmul probe f32");
  }
  const n = 4096;
  const x = randn(n, rand);
  const dst = poisoned(gpu, n, "f32");
  gpu.run([copyOp(gpu, upload(gpu, x, "f32"), dst, n * 4)]);
  assertClose(await download(gpu, dst, n, "f32"), Float64Array.from(x, Math.fround), 0, "copy probe f32");
});
