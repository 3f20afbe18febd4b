// The device layer: adapter report, requested limits, and shader errors that name the kernel file and line.

import assert from "node:assert/strict";
import { testGpu } from "./util.ts";

Deno.test("gpu: the adapter is reported and its own limits are requested", async () => {
  const gpu = await testGpu();
  const a = gpu.adapter;
  assert.ok(a.name.length > 0);
  assert.equal(typeof a.isCpu, "boolean");
  assert.equal(a.limits.maxStorageBufferBindingSize, gpu.device.limits.maxStorageBufferBindingSize);
  // WebGPU's default is 128 MiB for storage bindings and 16 KiB of workgroup storage; we asked for the adapter's.
  assert.ok(gpu.device.limits.maxStorageBufferBindingSize >= 134217728);
  assert.ok(gpu.device.limits.maxComputeWorkgroupStorageSize >= 16384);
});

Deno.test("gpu: a WGSL error names the kernel file and the line inside it", async () => {
  const gpu = await testGpu();
  gpu.defineSource(
    "broken_test.wgsl",
    [
      "@group(0) @binding(0) var<storage, read_write> y: array<f32>;",
      "@compute @workgroup_size(64)",
      "fn main(@builtin(global_invocation_id) g: vec3u) {",
      "  y[g.x] = not_defined_anywhere;",
      "}",
    ].join("\n"),
  );
  gpu.pipeline("broken_test.wgsl", "main", { N: 1 });
  await assert.rejects(gpu.checkCompile(), (e: Error) => {
    assert.match(e.message, /kernels\/broken_test\.wgsl/);
    assert.match(e.message, /broken_test\.wgsl:4:\d+/);
    assert.match(e.message, /not_defined_anywhere/);
    return true;
  });
});
