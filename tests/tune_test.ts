// The autotuner without a GPU clock: an injected timing function decides, and the tests check the choice, the
// cache key, cache reuse and invalidation, the modes, and the per-layer choices handed to the conv ops.

import assert from "node:assert/strict";
import { DEFAULT_TILES, resolveVariant, tilesFor } from "../lib/nn/conv.ts";
import { type ConvShape, transposedShape } from "../lib/nn/conv_base.ts";
import { type KernelVariant, variantId } from "../lib/nn/conv_variants.ts";
import type { AdapterReport } from "../lib/gpu/adapter.ts";
import { Graph } from "../lib/nn/module.ts";
import { INPUT_SHAPE } from "../lib/nn/model.ts";
import {
  convJobs,
  defaultCachePath,
  fallbackOf,
  jobKey,
  kernelsHash,
  type TimeFn,
  type TuneJob,
  tuneKey,
  type TuneMode,
  tuneNetwork,
  Tuner,
  variantsFromRecord,
} from "../lib/nn/tune.ts";
import { makeNet } from "../main.ts";

function adapter(over: Partial<AdapterReport> = {}): AdapterReport {
  return {
    name: "NVIDIA H100 80GB HBM3",
    vendor: "nvidia",
    architecture: "hopper",
    backend: "vulkan",
    isCpu: false,
    f16: true,
    timestampQuery: true,
    subgroups: true,
    driver: "NVIDIA 550.54",
    limits: {},
    ...over,
  };
}

const LIMITS = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 };
const SHAPE: ConvShape = { N: 384, H: 32, W: 32, CI: 24, CO: 64, KH: 3, KW: 3, PAD: 1 };

/** A fake clock: the named variant is fastest (by pass), every other one takes 10 ms. */
function fakeTime(fastest: Record<string, string>, calls: string[] = []): TimeFn {
  return (job: TuneJob, v: KernelVariant) => {
    calls.push(`${job.pass} ${variantId(v)}`);
    return Promise.resolve(variantId(v) === fastest[job.pass] ? 1 : 10 + calls.length * 1e-3);
  };
}

function tuner(
  mode: TuneMode,
  path: string,
  time: TimeFn,
  over: Partial<AdapterReport> = {},
  kernels = "k1",
) {
  const a = adapter(over);
  return new Tuner({
    key: tuneKey(a, kernels, "2.9.6"),
    mode,
    isCpu: a.isCpu,
    time,
    limits: LIMITS,
    fallback: fallbackOf(tilesFor(a)),
    path,
  });
}

const FAST = {
  forward: "tiled-128x128x8-8x8-db2",
  input_grad: "tiled-64x64x16-8x8",
  weight_grad: "register-4x16-wg64",
};

