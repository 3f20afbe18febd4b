// The autotuner without a GPU clock: an injected timing function decides, and the tests check the choice, the
// cache key, cache reuse and invalidation, the modes, and the per-layer choices handed to the conv ops.

import {
  type ConvShape,
  DEFAULT_TILES,
  type KernelVariant,
  resolveVariant,
  tilesFor,
  transposedShape,
  variantId,
} from "../lib/nn/conv.ts";
import type { AdapterReport } from "../lib/gpu/gpu.ts";
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
    if (variantId(r.variant) !== FAST[pass] || r.source !== "tuned") {
      throw new Error(`${pass}: chose ${variantId(r.variant)} (${r.source}), expected ${FAST[pass]}`);
    }
    if (r.candidates.length < 8) throw new Error(`${pass}: only ${r.candidates.length} candidates timed`);
  }
  t1.save();
  const n = calls.length;
  const t2 = tuner("auto", path, fakeTime({}, calls));
  const r = await t2.choose({ shape: SHAPE, pass: "forward", precision: "f16" });
  if (calls.length !== n || r.source !== "cache" || variantId(r.variant) !== FAST.forward) {
    throw new Error(`cache not reused: ${r.source}, ${calls.length - n} new trials`);
  }
  if (r.candidates.length === 0) throw new Error("the cached candidates' times are lost");
  // another precision or shape is another job
  const r2 = await t2.choose({ shape: { ...SHAPE, N: 128 }, pass: "forward", precision: "f16" });
  if (r2.source !== "tuned") throw new Error("a new shape must be tuned");
  const cache = JSON.parse(Deno.readTextFileSync(path));
  if (
    cache.entries.length !== 1 ||
    !cache.entries[0].choices[jobKey({ shape: SHAPE, pass: "forward", precision: "f16" })]
  ) {
    throw new Error(`cache layout: ${JSON.stringify(cache).slice(0, 200)}`);
  }
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
    if (r.source !== "tuned" || calls.length === 0) {
      throw new Error(`${JSON.stringify(over)} ${k}: the old entry was reused (${r.source})`);
    }
  }
  const a = adapter();
  const k1 = tuneKey(a, "abc", "2.9.6"), k2 = tuneKey(a, "abc", "2.9.7");
  if (k1.deno === k2.deno) throw new Error("the Deno version is not in the key");
  if (
    JSON.stringify(Object.keys(k1).sort()) !==
      JSON.stringify(["adapter", "architecture", "deno", "driver", "kernels", "vendor"])
  ) {
    throw new Error(`key fields: ${Object.keys(k1)}`);
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: kernelsHash changes with any kernel file's text", () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/a.wgsl`, "fn a() {}");
  Deno.writeTextFileSync(`${dir}/b.wgsl`, "fn b() {}");
  const h1 = kernelsHash(dir, ["a.wgsl", "b.wgsl"]);
  if (h1 !== kernelsHash(dir, ["b.wgsl", "a.wgsl"])) throw new Error("hash depends on the list order");
  Deno.writeTextFileSync(`${dir}/b.wgsl`, "fn b() { }");
  if (h1 === kernelsHash(dir, ["a.wgsl", "b.wgsl"])) throw new Error("hash ignores a change");
  if (!/^[0-9a-f]{64}$/.test(kernelsHash())) throw new Error("the project's kernels do not hash");
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
  if (h1 === h2) throw new Error("hash ignores a change in a nested include");
});

