// The registry of convolution variant kinds (lib/nn/conv_variants.ts) is complete and consistent: every
// kind's candidates and default are its own and parse back to themselves through its id (and no other kind's
// parse claims them), its kernel files exist and are in the tuner's cache key, and its ops compile no kernel
// file its record does not name (nor does it name one they never compile). The ops' numbers are checked
// against the float64 reference in tests/conv_test.ts and tests/winograd_test.ts.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { convForwardWith, convInputGradWith, convWeightGradWith, DEFAULT_TILES } from "../lib/nn/conv.ts";
import { type ConvPass, type ConvShape, outSize } from "../lib/nn/conv_base.ts";
import {
  candidateVariants,
  CONV_KINDS,
  convKind,
  fitVariant,
  type KernelVariant,
  kindNames,
  parseVariantId,
  variantId,
  variantProblem,
  variantUnfit,
} from "../lib/nn/conv_variants.ts";
import { KERNEL_FILES } from "../lib/nn/tune.ts";
import { ROOT } from "../lib/root.ts";
import { testGpu } from "./util.ts";

const PASSES: ConvPass[] = ["forward", "input_grad", "weight_grad"];
// lavapipe's limits and beyond: every candidate fits
const ROOMY = { maxComputeWorkgroupStorageSize: 1 << 20, maxComputeInvocationsPerWorkgroup: 1024 };
// a 3x3 "same" layer every kind computes itself, with K = 256 pixels: weight and bias gradients split
const SHAPE: ConvShape = { N: 4, H: 8, W: 8, CI: 8, CO: 8, KH: 3, KW: 3, PAD: 1 };

Deno.test("conv variant registry: every kind's candidates and default are its own and parse back by its id", () => {
  assert.deepEqual(new Set(CONV_KINDS.map((k) => k.name)).size, CONV_KINDS.length, "two kinds share a name");
  assert.deepEqual(kindNames(true), ["register", "tiled"], "the kinds a session's tiles default to");
  for (const k of CONV_KINDS) {
    assert.equal(convKind(k.name), k);
    for (const pass of PASSES) {
      const cands: KernelVariant[] = k.candidates(pass);
      assert.ok(cands.length > 0, `${k.name} offers no ${pass} candidate`);
      const fromTiles = k.fromTiles ? [k.fromTiles(DEFAULT_TILES, pass, SHAPE) as KernelVariant] : [];
      for (const v of [...cands, ...fromTiles]) {
        const id = variantId(v);
        assert.equal(v.kind, k.name, `${id} is offered by ${k.name}`);
        assert.deepEqual(parseVariantId(id), v, `${id} does not parse back`);
        const claimed = CONV_KINDS.filter((o) => o.parse(id) !== undefined).map((o) => o.name);
        assert.deepEqual(claimed, [k.name], `${id} is parsed by ${claimed.join(", ")}`);
        assert.equal(variantProblem(v, pass, SHAPE, ROOMY), undefined, `${id} cannot run ${pass}`);
        assert.equal(fitVariant(v, pass, SHAPE).kind, k.name, `${id} runs another kind on a 3x3 layer`);
      }
      const ids = cands.map(variantId);
      assert.equal(new Set(ids).size, ids.length, `${k.name} ${pass}: a candidate twice in ${ids}`);
    }
  }
  // the registry offers every kind's candidates that fit, in order
  for (const pass of PASSES) {
    const all = CONV_KINDS.flatMap((k): KernelVariant[] => k.candidates(pass));
    assert.deepEqual(candidateVariants(pass, ROOMY), all.filter((v) => variantUnfit(v, ROOMY) === undefined));
  }
  assert.throws(() => parseVariantId("nonesuch-8x8"), /unknown kernel variant id "nonesuch-8x8"/);
  assert.throws(() => convKind("nonesuch"), /unknown variant kind "nonesuch" \(register, tiled, winograd\)/);
});

Deno.test("conv variant registry: every kind's kernel files exist and are in the tuner's cache key", () => {
  for (const k of CONV_KINDS) {
    assert.ok(k.files.length > 0, `${k.name} names no kernel file`);
    for (const f of k.files) {
      assert.ok(existsSync(join(ROOT, "kernels", f)), `${k.name}: kernels/${f} does not exist`);
      assert.ok(KERNEL_FILES.includes(f), `${k.name}: kernels/${f} is not in the tuner's KERNEL_FILES`);
    }
  }
});

/**
 * The kernel files the ops of `v` compile (SHAPE is one every kind runs itself: the first test), in each pass
 * (weight gradient with and without a bias, with and without subgroups), on SHAPE.
 */
async function filesCompiled(v: KernelVariant, pass: ConvPass): Promise<Set<string>> {
  const gpu = await testGpu();
  const files = new Set<string>();
  const pipeline = gpu.pipeline;
  gpu.pipeline = (file, ...rest) => {
    files.add(file);
    return pipeline.call(gpu, file, ...rest);
  };
  const bufs: GPUBuffer[] = [];
  const buf = (floats: number) => {
    bufs.push(gpu.buffer(floats * 4, "registry test"));
    return bufs.at(-1)!;
  };
  try {
    const s = SHAPE, { HO, WO } = outSize(s);
    const x = buf(s.N * s.H * s.W * s.CI), y = buf(s.N * HO * WO * s.CO), w = buf(9 * s.CI * s.CO);
    const b = buf(s.CO), dw = buf(9 * s.CI * s.CO);
    if (pass === "forward") convForwardWith(gpu, "f32", s, { x, w, b, y }, v, "registry");
    if (pass === "input_grad") convInputGradWith(gpu, "f32", s, { dy: y, w, dx: x }, v, {}, "registry");
    if (pass === "weight_grad") {
      for (const subgroups of [false, ...(gpu.adapter.subgroups ? [true] : [])]) {
        for (const db of [undefined, b]) {
          convWeightGradWith(gpu, "f32", s, { x, dy: y, dw, db }, v, { subgroups }, "registry");
        }
      }
    }
    await gpu.checkCompile();
  } finally {
    gpu.pipeline = pipeline;
    bufs.forEach((x) => x.destroy());
  }
  return files;
}

Deno.test("conv variant registry: each kind's ops compile exactly the kernel files its record names", async () => {
  const gpu = await testGpu();
  const limits = gpu.device.limits as unknown as Record<string, number>;
  for (const k of CONV_KINDS) {
    const used = new Set<string>();
    for (const pass of PASSES) {
      const v = k.candidates(pass).find((c) => variantUnfit(c, limits) === undefined);
      assert.ok(v, `${k.name}: no ${pass} candidate fits this device`);
      for (const f of await filesCompiled(v, pass)) {
        assert.ok(
          k.files.includes(f),
          `${variantId(v)} ${pass} compiles kernels/${f}, not in ${k.name}.files`,
        );
        used.add(f);
      }
    }
    // subgroup kernels are only compiled where the device has them
    const unused = k.files.filter((f) => !used.has(f) && !(f.includes("_sg") && !gpu.adapter.subgroups));
    assert.deepEqual(unused, [], `${k.name} names kernel files its ops never compile`);
  }
});