Deno.test("tune: the fastest candidate wins, the cache is written and reused without timing", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/tune-cache.json`;
  const calls: string[] = [];
  const t1 = tuner("auto", path, fakeTime(FAST, calls));
  for (const pass of ["forward", "input_grad", "weight_grad"] as const) {
    const r = await t1.choose({ shape: SHAPE, pass, precision: "f16" });
    const chose = `${pass}: chose ${variantId(r.variant)} (${r.source}), expected ${FAST[pass]}`;
    assert.equal(variantId(r.variant), FAST[pass], chose);
    assert.equal(r.source, "tuned", chose);
    assert.ok(r.candidates.length >= 8, `${pass}: only ${r.candidates.length} candidates timed`);
  }
  t1.save();
  const n = calls.length;
  const t2 = tuner("auto", path, fakeTime({}, calls));
  const r = await t2.choose({ shape: SHAPE, pass: "forward", precision: "f16" });
  const reused = `cache not reused: ${r.source}, ${calls.length - n} new trials`;
  assert.equal(calls.length, n, reused);
  assert.equal(r.source, "cache", reused);
  assert.equal(variantId(r.variant), FAST.forward, reused);
  assert.ok(r.candidates.length > 0, "the cached candidates' times are lost");
  // another precision or shape is another job
  const r2 = await t2.choose({ shape: { ...SHAPE, N: 128 }, pass: "forward", precision: "f16" });
  assert.equal(r2.source, "tuned", "a new shape must be tuned");
  const cache = JSON.parse(Deno.readTextFileSync(path));
  const layout = `cache layout: ${JSON.stringify(cache).slice(0, 200)}`;
  assert.equal(cache.entries.length, 1, layout);
  assert.ok(cache.entries[0].choices[jobKey({ shape: SHAPE, pass: "forward", precision: "f16" })], layout);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: the cache key covers adapter, vendor, architecture, driver, Deno and kernel hash", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/c.json`;
  const t = tuner("auto", path, fakeTime(FAST));
  await t.choose({ shape: SHAPE, pass: "forward", precision: "f32" });
  t.save();
  const changes: [Partial<AdapterReport>, string][] = [
    [{ name: "AMD Radeon" }, "k1"],
    [{ vendor: "amd" }, "k1"],
    [{ architecture: "ada" }, "k1"],
    [{ driver: "NVIDIA 560.1" }, "k1"],
    [{}, "k2"], // a kernel file changed
  ];
  for (const [over, k] of changes) {
    const calls: string[] = [];
    const r = await tuner("auto", path, fakeTime(FAST, calls), over, k).choose({
      shape: SHAPE,
      pass: "forward",
      precision: "f32",
    });
    const stale = `${JSON.stringify(over)} ${k}: the old entry was reused (${r.source})`;
    assert.equal(r.source, "tuned", stale);
    assert.ok(calls.length > 0, stale);
  }
  const a = adapter();
  const k1 = tuneKey(a, "abc", "2.9.6"), k2 = tuneKey(a, "abc", "2.9.7");
  assert.notEqual(k1.deno, k2.deno, "the Deno version is not in the key");
  assert.deepEqual(
    Object.keys(k1).sort(),
    ["adapter", "architecture", "deno", "driver", "kernels", "vendor"],
    `key fields: ${Object.keys(k1)}`,
  );
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: kernelsHash changes with any kernel file's text", () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/a.wgsl`, "fn a() {}");
  Deno.writeTextFileSync(`${dir}/b.wgsl`, "fn b() {}");
  const h1 = kernelsHash(dir, ["a.wgsl", "b.wgsl"]);
  assert.equal(kernelsHash(dir, ["b.wgsl", "a.wgsl"]), h1, "hash depends on the list order");
  Deno.writeTextFileSync(`${dir}/b.wgsl`, "fn b() { }");
  assert.notEqual(kernelsHash(dir, ["a.wgsl", "b.wgsl"]), h1, "hash ignores a change");
  assert.match(kernelsHash(), /^[0-9a-f]{64}$/, "the project's kernels do not hash");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: kernelsHash covers the files a kernel includes, nested ones too", () => {
  const dir = Deno.makeTempDirSync();
  Deno.mkdirSync(`${dir}/shared`);
  Deno.writeTextFileSync(`${dir}/a.wgsl`, '// #include "shared/x.wgsl"\nfn a() {}');
  Deno.writeTextFileSync(`${dir}/shared/x.wgsl`, '// #include "shared/y.wgsl"\nfn x() {}');
  Deno.writeTextFileSync(`${dir}/shared/y.wgsl`, "fn y() {}");
  const h1 = kernelsHash(dir, ["a.wgsl"]);
  Deno.writeTextFileSync(`${dir}/shared/y.wgsl`, "fn y() { }");
  const h2 = kernelsHash(dir, ["a.wgsl"]);
  Deno.removeSync(dir, { recursive: true });
  assert.notEqual(h2, h1, "hash ignores a change in a nested include");
});