Deno.test("tune: modes (off never times or reads; auto on a CPU adapter uses the cache or the default; force retunes)", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/c.json`;
  const cpu = { isCpu: true, name: "llvmpipe (LLVM 15.0.6, 256 bits)", vendor: "65541" };
  const job: TuneJob = { shape: SHAPE, pass: "weight_grad", precision: "f32" };
  const calls: string[] = [];
  const auto = await tuner("auto", path, fakeTime(FAST, calls), cpu).choose(job);
  if (calls.length || auto.source !== "default" || variantId(auto.variant) !== "register-8x16-wg64") {
    throw new Error(
      `CPU auto without cache: ${variantId(auto.variant)} ${auto.source}, ${calls.length} trials`,
    );
  }
  const f = tuner("force", path, fakeTime(FAST, calls), cpu);
  const forced = await f.choose(job);
  f.save();
  if (forced.source !== "tuned" || variantId(forced.variant) !== FAST.weight_grad) {
    throw new Error("force did not tune");
  }
  const n = calls.length;
  const again = await tuner("auto", path, fakeTime({}, calls), cpu).choose(job);
  if (again.source !== "cache" || variantId(again.variant) !== FAST.weight_grad || calls.length !== n) {
    throw new Error("CPU auto ignores the cache");
  }
  const off = await tuner("off", path, fakeTime({}, calls), cpu).choose(job);
  if (off.source !== "default" || calls.length !== n) throw new Error("off used the cache or timed");
  // force retimes even with a cache entry
  const re = await tuner("force", path, fakeTime({ weight_grad: "register-8x8-wg64" }, calls), cpu).choose(
    job,
  );
  if (variantId(re.variant) !== "register-8x8-wg64" || calls.length === n) {
    throw new Error("force reused the cache");
  }
  // a failing candidate is recorded, not chosen
  const bad: TimeFn = (_j, v) => v.kind === "tiled" ? Promise.reject(new Error("no")) : Promise.resolve(v.TM);
  const r = await tuner("force", `${dir}/d.json`, bad).choose(job);
  if (r.variant.kind !== "register" || !r.candidates.some((c) => c.ms === Infinity)) {
    throw new Error("failure handling");
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("tune: a network's conv jobs, per-layer choices in tiles, the record of every layer and pass", async () => {
  const graph = new Graph(makeNet(), INPUT_SHAPE);
  const jobs = convJobs(graph, 384, "f32");
  const labels = [...new Set(jobs.map((j) => j.label))];
  if (labels.length !== 7) throw new Error(`conv layers: ${labels}`);
  const first = jobs.filter((j) => j.label === labels[0]).map((j) => j.job.pass);
  if (JSON.stringify(first) !== JSON.stringify(["forward"])) {
    throw new Error(`whitening conv passes: ${first}`);
  }
  const c1 = jobs.find((j) => j.label === "2.conv1" && j.job.pass === "forward")!.job.shape;
  if (JSON.stringify(c1) !== JSON.stringify({ N: 384, H: 31, W: 31, CI: 24, CO: 64, KH: 3, KW: 3, PAD: 1 })) {
    throw new Error(`2.conv1 shape ${JSON.stringify(c1)}`);
  }
  const dir = Deno.makeTempDirSync();
  const calls: string[] = [];
  const t = tuner("auto", `${dir}/c.json`, fakeTime(FAST, calls));
  const { tiles, record } = await tuneNetwork(t, tilesFor(adapter()), graph, 384, "f32");
  const distinct = new Set(jobs.map((j) => jobKey(j.job))).size;
  if (t.trials === 0 || new Set(calls.map((c) => c)).size > calls.length) throw new Error("no trials");
  if (Object.keys(tiles.choices!).length !== jobs.length) throw new Error("a layer's pass has no choice");
  if (
    tiles.choices!["2.conv1|forward"] === undefined ||
    variantId(tiles.choices!["2.conv1|forward"]) !== FAST.forward
  ) {
    throw new Error("2.conv1 forward choice");
  }
  if (
    record["2.conv1"].weight_grad.variant !== FAST.weight_grad ||
    record["2.conv1"].weight_grad.candidates.length < 8
  ) {
    throw new Error(`record ${JSON.stringify(record["2.conv1"])}`);
  }
  if (distinct >= jobs.length) throw new Error("expected layers sharing a shape");
  // off: no choices, default variants recorded
  const off = await tuneNetwork(
    tuner("off", `${dir}/c.json`, fakeTime({}), { isCpu: true }),
    DEFAULT_TILES,
    graph,
    384,
    "f32",
  );
  if (
    Object.keys(off.tiles.choices ?? {}).length ||
    off.record["2.conv1"].forward.variant !== "register-8x8-wg64"
  ) {
    throw new Error("off changed the choices");
  }
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
    // The variant the op of this layer and pass runs (op names as lib/nn/layers.ts gives them).
    const op = { forward: label, input_grad: `${label}.igrad`, weight_grad: `${label}.wgrad` }[job.pass];
    const s = job.pass === "input_grad" ? transposedShape(job.shape) : job.shape;
    const ran = variantId(resolveVariant(tiles, op, job.pass, s));
    if (ran !== logged[label][job.pass].variant) {
      throw new Error(`${label} ${job.pass} runs ${ran}, the log says ${logged[label][job.pass].variant}`);
    }
    const r = record[label][job.pass];
    if (r.variant !== logged[label][job.pass].variant || r.source !== "log") {
      throw new Error(`${label} ${job.pass}: record ${JSON.stringify(r)}`);
    }
  }
  const missing = structuredClone(logged);
  delete missing["3.conv2"].input_grad;
  let msg = "";
  try {
    variantsFromRecord(missing, cpu, graph, 384, "f32");
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!/no kernel variant for layer 3\.conv2, input_grad/.test(msg)) throw new Error(`missing layer: ${msg}`);
  const unknown = structuredClone(logged);
  unknown["2.conv1"].forward.variant = "register-7x7";
  msg = "";
  try {
    variantsFromRecord(unknown, cpu, graph, 384, "f32");
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!/layer 2\.conv1, forward: unknown kernel variant "register-7x7"/.test(msg)) throw new Error(msg);
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
      if (r.source !== "default" || variantId(r.variant) !== fallback) {
        throw new Error(`${what}: ${r.source} ${variantId(r.variant)}`);
      }
      if (warnings.length !== 1 || !why.test(warnings[0]) || !/using the default$/.test(warnings[0])) {
        throw new Error(`${what}: ${JSON.stringify(warnings)}`);
      }
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
      if (r.source !== "tuned" || !why.test(warnings.join("\n"))) {
        throw new Error(`${text}: ${r.source} ${JSON.stringify(warnings)}`);
      }
      t.save(); // the cache is rewritten valid
      if (JSON.parse(Deno.readTextFileSync(path)).entries.length !== 1) {
        throw new Error(`${text}: not rewritten`);
      }
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
    let msg = "";
    try {
      variantsFromRecord(bad, cpu, graph, 384, "f32", limits);
    } catch (e) {
      msg = (e as Error).message;
    }
    if (!why.test(msg)) throw new Error(`${id}: ${msg}`);
  }
});

Deno.test("tune: the cache path without permission to read the environment is the project's (no crash)", () => {
  const denied = () => {
    throw new Deno.errors.NotCapable('Requires env access to "AIRBENCH_DATA"');
  };
  const path = defaultCachePath(denied);
  if (!/[/\\]data[/\\]tune-cache\.json$/.test(path)) throw new Error(path);
  if (defaultCachePath(() => "/x/y") !== "/x/y/tune-cache.json") {
    throw new Error(defaultCachePath(() => "/x/y"));
  }
});
