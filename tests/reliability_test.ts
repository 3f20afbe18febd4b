// main.ts as a hostile user runs it: flags that would exhaust memory or fail late, unwritable outputs,
// interruptions, colliding log names, silent progress, diverging runs. Every check is made before any data is
// loaded or any step trains, and names the flag; nothing here depends on clocks or scheduling.

import assert from "node:assert/strict";
import { join } from "node:path";
import { INPUT_SHAPE } from "../lib/nn/model.ts";
import { Graph } from "../lib/nn/module.ts";
import { Progress } from "../lib/report/console.ts";
import { createLogPath } from "../lib/io/runlog.ts";
import { ROOT } from "../lib/root.ts";
import { runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";
import { convJobs } from "../lib/nn/tune.ts";
import { writeSafetensors } from "../lib/io/safetensors.ts";
import { hyp, makeNet } from "../main.ts";

const MAIN = join(ROOT, "main.ts");

function runMain(args: string[]) {
  return runDeno(["run", "-A", "main.ts", ...args]);
}

/** A one-line usage error (exit 2) printed before any data is read. */
function assertUsage(r: { code: number; stderr: string }, pattern: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /CIFAR-10/);
}

Deno.test("flags that would exhaust memory or fail after the first run are rejected up front", async () => {
  assertUsage(
    await runMain(["--epochs", "1e7"]),
    /--epochs 10000000 .* steps per run; at most 1000000 are supported/,
  );
  assertUsage(
    await runMain(["--seed", "9007199254740991", "--runs", "2"]),
    /--seed 9007199254740991 with --runs 2: .* at most 9007199254740991/,
  );
  assertUsage(await runMain(["--runs", "-1"]), /--runs "-1": expected a positive integer/);
});

Deno.test("unwritable outputs are named by their flag before any data is loaded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-outputs-" });
  try {
    assertUsage(
      await runMain(["--log-dir", join(ROOT, "README.md")]),
      /--log-dir .*README\.md: is a file, not a folder/,
    );
    assertUsage(await runMain(["--log-dir", "/proc/x"]), /--log-dir \/proc\/x: cannot write there/);
    assertUsage(
      await runMain(["--save-weights", "/proc/w.safetensors", "--log-dir", dir]),
      /--save-weights \/proc\/w\.safetensors: cannot write there/,
    );
    assertUsage(await runMain(["--save-weights", dir, "--log-dir", dir]), /--save-weights .*: is a folder/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no log and no probe file left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--variants: a log that is missing, lacks conv_variants or is of another network is named up front", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-variants-" });
  try {
    const none = join(dir, "none.json");
    assertUsage(
      await runMain(["--variants", none, "--log-dir", dir]),
      /--variants .*none\.json: not a readable JSON run log/,
    );
    const old = join(dir, "old.json");
    Deno.writeTextFileSync(old, JSON.stringify({ runs: [] }));
    assertUsage(
      await runMain(["--variants", old, "--log-dir", dir]),
      /--variants .*old\.json: no "conv_variants"/,
    );
    // The record of a three-block net, replayed with four blocks: the first layer it lacks is named.
    const graph = new Graph(
      makeNet({ ...hyp.defaults, net: { ...hyp.defaults.net, widths: [8, 8, 8] } }),
      INPUT_SHAPE,
    );
    const record: Record<string, Record<string, { variant: string }>> = {};
    for (const { label, job } of convJobs(graph, 100, "f32")) {
      (record[label] ??= {})[job.pass] = { variant: "register-8x8-wg64" };
    }
    const three = join(dir, "three.json");
    Deno.writeTextFileSync(three, JSON.stringify({ conv_variants: record }));
    assertUsage(
      await runMain(["--variants", three, "--widths", "8,8,8,8", "--log-dir", dir]),
      /--variants .*three\.json: no kernel variant for layer 5\.conv1, forward \(the logged network differs\)/,
    );
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["old.json", "three.json"],
      "no log written",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Start main.ts, wait until `ready` matches a line of its stderr or stdout, send `signal`, collect the rest. */
async function interrupt(
  args: string[],
  ready: RegExp,
  signal: Deno.Signal,
  before?: (seen: string) => void,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let seen = "", signalled = false;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      seen += chunk;
      if (!signalled && ready.test(seen)) {
        signalled = true;
        before?.(seen);
        child.kill(signal);
      }
    }
  };
  await Promise.all([pump(child.stdout), pump(child.stderr)]);
  return { status: await child.status, output: seen, signalled };
}