Deno.test("tune: modes (off never times or reads; auto on a CPU adapter uses the cache or the default; force retunes)", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/c.json`;
  const cpu = { isCpu: true, name: "llvmpipe (LLVM 15.0.6, 256 bits)", vendor: "65541" };
  const job: TuneJob = { shape: SHAPE, pass: "weight_grad", precision: "f32" };
  const calls: string[] = [];
  const auto = await tuner("auto", path, fakeTime(FAST, calls), cpu).choose(job);
  const noCache = `CPU auto without cache: ${variantId(auto.variant)} ${auto.source}, ${calls.length} trials`;
  assert.equal(calls.length, 0, noCache);
  assert.equal(auto.source, "default", noCache);
  assert.equal(variantId(auto.variant), "register-8x16-wg64", noCache);
  const f = tuner("force", path, fakeTime(FAST, calls), cpu);
  const forced = await f.choose(job);
  f.save();
  assert.equal(forced.source, "tuned", "force did not tune");
  assert.equal(variantId(forced.variant), FAST.weight_grad, "force did not tune");
  const n = calls.length;
  const again = await tuner("auto", path, fakeTime({}, calls), cpu).choose(job);
  assert.equal(again.source, "cache", "CPU auto ignores the cache");
  assert.equal(variantId(again.variant), FAST.weight_grad, "CPU auto ignores the cache");
  assert.equal(calls.length, n, "CPU auto ignores the cache");
  const off = await tuner("off", path, fakeTime({}, calls), cpu).choose(job);
  assert.equal(off.source, "default", "off used the cache or timed");
  assert.equal(calls.length, n, "off used the cache or timed");
  // force retimes even with a cache entry
  const re = await tuner("force", path, fakeTime({ weight_grad: "register-8x8-wg64" }, calls), cpu).choose(
    job,
  );
  assert.equal(variantId(re.variant), "register-8x8-wg64", "force reused the cache");
  assert.ok(calls.length > n, "force reused the cache");
  // a failing candidate is recorded, not chosen
  const bad: TimeFn = (_j, v) => v.kind === "tiled" ? Promise.reject(new Error("no")) : Promise.resolve(v.TM);
  const r = await tuner("force", `${dir}/d.json`, bad).choose(job);
  assert.equal(r.variant.kind, "register", "a failing candidate was chosen");
  assert.ok(r.candidates.some((c) => c.ms === Infinity), "a failing candidate is not recorded");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: a network's conv jobs, per-layer choices in tiles, the record of every layer and pass", async () => {
  const graph = new Graph(makeNet(), INPUT_SHAPE);
  const jobs = convJobs(graph, 384, "f32");
  const labels = [...new Set(jobs.map((j) => j.label))];
  assert.equal(labels.length, 7, `conv layers: ${labels}`);
  const first = jobs.filter((j) => j.label === labels[0]).map((j) => j.job.pass);
  assert.deepEqual(first, ["forward"], `whitening conv passes: ${first}`);
  const c1 = jobs.find((j) => j.label === "2.conv1" && j.job.pass === "forward")!.job.shape;
  assert.deepEqual(
    c1,
    { N: 384, H: 31, W: 31, CI: 24, CO: 64, KH: 3, KW: 3, PAD: 1 },
    `2.conv1 shape ${JSON.stringify(c1)}`,
  );
  const dir = Deno.makeTempDirSync();
  const calls: string[] = [];
  const t = tuner("auto", `${dir}/c.json`, fakeTime(FAST, calls));
  const { tiles, record } = await tuneNetwork(t, tilesFor(adapter()), graph, 384, "f32");
  const distinct = new Set(jobs.map((j) => jobKey(j.job))).size;
  assert.ok(t.trials > 0, "no trials");
  assert.equal(Object.keys(tiles.choices!).length, jobs.length, "a layer's pass has no choice");
  assert.ok(tiles.choices!["2.conv1|forward"] !== undefined, "2.conv1 forward choice");
  assert.equal(variantId(tiles.choices!["2.conv1|forward"]), FAST.forward, "2.conv1 forward choice");
  const conv1 = `record ${JSON.stringify(record["2.conv1"])}`;
  assert.equal(record["2.conv1"].weight_grad.variant, FAST.weight_grad, conv1);
  assert.ok(record["2.conv1"].weight_grad.candidates.length >= 8, conv1);
  assert.ok(distinct < jobs.length, "expected layers sharing a shape");
  // off: no choices, default variants recorded
  const off = await tuneNetwork(
    tuner("off", `${dir}/c.json`, fakeTime({}), { isCpu: true }),
    DEFAULT_TILES,
    graph,
    384,
    "f32",
  );
  assert.deepEqual(Object.keys(off.tiles.choices ?? {}), [], "off changed the choices");
  assert.equal(off.record["2.conv1"].forward.variant, "register-8x8-wg64", "off changed the choices");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: a logged record pins every layer's variant (--variants LOG); a record that does not fit is named", async () => {
  const graph = new Graph(makeNet(), INPUT_SHAPE);
  const dir = Deno.makeTempDirSync();
  // A record as a GPU run writes it: tuned choices that differ from this (CPU) adapter's defaults.
  const t = tuner("auto", `${dir}/c.json`, fakeTime(FAST));
  const { record: logged } = await tuneNetwork(t, tilesFor(adapter()), graph, 384, "f32");
  Deno.removeSync(dir, { recursive: true });
  const cpu = tilesFor(adapter({ isCpu: true }));
  const { tiles, record } = variantsFromRecord(logged, cpu, graph, 384, "f32");
  for (const { label, job } of convJobs(graph, 384, "f32")) {
    // The variant this layer's pass runs (lib/nn/layers.ts hands the conv ops the layer's label).
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    const ran = variantId(resolveVariant(tiles, label, job.pass, s));
    assert.equal(ran, logged[label][job.pass].variant, `${label} ${job.pass}`);
    const r = record[label][job.pass];
    assert.equal(
      r.variant,
      logged[label][job.pass].variant,
      `${label} ${job.pass}: record ${JSON.stringify(r)}`,
    );
    assert.equal(r.source, "log", `${label} ${job.pass}: record ${JSON.stringify(r)}`);
  }
  const missing = structuredClone(logged);
  delete missing["3.conv2"].input_grad;
  assert.throws(
    () => variantsFromRecord(missing, cpu, graph, 384, "f32"),
    /no kernel variant for layer 3\.conv2, input_grad/,
  );
  const unknown = structuredClone(logged);
  unknown["2.conv1"].forward.variant = "register-7x7";
  assert.throws(
    () => variantsFromRecord(unknown, cpu, graph, 384, "f32"),
    /layer 2\.conv1, forward: unknown kernel variant "register-7x7"/,
  );
});

Deno.test("tune: cached ids that parse but cannot run, and malformed cache files, give a warning and the default", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/tune-cache.json`;
    const job: TuneJob = { shape: SHAPE, pass: "forward", precision: "f32" };
    const key = tuneKey(adapter({ isCpu: true }), "k1", "2.9.6");
    const fallback = variantId(fallbackOf(tilesFor(adapter({ isCpu: true })))(job));
    const cases: [string, unknown, RegExp][] = [
      [
        "zero sizes",
        "register-0x0-wg0",
        /register-0x0-wg0.*TM=0, TN=0, WG=0: sizes must be positive integers/,
      ],
      ["register block", "register-4096x8-wg64", /4096x8 register block is larger than/],
      ["over-large tile", "tiled-1024x1024x16-8x8", /invocations > \d+|workgroup memory/],
      ["zero BK", "tiled-64x64x0-4x4", /BK=0/],
      ["not an id", 7, /unknown kernel variant id "7"/],
    ];
    for (const [what, variant, why] of cases) {
      Deno.writeTextFileSync(
        path,
        JSON.stringify({
          version: 1,
          entries: [{ key, choices: { [jobKey(job)]: { variant, candidates: [] } } }],
        }),
      );
      const warnings: string[] = [];
      const t = new Tuner({
        ...tuner("auto", path, fakeTime({}), { isCpu: true }).o,
        warn: (l) => warnings.push(l),
      });
      const r = await t.choose(job);
      assert.equal(r.source, "default", `${what}: ${r.source} ${variantId(r.variant)}`);
      assert.equal(variantId(r.variant), fallback, `${what}: ${r.source} ${variantId(r.variant)}`);
      assert.equal(warnings.length, 1, `${what}: ${JSON.stringify(warnings)}`);
      assert.match(warnings[0], why, `${what}: ${warnings[0]}`);
      assert.match(warnings[0], /using the default$/, `${what}: ${warnings[0]}`);
    }
    // Malformed files: ignored with a warning, never a crash (seen: {"version":1,"entries":[null]}).
    const files: [string, RegExp][] = [
      ['{"version":1,"entries":[null]}', /1 malformed entry ignored/],
      ['{"version":1,"entries":[{"key":null,"choices":1}, 3]}', /2 malformed entries ignored/],
      ['{"version":2}', /not a version 1 cache/],
      ["{not json", /unreadable/],
    ];
    for (const [text, why] of files) {
      Deno.writeTextFileSync(path, text);
      const warnings: string[] = [];
      const t = new Tuner({ ...tuner("auto", path, fakeTime(FAST)).o, warn: (l) => warnings.push(l) });
      const r = await t.choose(job);
      assert.equal(r.source, "tuned", `${text}: ${r.source} ${JSON.stringify(warnings)}`);
      assert.match(warnings.join("\n"), why, `${text}: ${JSON.stringify(warnings)}`);
      t.save(); // the cache is rewritten valid
      assert.equal(JSON.parse(Deno.readTextFileSync(path)).entries.length, 1, `${text}: not rewritten`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("tune: --variants ids that cannot run on a layer here are named with the layer", async () => {
  const graph = new Graph(makeNet(), INPUT_SHAPE);
  const dir = Deno.makeTempDirSync();
  const t = tuner("auto", `${dir}/c.json`, fakeTime(FAST));
  const { record: logged } = await tuneNetwork(t, tilesFor(adapter()), graph, 384, "f32");
  Deno.removeSync(dir, { recursive: true });
  const cpu = tilesFor(adapter({ isCpu: true }));
  variantsFromRecord(logged, cpu, graph, 384, "f32", LIMITS); // the tuned record fits these limits
  const cases: [string, Record<string, number>, RegExp][] = [
    [
      "register-0x0-wg0",
      LIMITS,
      /layer 3\.conv2, forward: kernel variant register-0x0-wg0 cannot run here: .*positive/,
    ],
    ["tiled-128x128x32-8x8-db2", LIMITS, /layer 3\.conv2, forward: .* 66560 B of workgroup memory > 32768/],
  ];
  for (const [id, limits, why] of cases) {
    const bad = structuredClone(logged);
    bad["3.conv2"].forward.variant = id;
    assert.throws(() => variantsFromRecord(bad, cpu, graph, 384, "f32", limits), why);
  }
});

Deno.test("tune: the cache path without permission to read the environment is the project's (no crash)", () => {
  const denied = () => {
    throw new Deno.errors.NotCapable('Requires env access to "AIRBENCH_DATA"');
  };
  const path = defaultCachePath(denied);
  assert.match(path, /[/\\]data[/\\]tune-cache\.json$/);
  assert.equal(defaultCachePath(() => "/x/y"), "/x/y/tune-cache.json");
});
