// The device layer: adapter report, requested limits, and shader errors that name the kernel file and line.

import assert from "node:assert/strict";
import { expandIncludes } from "../lib/gpu/kernels.ts";
import { testGpu } from "./util.ts";

Deno.test("gpu: the adapter is reported and its own limits are requested", async () => {
  const gpu = await testGpu();
  const a = gpu.adapter;
  assert.ok(a.name.length > 0);
  assert.equal(typeof a.isCpu, "boolean");
  assert.equal(a.limits.maxStorageBufferBindingSize, gpu.device.limits.maxStorageBufferBindingSize);
  // WebGPU's default is 128 MiB for storage bindings and 16 KiB of workgroup storage; we asked for the
  // adapter's.
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

Deno.test("gpu: an error inside an included file names that file and its line", async () => {
  const gpu = await testGpu();
  gpu.defineSource(
    "inc_test/piece.wgsl",
    ["// a shared piece", "fn piece() -> f32 {", "  return no_such_value;", "}"].join("\n"),
  );
  gpu.defineSource(
    "inc_test/main.wgsl",
    [
      "// the kernel",
      '// #include "inc_test/piece.wgsl"',
      '// #include "inc_test/piece.wgsl"',
      "@group(0) @binding(0) var<storage, read_write> y: array<f32>;",
      "@compute @workgroup_size(64)",
      "fn main(@builtin(global_invocation_id) g: vec3u) {",
      "  y[g.x] = piece();",
      "}",
    ].join("\n"),
  );
  gpu.pipeline("inc_test/main.wgsl", "main", { N: 1, M: 2 });
  await assert.rejects(gpu.checkCompile(), (e: Error) => {
    assert.match(e.message, /kernels\/inc_test\/main\.wgsl/);
    assert.match(e.message, /inc_test\/piece\.wgsl:3:\d+/);
    assert.doesNotMatch(e.message, /main\.wgsl:\d+/);
    return true;
  });
});

Deno.test("gpu: included files are spliced in once, and a missing one names the including line", () => {
  const files: Record<string, string> = {
    "k.wgsl": '// #include "a.wgsl"\nfn k() {}\n// #include "b.wgsl"',
    "a.wgsl": '// #include "b.wgsl"\nfn a() {}',
    "b.wgsl": '// #include "a.wgsl"\nfn b() {}',
  };
  const read = (f: string) => {
    if (!(f in files)) throw new Error("no such file");
    return files[f];
  };
  const { lines, origins } = expandIncludes("k.wgsl", read);
  assert.deepEqual(lines.filter((l) => l.startsWith("fn")), ["fn b() {}", "fn a() {}", "fn k() {}"]);
  assert.equal(lines.length, origins.length);
  assert.deepEqual(origins[lines.indexOf("fn b() {}")], { file: "b.wgsl", line: 2 });
  assert.deepEqual(origins[lines.indexOf("fn k() {}")], { file: "k.wgsl", line: 2 });
  files["k.wgsl"] = 'fn k() {}\n// #include "missing.wgsl"';
  assert.throws(
    () => expandIncludes("k.wgsl", read),
    /kernels\/k\.wgsl:2: #include "missing\.wgsl": no such file/,
  );
});
