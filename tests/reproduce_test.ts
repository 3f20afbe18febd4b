// `deno task reproduce LOG`: a logged run reruns to the same accuracies bit for bit (exit 0); a log whose
// accuracy was changed does not (exit 1); a log from other library code warns, naming the file. A log is
// untrusted input: code that differs from the tree's experiment file is refused without --trust (nothing
// runs), trusted code cannot write outside the rerun's log folder, an `experiment` outside the project or a
// log without fingerprint or runs is one line and exit 2, and SIGINT leaves no temporary file and no child.

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import {
  checkLog,
  codeChanges,
  compareRuns,
  experimentFile,
  fingerprintDiff,
  missingImports,
  printable,
  replayArgs,
} from "../lib/cli/reproduce.ts";
import { ROOT } from "../lib/root.ts";
import { runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";

const deno = runDeno;
const reproduce = (...args: string[]) => deno(["run", "-A", "lib/cli/reproduce.ts", ...args]);
/** Temporary files reproduce may leave beside an experiment file (none, whatever happens). */
const leftovers = () =>
  [ROOT, join(ROOT, "experiments")].flatMap((d) =>
    [...Deno.readDirSync(d)].filter((e) => e.name.startsWith(".reproduce-")).map((e) => e.name)
  );

/**
 * The permissions of `deno task train-narrow` (deno.json), with the data and log folder in `dir` instead of
 * the project's data/ and logs/.
 */
async function narrowFlags(dir: string): Promise<string[]> {
  const task: string = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks["train-narrow"];
  const flags = task.split(" ").filter((a) => a.startsWith("-"));
  assert.ok(!flags.some((f) => /^(-A|--allow-all|--allow-net|--allow-ffi|--allow-sys)/.test(f)), task);
  return flags.map((f) =>
    f === "--allow-read=."
      ? `--allow-read=.,${dir}`
      : f === "--allow-write=logs,data"
      ? `--allow-write=${dir}`
      : f
  );
}

/** A tiny logged run of main.ts (with train-narrow's permissions) on synthetic data in `dir`; the log's path. */
async function trainTiny(dir: string): Promise<string> {
  await writeDataset(join(dir, "data"), 60, testRng(77));
  const logDir = join(dir, "logs");
  const flags = await narrowFlags(dir);
  assert.ok(
    flags.includes(`--allow-write=${dir}`) && flags.includes(`--allow-read=.,${dir}`),
    flags.join(" "),
  );
  const train = await deno([
    ...["run", ...flags, "main.ts", "--data", join(dir, "data"), "--verify", "false", "--widths", "8,8,8"],
    ...["--epochs", "2", "--batch-size", "50", "--lr", "4", "--tta", "1", "--seed", "5", "--runs", "1"],
    ...["--log-dir", logDir, "--quiet"],
  ]);
  assert.equal(train.code, 0, train.stderr);
  return join(logDir, [...Deno.readDirSync(logDir)][0].name);
}

async function writeLog(dir: string, name: string, log: unknown): Promise<string> {
  const path = join(dir, name);
  await Deno.writeTextFile(path, JSON.stringify(log));
  return path;
}

Deno.test("reproduce: same bits from the log; a tampered accuracy fails; other code is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-reproduce-test-" });
  try {
    const logPath = await trainTiny(dir);
    const same = await reproduce(logPath);
    assert.equal(same.code, 0, same.stderr + same.stdout);
    assert.match(same.stdout, /run 0 \(seed 5\): same bits/);
    assert.doesNotMatch(same.stderr, /warning:|differs from main\.ts/);

    const log = JSON.parse(await Deno.readTextFile(logPath));
    assert.match(log.runs[0].weights_sha256, /^[0-9a-f]{64}$/);
    log.runs[0].tta_val_acc += 0.01;
    log.runs[0].weights_sha256 = "0".repeat(64);
    log.fingerprint.files["lib/nn/module.ts"] = "0".repeat(64);
    const bad = await reproduce(await writeLog(dir, "tampered.json", log));
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
    assert.match(
      bad.stdout,
      /run 0 \(seed 5\): DIFFERS: tta_val_acc .*; weights_sha256 [0-9a-f]{12}\.\.\. != 0{12}/,
    );
    assert.match(bad.stderr, /warning: lib\/nn\/module\.ts differs from the logged run's/);
    assert.deepEqual(leftovers(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reproduce: a log whose code imports a file this tree lacks says so and names the commit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-reproduce-test-" });
  try {
    const code = (await Deno.readTextFile(join(ROOT, "main.ts")))
      .replace('"./lib/cli/experiment.ts"', '"./lib/experiment.ts"'); // where it was before lib/ had folders
    assert.deepEqual(missingImports(code, ROOT), ["./lib/experiment.ts"]);
    assert.deepEqual(missingImports(await Deno.readTextFile(join(ROOT, "main.ts")), ROOT), []);
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const log = await writeLog(dir, "old.json", {
      experiment: "main.ts",
      argv: ["--runs", "1"],
      code,
      fingerprint: { commit, dirty: false, files: {} },
      runs: [{ run: 0, seed: 0, epochs: [], tta_val_acc: 0.5 }],
    });
    const r = await reproduce(log, "--trust");
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.match(r.stderr, /its code imports \.\/lib\/experiment\.ts, which this tree lacks/);
    assert.match(r.stderr, new RegExp(`git worktree add \\.\\./airbench-01234567 ${commit}`));
    assert.doesNotMatch(r.stderr, /reproducing/);
    assert.deepEqual(leftovers(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reproduce: a log is untrusted input (changed code, writes outside, paths, keys)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-reproduce-test-" });
  try {
    const log = JSON.parse(await Deno.readTextFile(await trainTiny(dir)));
    const outside = join(dir, "written-by-the-log.txt");
    const evil = await writeLog(dir, "evil.json", {
      ...log,
      code: `Deno.writeTextFileSync(${JSON.stringify(outside)}, "x");\n${log.code}`,
    });
    // Code other than main.ts's: the change is shown, nothing runs without --trust.
    const refused = await reproduce(evil);
    assert.equal(refused.code, 2, refused.stderr + refused.stdout);
    assert.match(refused.stderr, /differs from main\.ts in this tree from line 1: 0 line\(s\) .* by 1 line/);
    assert.match(refused.stderr, /^\+ Deno\.writeTextFileSync\(/m);
    assert.match(refused.stderr, /error: .*evil\.json: its code is not main\.ts as in this tree; .* --trust/);
    assert.doesNotMatch(refused.stderr, /reproducing/);
    // Trusted, it runs, in a child that may write its log folder only.
    const trusted = await reproduce(evil, "--trust");
    assert.equal(trusted.code, 1, trusted.stderr + trusted.stdout);
    assert.match(trusted.stderr, /NotCapable: Requires write access to ".*written-by-the-log\.txt"/);
    assert.match(trusted.stdout, /NOT reproduced: the rerun failed before it logged a run/);
    assert.ok(!await Deno.stat(outside).then(() => true, () => false), "the log's code wrote outside");

    // An experiment outside the project, a log with no fingerprint or no runs: one line, exit 2, nothing run.
    const evilDir = join(dir, "evil");
    const bad: [Record<string, unknown>, RegExp][] = [
      [
        { experiment: relative(ROOT, join(evilDir, "x.ts")) },
        /"experiment" "(\.\.\/)+.*" has an empty, "\." or "\.\." part/,
      ],
      [{ experiment: join(evilDir, "x.ts") }, /"experiment" ".*" is not a plain relative path/],
      [{ fingerprint: null }, /"fingerprint" is null: the log does not say which library code ran/],
      [{ runs: [] }, /"runs" is \[\]: the logged invocation \(status "done"\) finished no run to compare/],
    ];
    for (const [change, message] of bad) {
      const r = await reproduce(await writeLog(dir, "bad.json", { ...log, ...change }), "--trust");
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.ok(!await Deno.stat(evilDir).then(() => true, () => false));
    assert.deepEqual(leftovers(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The pids of the running processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(e.name));
    } catch { /* ended meanwhile */ }
  }
  return out;
}

Deno.test({
  name: "reproduce: SIGINT ends the rerun and leaves no temporary file and no child process",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "airbench-reproduce-test-" });
    try {
      const log = JSON.parse(await Deno.readTextFile(await trainTiny(dir)));
      log.code += "\n// a reviewed change\n";
      log.argv = log.argv.map((a: string) => (a === "2" ? "200" : a)); // --epochs 200: still running when stopped
      const tmp = join(dir, "tmp");
      await Deno.mkdir(tmp);
      const proc = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "lib/cli/reproduce.ts", await writeLog(dir, "changed.json", log), "--trust"],
        cwd: ROOT,
        env: { TMPDIR: tmp },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let ended = false;
      const done = proc.output().finally(() => ended = true);
      let rerun: number[] = [];
      while (!ended && rerun.length === 0) {
        rerun = childrenOf(proc.pid).filter((p) => {
          try {
            return Deno.readTextFileSync(`/proc/${p}/cmdline`).includes(".reproduce-");
          } catch {
            return false;
          }
        });
        await new Promise((r) => setTimeout(r, 50)); // polling for the child; no timing is asserted
      }
      assert.equal(rerun.length, 1, "the rerun's child process was not seen");
      assert.equal(leftovers().length, 1, "the trusted code runs from a temporary file");
      proc.kill("SIGINT");
      const r = await done;
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 130, stderr);
      assert.match(stderr, /interrupted \(SIGINT\): the rerun was stopped and its temporary files removed/);
      assert.ok(!await Deno.stat(`/proc/${rerun[0]}`).then(() => true, () => false), "the child still runs");
      assert.deepEqual(leftovers(), []);
      assert.deepEqual([...Deno.readDirSync(tmp)], [], "the temporary log folder is left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
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

Deno.test("reproduce checks: experiment paths, log keys, code changes, terminal-safe text", async () => {
  const root = await Deno.makeTempDir({ prefix: "airbench-reproduce-root-" });
  const outside = await Deno.makeTempDir({ prefix: "airbench-reproduce-outside-" });
  try {
    await Deno.mkdir(join(root, "experiments"));
    await Deno.symlink(outside, join(root, "link"));
    assert.equal(experimentFile("experiments/a.ts", root), join(root, "experiments", "a.ts"));
    const refused: [unknown, RegExp][] = [
      ["link/x.ts", /leads outside the project/],
      ["../x.ts", /has an empty, "\." or "\.\." part/],
      ["experiments/../../x.ts", /has an empty, "\." or "\.\." part/],
      ["./main.ts", /has an empty/],
      ["/etc/x.ts", /not a plain relative path/],
      ["C:/x.ts", /not a plain relative path/],
      ["main.js", /not the path of a \.ts file/],
      [42, /not the path of a \.ts file/],
      ["nowhere/x.ts", /in a folder this project does not have/],
    ];
    for (const [name, message] of refused) assert.throws(() => experimentFile(name, root), message);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
  const good = {
    experiment: "main.ts",
    code: "x",
    argv: [],
    fingerprint: { commit: null, dirty: null, files: {} },
    runs: [{ seed: 1, epochs: [] }],
  };
  assert.equal(checkLog("L", good).experiment, "main.ts");
  assert.throws(() => checkLog("L", []), /L: not a JSON object/);
  assert.throws(() => checkLog("L", { ...good, argv: [1] }), /"argv" is \[1\], not a list of strings/);
  assert.throws(() => checkLog("L", { ...good, code: null }), /"code" is null/);
  assert.throws(() => checkLog("L", { ...good, runs: [{ seed: "1" }] }), /"runs"\[0\] has no integer "seed"/);
  assert.throws(() => checkLog("L", { ...good, fingerprint: {} }), /"fingerprint" is \{\}/);
  const { runs: _, ...noRuns } = good;
  assert.throws(() => checkLog("L", noRuns), /no "runs" key/);

  assert.equal(codeChanges("a\nb\nc", "a\nb\nc", "m.ts"), null);
  assert.deepEqual(codeChanges("a\nb\nc", "a\nX\nY\nc", "m.ts"), [
    "the log's code differs from m.ts in this tree from line 2: 1 line(s) of the file replaced by 2 line(s) of the log",
    "- b",
    "+ X",
    "+ Y",
  ]);
  assert.match(codeChanges(null, "a\nb", "m.ts")![0], /not in this tree: m\.ts does not exist here/);
  const many = codeChanges("", Array.from({ length: 20 }, (_, i) => `l${i}`).join("\n"), "m.ts", 3)!;
  assert.deepEqual(many.slice(1), ["- ", "+ l0", "+ l1", "+ l2", "+ ... (17 more)"]);
  assert.equal(printable("a\u001b[2Jb\u009bc"), "a\\u{1b}[2Jb\\u{9b}c");
});
