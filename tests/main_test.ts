// End to end, as a user runs it: main.ts on a small generated dataset in the CIFAR-10 binary layout, twice
// with the same seed. The run must learn, its log must hold the documented keys, the same seed must reproduce
// the accuracies and weights bit for bit, and --save-weights must write PyTorch-named safetensors.

import assert from "node:assert/strict";
import { join } from "node:path";
import { INPUT_SHAPE, ParamLayout } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import { stateDigest } from "../lib/io/runlog.ts";
import { ROOT } from "../lib/root.ts";
import { getF32, loadSafetensors } from "../lib/io/safetensors.ts";
import { hyp, makeNet } from "../main.ts";
import { makeBatch, runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";

function runMain(args: string[]) {
  return runDeno(["run", "-A", "main.ts", ...args]);
}

// deno-lint-ignore no-explicit-any
type Log = any;

/** main.ts twice on the same flags (the first run also saves its weights); the two logs, after checking stdout. */
async function trainTwice(dir: string, common: string[]): Promise<[Log, Log]> {
  const logs = [];
  for (const i of [0, 1]) {
    const logDir = join(dir, `logs${i}`);
    const args = [...common, "--log-dir", logDir];
    if (i === 0) args.push("--save-weights", join(dir, "w.safetensors"));
    const r = await runMain(args);
    assert.equal(r.code, 0, `main.ts failed:\n${r.stderr}\n${r.stdout}`);
    assert.match(r.stdout, /\| run\s+\| epoch \| train_loss \| train_acc \| val_acc \| tta_val_acc \|/);
    assert.match(r.stdout, /Mean: \d\.\d{4} {2}Std: \d\.\d{4}/);
    const files = [...Deno.readDirSync(logDir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
    assert.equal(files.length, 1);
    assert.ok(r.stdout.includes(files[0]), "the log path is printed at the end");
    logs.push(JSON.parse(await Deno.readTextFile(join(logDir, files[0]))));
  }
  return [logs[0], logs[1]];
}

/** The log's documented keys, the code and flags that ran, the fingerprint of every library and kernel file. */
async function assertLogHeader(a: Log, common: string[]) {
  for (
    const key of ["code", "config", "adapter", "precision", "runs", "mean", "std", "argv", "fingerprint"]
  ) {
    assert.ok(key in a, key);
  }
  assert.equal(a.code, await Deno.readTextFile(join(ROOT, "main.ts")));
  assert.equal(a.experiment, "main.ts");
  assert.deepEqual(a.argv.slice(0, 4), common.slice(0, 4));
  // Every library and kernel file, by SHA-256 (what ran is in the log, not only main.ts).
  const fp = a.fingerprint;
  for (
    const f of [
      "lib/nn/module.ts",
      "lib/nn/layers.ts",
      "lib/nn/model.ts",
      "kernels/conv.wgsl",
      "kernels/shared/step.wgsl",
    ]
  ) {
    assert.match(fp.files[f], /^[0-9a-f]{64}$/, f);
  }
  assert.ok(Object.keys(fp.files).every((f: string) => /^(lib|kernels)\//.test(f)));
  assert.ok(fp.commit === null || /^[0-9a-f]{40}$/.test(fp.commit));
  assert.equal(a.network.at(-1).layer, "7+8", "the head (Linear + Mul, fused) is the last layer");
  assert.deepEqual(a.config.net.widths, [8, 16, 16]);
  assert.equal(a.config.opt.lr, 6);
}

/** The one run learned, its epoch rows hold the documented keys, and the second log repeats it bit for bit. */
function assertLearnedAndReproduced(a: Log, b: Log) {
  assert.equal(a.runs.length, 1);
  const run = a.runs[0];
  assert.equal(run.seed, 7);
  assert.equal(run.epochs.length, 3);
  for (const row of run.epochs) {
    for (const k of ["epoch", "train_loss", "train_acc", "val_acc", "total_time_seconds"]) {
      assert.ok(k in row, k);
    }
  }
  // Chance is 0.1; 60 steps of this tiny net reach about 0.45.
  assert.ok(
    run.tta_val_acc > 0.3,
    `the tiny net should learn the generated classes (tta ${run.tta_val_acc})`,
  );
  assert.ok(run.total_time_seconds > 0);
  assert.equal(a.mean, run.tta_val_acc);
  // Same code, config and seed on the same adapter: the same accuracies and losses, bit for bit.
  assert.deepEqual(
    b.runs[0].epochs.map((r: Record<string, number>) => [r.train_loss, r.train_acc, r.val_acc]),
    run.epochs.map((r: Record<string, number>) => [r.train_loss, r.train_acc, r.val_acc]),
  );
  assert.equal(b.runs[0].tta_val_acc, run.tta_val_acc);
}

/** The saved weights: PyTorch's names and shapes, and the digest both logs give (state-dict order). */
function assertSavedWeights(path: string, a: Log, b: Log) {
  const w = loadSafetensors(path).tensors;
  assert.deepEqual(w["0.weight"].shape, [24, 3, 2, 2]);
  assert.deepEqual(w["2.conv1.weight"].shape, [8, 24, 3, 3]);
  assert.deepEqual(w["4.conv2.bias"].shape, [16]);
  assert.deepEqual(w["7.weight"].shape, [10, 16]);
  const net = makeNet({ ...hyp.defaults, net: { ...hyp.defaults.net, widths: [8, 16, 16] } });
  const names = new ParamLayout(new Graph(net, INPUT_SHAPE)).entries.map((e) => e.name);
  assert.equal(
    stateDigest(Object.fromEntries(names.map((n) => [n, { data: getF32(w, n) }]))),
    a.runs[0].weights_sha256,
  );
  assert.equal(b.runs[0].weights_sha256, a.runs[0].weights_sha256);
}

Deno.test("main.ts trains a tiny net end to end, logs it, and reproduces it bit for bit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-e2e-" });
  try {
    const data = join(dir, "data");
    await writeDataset(data, 200, testRng(1234));
    const common = [
      ...["--data", data, "--verify", "false", "--runs", "1", "--widths", "8,16,16", "--epochs", "3"],
      ...["--batch-size", "50", "--lr", "6", "--tta", "2", "--seed", "7", "--quiet"],
    ];
    const [a, b] = await trainTwice(dir, common);
    await assertLogHeader(a, common);
    assertLearnedAndReproduced(a, b);
    assertSavedWeights(join(dir, "w.safetensors"), a, b);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--test-n: the first N test images, said above the table, in the Mean line and the log; feedback before the first chunk", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-testn-" });
  try {
    const rand = testRng(4321);
    for (let b = 1; b <= 5; b++) await Deno.writeFile(join(dir, `data_batch_${b}.bin`), makeBatch(40, rand));
    await Deno.writeFile(join(dir, "test_batch.bin"), makeBatch(200, rand));
    const logDir = join(dir, "logs");
    const r = await runMain([
      ...["--data", dir, "--verify", "false", "--runs", "1", "--widths", "8,16,16", "--epochs", "1"],
      ...["--batch-size", "50", "--tta", "1", "--test-n", "120", "--log-dir", logDir],
    ]);
    assert.equal(r.code, 0, `main.ts failed:\n${r.stderr}\n${r.stdout}`);
    assert.match(r.stdout, /^accuracies on test 120 of 200 images \(--test-n\): a subset/m);
    assert.match(r.stdout, /Mean: \d\.\d{4} {2}Std: \d\.\d{4} \(test 120 of 200\)/);
    // What happens before the first chunk returns: the compile, then the estimate from the first step.
    assert.match(r.stderr, /run 0: compiling the kernels/);
    assert.match(r.stderr, /measured [\d.]+ img\/s: about/);
    const [file] = [...Deno.readDirSync(logDir)].map((e) => e.name);
    const log = JSON.parse(await Deno.readTextFile(join(logDir, file)));
    assert.equal(log.config.testN, 120);
    assert.equal(log.config.testOf, 200);
    // An accuracy over 120 images is a multiple of 1/120.
    for (const acc of [log.runs[0].epochs[0].val_acc, log.runs[0].tta_val_acc]) {
      assert.ok(Math.abs(acc * 120 - Math.round(acc * 120)) < 1e-9, `${acc} is not k/120`);
    }
    const dirty = log.fingerprint.dirty_files;
    assert.ok(dirty === null || (Array.isArray(dirty) && dirty.every((f: string) => /^\S+ /.test(f))));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts rejects a bad flag with one line naming the accepted values", async () => {
  const r = await runMain(["--tta", "5"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, /--tta "5": expected one of 0, 1, 2/);
  const r2 = await runMain(["--widths", "64,250"]);
  assert.equal(r2.code, 2);
  assert.match(
    r2.stderr,
    /--widths "64,250": expected comma-separated integers, each a multiple of 4 and >= 4/,
  );
  const r3 = await runMain(["--widths", "8,8,8,8,8"]); // 31 -> 15 -> 7 -> 3 -> 1 -> nothing left to pool
  assert.equal(r3.code, 2);
  assert.equal(r3.stderr.trim().split("\n").length, 1);
  assert.match(
    r3.stderr,
    /the network of main\.ts \(--widths 8,8,8,8,8\): layer 6\.pool\+activ .*too many blocks/,
  );
});

Deno.test("a diverging run stops at the step where the loss became NaN and keeps its log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-nan-" });
  try {
    const rand = testRng(99);
    for (let b = 1; b <= 5; b++) await Deno.writeFile(join(dir, `data_batch_${b}.bin`), makeBatch(40, rand));
    await Deno.writeFile(join(dir, "test_batch.bin"), makeBatch(40, rand));
    const logDir = join(dir, "logs");
    const r = await runMain([
      ...["--data", dir, "--verify", "false", "--widths", "4,4,4", "--batch-size", "20", "--runs", "1"],
      ...["--epochs", "2", "--lr", "1e30", "--tta", "0", "--log-dir", logDir, "--quiet"],
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /loss is (NaN|Infinity|-Infinity) at step \d+/);
    const files = [...Deno.readDirSync(logDir)].filter((e) => e.name.endsWith(".json"));
    assert.equal(files.length, 1, "the log written so far is kept");
    const log = JSON.parse(await Deno.readTextFile(join(logDir, files[0].name)));
    assert.equal(log.status, "failed");
    assert.match(log.error, /at step \d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