Deno.test("SIGINT / SIGTERM: the log says interrupted, where, and the exit status is 130 / 143", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-signal-" });
  try {
    await writeDataset(join(dir, "data"), 60, testRng(3));
    const common = [
      "--data",
      join(dir, "data"),
      "--verify",
      "false",
      "--widths",
      "8,8,8",
      "--batch-size",
      "50",
    ];
    const cases = [
      { signal: "SIGINT" as const, code: 130, ready: /\|\s+0 \|\s+0 \|/, epochs: 1 }, // after epoch 0's row
      { signal: "SIGTERM" as const, code: 143, ready: /^adapter: /m, epochs: 0 }, // before any epoch ends
    ];
    for (const c of cases) {
      const logDir = join(dir, c.signal);
      let atStart: { status: string; runs: unknown[] } | undefined;
      // The adapter line names the log, which exists (status "running") before any step trains.
      const readLog = (seen: string) => {
        const path = /log: (\S+\.json)/.exec(seen)?.[1];
        if (path) atStart = JSON.parse(Deno.readTextFileSync(path));
      };
      const args = [...common, "--epochs", "50", "--tta", "0", "--log-dir", logDir];
      const r = await interrupt(args, c.ready, c.signal, c.epochs === 0 ? readLog : undefined);
      assert.ok(r.signalled, r.output);
      assert.equal(r.status.code, c.code, r.output);
      assert.match(
        r.output,
        new RegExp(`interrupted \\(${c.signal}\\) in run 0 after \\d+ epoch\\(s\\), at step \\d+`),
      );
      const files = [...Deno.readDirSync(logDir)].filter((e) => e.name.endsWith(".json"));
      assert.equal(files.length, 1, "one log");
      const log = JSON.parse(await Deno.readTextFile(join(logDir, files[0].name)));
      assert.equal(log.status, "interrupted");
      assert.equal(log.interrupted.signal, c.signal);
      assert.ok(log.interrupted.epochs_completed >= c.epochs);
      assert.equal(log.runs[0]?.epochs.length ?? 0, log.interrupted.epochs_completed);
      if (c.epochs === 0) {
        assert.equal(atStart?.status, "running", "the log is written when the run starts");
        assert.equal(atStart?.runs.length, 0);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two logs created with the same timestamp get different names", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-lognames-" });
  try {
    const a = createLogPath(dir, "2026-01-01T00-00-00-000Z");
    const b = createLogPath(dir, "2026-01-01T00-00-00-000Z");
    assert.notEqual(a, b);
    assert.match(b, /2026-01-01T00-00-00-000Z-1\.json$/);
    assert.equal([...Deno.readDirSync(dir)].length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("progress off a terminal: a plain line at most every 30 s (injected clock)", () => {
  let now = 0;
  const lines: string[] = [];
  const p = new Progress(false, false, () => now, (s) => lines.push(s));
  p.update("a");
  now = 29_999;
  p.update("b");
  now = 30_000;
  p.update("c");
  p.clear();
  assert.deepEqual(lines, ["a\n", "c\n"]);
  const tty: string[] = [];
  new Progress(false, true, () => 0, (s) => tty.push(s)).update("x");
  assert.deepEqual(tty, ["\r\x1b[2Kx"]);
  const quiet: string[] = [];
  new Progress(true, false, () => 0, (s) => quiet.push(s)).update("x");
  assert.deepEqual(quiet, []);
});

Deno.test("a diverging run is recorded and the next seed runs; the exit status says a run failed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-nan2-" });
  try {
    await writeDataset(join(dir, "data"), 40, testRng(99));
    const logDir = join(dir, "logs");
    const r = await runMain([
      ...["--data", join(dir, "data"), "--verify", "false", "--widths", "4,4,4", "--batch-size", "20"],
      ...["--runs", "2", "--epochs", "2", "--lr", "1e30", "--tta", "0", "--log-dir", logDir, "--quiet"],
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /run 0 diverged: loss is (NaN|Infinity|-Infinity) at step \d+.*; continuing with run 1 \(seed 1\)/,
    );
    assert.match(r.stderr, /run 1 diverged/);
    const log = JSON.parse(await Deno.readTextFile(join(logDir, [...Deno.readDirSync(logDir)][0].name)));
    assert.equal(log.runs.length, 2);
    assert.ok(log.runs.every((run: { error?: string }) => /at step \d+/.test(run.error ?? "")));
    assert.equal(log.status, "failed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tiny run's flags on a synthetic dataset in `dir` (no cache, no download: --verify false). */
async function tinyRun(dir: string): Promise<string[]> {
  await writeDataset(join(dir, "data"), 40, testRng(5));
  return [
    ...["--data", join(dir, "data"), "--verify", "false", "--runs", "1", "--widths", "8,16,16"],
    ...["--train-n", "200", "--epochs", "1", "--batch-size", "100", "--tta", "0"],
  ];
}

function onlyLog(dir: string) {
  const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".json"));
  assert.equal(files.length, 1, files.map((f) => f.name).join(" "));
  return JSON.parse(Deno.readTextFileSync(join(dir, files[0].name)));
}

Deno.test("a malformed tuning cache and a run without --allow-env train to the end", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-env-" });
  try {
    const tiny = await tinyRun(dir);
    // A tuning cache holding {"version":1,"entries":[null]}: a warning, then the defaults.
    const cacheDir = join(dir, "cache");
    Deno.mkdirSync(cacheDir);
    Deno.writeTextFileSync(join(cacheDir, "tune-cache.json"), '{"version":1,"entries":[null]}');
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...tiny, "--log-dir", join(dir, "a"), "--quiet"],
      env: { AIRBENCH_DATA: cacheDir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, stderr);
    assert.match(stderr, /^warning: tune cache .*tune-cache\.json: 1 malformed entry ignored$/m);
    assert.equal(onlyLog(join(dir, "a")).status, "done");
    // No --allow-env (nor --allow-net): the tuner reads the project's cache path instead of crashing.
    const perms = ["--allow-read", "--allow-write", "--allow-run", "--allow-ffi"];
    const r2 = await runDeno(["run", ...perms, "main.ts", ...tiny, "--log-dir", join(dir, "b"), "--quiet"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(onlyLog(join(dir, "b")).status, "done");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a full disk after the log exists: status failed, the error in the log, the log so far line", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-full-" });
  const mnt = join(dir, "logs");
  Deno.mkdirSync(mnt);
  // A tmpfs with room for one file: the log is created, and every later temp file + rename fails (ENOSPC).
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=1m,nr_inodes=2", "tmpfs", mnt],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ success: false }));
  try {
    if (!mount.success) {
      console.warn("SKIPPED: mounting a tmpfs is not permitted here (run as root to test a full disk)");
      return;
    }
    const r = await runMain([...await tinyRun(dir), "--log-dir", mnt, "--quiet"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: .*No space left on device/m);
    assert.match(r.stderr, new RegExp(`^log so far: ${mnt}/\\S+\\.json$`, "m"));
    const log = onlyLog(mnt);
    assert.equal(log.status, "failed");
    assert.match(log.error, /No space left on device/);
    await t.step("the run's record is whole (written in place)", () => assert.ok(log.config && log.code));
  } finally {
    if (mount.success) await new Deno.Command("umount", { args: [mnt] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("networks too big for the adapter's buffers are named by --widths / --batch-size up front", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-fits-" });
  try {
    assertUsage(
      await runMain(["--widths", "100000,100000", "--batch-size", "100", "--log-dir", dir]),
      /^error: --widths 100000,100000 at --batch-size 100: the largest activation takes \d+ bytes .*maxStorageBufferBindingSize/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--variants: ids that parse but cannot run are named with their layer before the data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-variants2-" });
  try {
    const h = hyp.defaults;
    h.net.widths = [8, 8, 8];
    const graph = new Graph(makeNet(h), INPUT_SHAPE);
    const record: Record<string, Record<string, { variant: string }>> = {};
    for (const { label, job } of convJobs(graph, 100, "f32")) {
      (record[label] ??= {})[job.pass] = { variant: "register-8x8-wg64" };
    }
    record["3.conv2"].weight_grad.variant = "register-0x0-wg0";
    const path = join(dir, "log.json");
    Deno.writeTextFileSync(path, JSON.stringify({ conv_variants: record }));
    const args = ["--variants", path, "--widths", "8,8,8", "--batch-size", "100", "--log-dir", dir];
    assertUsage(
      await runMain(args),
      /--variants .*log\.json: layer 3\.conv2, weight_grad: kernel variant register-0x0-wg0 cannot run here: TM=0/,
    );
    record["3.conv2"].weight_grad.variant = "tiled-4096x4096x16-8x8";
    Deno.writeTextFileSync(path, JSON.stringify({ conv_variants: record }));
    assertUsage(await runMain(args), /layer 3\.conv2, weight_grad: .*tiled-4096x4096x16-8x8 .*invocations >/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["log.json"], "no log written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flags given twice, --scale beyond f32, a bad --data, --save-weights over another file: exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-flags-" });
  try {
    const logs = ["--log-dir", join(dir, "logs")];
    assertUsage(await runMain(["--runs", "1", "--runs", "2", ...logs]), /^error: --runs given twice/);
    assertUsage(
      await runMain(["--scale", "1e308", ...logs]),
      /--scale "1e308": expected a number finite and nonzero in f32/,
    );
    assertUsage(
      await runMain(["--scale", "1e-50", ...logs]),
      /--scale "1e-50": expected a number finite and nonzero in f32/,
    );
    const r = await runMain(["--data", join(dir, "none"), "--quiet", ...logs]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^error: --data .*none: cannot read .*none/);
    const text = join(dir, "notes.txt");
    Deno.writeTextFileSync(text, "my notes\n");
    assertUsage(
      await runMain(["--save-weights", text, "--runs", "1", ...logs]),
      /--save-weights .*notes\.txt: exists and is not a safetensors file .*refusing to replace it/,
    );
    Deno.writeTextFileSync(join(dir, "notes-run1.txt"), "more notes\n");
    assertUsage(
      await runMain(["--save-weights", text, "--runs", "2", ...logs]),
      /--save-weights .*notes-run1\.txt: exists and is not a safetensors file/,
    );
    assert.equal(Deno.readTextFileSync(text), "my notes\n");
    // An earlier run's weights may be replaced: the check passes and the next problem (--data) is named.
    const old = join(dir, "w.safetensors");
    writeSafetensors(old, { "0.weight": { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
    const r2 = await runMain([
      "--save-weights",
      old,
      "--runs",
      "1",
      "--data",
      join(dir, "none"),
      "--quiet",
      ...logs,
    ]);
    assert.equal(r2.code, 2, r2.stderr);
    assert.match(r2.stderr, /^error: --data /);
    assert.deepEqual([...Deno.readDirSync(join(dir, "logs"))], [], "no log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
