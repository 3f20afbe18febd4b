// `deno task reproduce LOG`: a logged run reruns to the same accuracies bit for bit (exit 0); a log whose
// accuracy was changed does not (exit 1); a log from other library code warns, naming the file.

import assert from "node:assert/strict";
import { join } from "node:path";
import { compareRuns, fingerprintDiff, replayArgs } from "../lib/reproduce.ts";
import { ROOT } from "../lib/runlog.ts";
import { runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";

const deno = runDeno;

Deno.test("reproduce: same bits from the log; a tampered accuracy fails; other code is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-reproduce-test-" });
  try {
    await writeDataset(join(dir, "data"), 60, testRng(77));
    const logDir = join(dir, "logs");
    const train = await deno([
      ...["run", "-A", "main.ts", "--data", join(dir, "data"), "--verify", "false", "--widths", "8,8,8"],
      ...["--epochs", "2", "--batch-size", "50", "--lr", "4", "--tta", "1", "--seed", "5", "--runs", "1"],
      ...["--log-dir", logDir, "--quiet"],
    ]);
    assert.equal(train.code, 0, train.stderr);
    const logPath = join(logDir, [...Deno.readDirSync(logDir)][0].name);

    const same = await deno(["run", "-A", "lib/reproduce.ts", logPath]);
    assert.equal(same.code, 0, same.stderr + same.stdout);
    assert.match(same.stdout, /run 0 \(seed 5\): same bits/);
    assert.doesNotMatch(same.stderr, /warning:/);

    const log = JSON.parse(await Deno.readTextFile(logPath));
    assert.match(log.runs[0].weights_sha256, /^[0-9a-f]{64}$/);
    log.runs[0].tta_val_acc += 0.01;
    log.runs[0].weights_sha256 = "0".repeat(64);
    log.fingerprint.files["lib/nn.ts"] = "0".repeat(64);
    const tampered = join(dir, "tampered.json");
    await Deno.writeTextFile(tampered, JSON.stringify(log));
    const bad = await deno(["run", "-A", "lib/reproduce.ts", tampered]);
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
    assert.match(
      bad.stdout,
      /run 0 \(seed 5\): DIFFERS: tta_val_acc .*; weights_sha256 [0-9a-f]{12}\.\.\. != 0{12}/,
    );
    assert.match(bad.stderr, /warning: lib\/nn\.ts differs from the logged run's/);
    // Nothing is left beside main.ts.
    assert.deepEqual([...Deno.readDirSync(ROOT)].filter((e) => e.name.startsWith(".reproduce-")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reproduce helpers: argv replay, fingerprint differences, bitwise comparison", () => {
  assert.deepEqual(
    replayArgs(
      ["--runs", "5", "--seed=3", "--widths", "8,8", "--save-weights", "w.st", "--log-dir=x"],
      2,
      3,
      "L",
    ),
    ["--widths", "8,8", "--runs", "2", "--seed", "3", "--log-dir", "L"],
  );
  // A log with conv_variants: the rerun runs them (an earlier --variants is replaced by the log's own path).
  assert.deepEqual(
    replayArgs(["--widths", "8,8", "--variants", "old.json", "--tune=force"], 1, 3, "L", "run.json"),
    [
      "--widths",
      "8,8",
      "--tune=force",
      "--runs",
      "1",
      "--seed",
      "3",
      "--log-dir",
      "L",
      "--variants",
      "run.json",
    ],
  );
  const fp = (files: Record<string, string>) => ({ commit: null, dirty: null, files });
  assert.deepEqual(fingerprintDiff(fp({ a: "1", b: "2", c: "3" }), fp({ a: "1", b: "9", d: "4" })), [
    "b",
    "c (in the log, missing now)",
    "d (new)",
  ]);
  const run = (val: number, tta: number) => ({
    run: 0,
    seed: 1,
    epochs: [{ val_acc: val }],
    tta_val_acc: tta,
  });
  assert.ok(compareRuns([run(0.5, 0.6)], [run(0.5, 0.6)]).ok);
  assert.ok(!compareRuns([run(0.5, 0.6)], [run(0.5000001, 0.6)]).ok);
  assert.ok(!compareRuns([run(0.5, 0.6)], []).ok);
  const withWeights = (digest: string | undefined) => ({ ...run(0.5, 0.6), weights_sha256: digest });
  assert.ok(compareRuns([withWeights("ab")], [withWeights("ab")]).ok);
  assert.match(compareRuns([withWeights("ab")], [withWeights("cd")]).lines[0], /DIFFERS: weights_sha256 cd/);
  assert.ok(
    compareRuns([run(0.5, 0.6)], [withWeights("cd")]).ok,
    "a log without the digest compares accuracies",
  );
});
