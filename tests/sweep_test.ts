// `deno task sweep` end to end on a tiny sweep (widths 8,16,16, one epoch, 400 synthetic images, 2
// configurations x 3 seeds): bad specs are one line and exit 2 before any run; the sweep killed (SIGKILL of
// its process group, then SIGTERM) and resumed finishes with no run done twice; the same sweep through a
// one-node SLURM (tools/slurm/start.sh) gives the same runs bit for bit and the same table. Nothing depends
// on clocks: the test waits for the sweep's own lines and for the next run's log file to exist.

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../lib/root.ts";
import type { Plan } from "../lib/sweep/plan.ts";
import type { SweepSummary } from "../lib/sweep/summary.ts";
import { describe } from "../lib/sweep/stats.ts";
import { runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";

const SWEEP = join(ROOT, "lib", "cli", "sweep.ts");

function tinySpec(data: string, extra: Record<string, unknown> = {}) {
  return {
    experiment: "main.ts",
    flags: {
      widths: "8,16,16",
      epochs: 1,
      "train-n": 400,
      "batch-size": 100,
      tta: 0,
      data,
      verify: false,
    },
    grid: { lr: [3, 10] },
    seeds: 3,
    baseline: { lr: 10 },
    ...extra,
  };
}

Deno.test("a bad spec is one line naming the problem, exit 2, before any run (nothing written)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-sweep-bad-" });
  try {
    const data = join(dir, "data");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ experiment: "nope.ts" }, /experiment "nope\.ts": no such file/],
      [
        { grid: { "learning-rate": [1, 2] } },
        /configuration c0 \(learning-rate=1\) of main\.ts: Unknown option '--learning-rate'/,
      ],
      [{ grid: { lr: [1, -2] } }, /configuration c1 \(lr=-2\) of main\.ts: --lr "-2": expected a number > 0/],
      [{ grid: {} }, /"grid" is empty/],
      [{ grid: { lr: [] } }, /grid\.lr: expected a non-empty list/],
      [{ seeds: 0 }, /"seeds": 0: expected a count >= 1/],
      [{ grid: { seed: [1, 2] } }, /--seed is set by the sweep/],
      [{ baseline: { lr: 7 } }, /baseline \(lr=7\) matches 0 configurations/],
      [{ colour: "red" }, /unknown key "colour"/],
    ];
    for (const [patch, pattern] of cases) {
      const spec = join(dir, "bad.json");
      Deno.writeTextFileSync(spec, JSON.stringify(tinySpec(data, patch)));
      const r = await runDeno(["run", "-A", SWEEP, spec, "--out", join(dir, "out")]);
      assert.equal(r.code, 2, `${JSON.stringify(patch)}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.equal(r.stdout, "");
    }
    const r = await runDeno(["run", "-A", SWEEP, join(dir, "missing.json")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing\.json: no such file/);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["bad.json"],
      "no --out folder made",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The sweep as a child process; `until` is called with its stdout so far and may signal it. */
async function sweepProcess(
  args: string[],
  opts: { setsid?: boolean; env?: Record<string, string> } = {},
  until?: (out: string, child: Deno.ChildProcess) => Promise<boolean>,
): Promise<{ code: number; out: string; err: string }> {
  const cmd = opts.setsid ? "setsid" : Deno.execPath();
  const pre = opts.setsid ? [Deno.execPath()] : [];
  const child = new Deno.Command(cmd, {
    args: [...pre, "run", "-A", SWEEP, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
  }).spawn();
  let out = "", err = "", stopped = false;
  const pumpOut = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      if (until && !stopped) stopped = await until(out, child);
    }
  })();
  const pumpErr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) err += chunk;
  })();
  await Promise.all([pumpOut, pumpErr]);
  return { code: (await child.status).code, out, err };
}

const completed = (out: string) => out.match(/^\[\d+\/\d+\] .*tta_val_acc/gm)?.length ?? 0;

function logsOf(out: string, plan: Plan): { path: string; status: string; bytes: string }[] {
  return plan.runs.flatMap((r) => {
    const d = join(out, r.dir);
    let names: string[] = [];
    try {
      names = [...Deno.readDirSync(d)].map((e) => e.name).filter((n) => n.endsWith(".json")).sort();
    } catch { /* not started */ }
    return names.map((n) => {
      const bytes = Deno.readTextFileSync(join(d, n));
      return { path: join(d, n), status: JSON.parse(bytes).status ?? "running", bytes };
    });
  });
}

/** Resolves once the run's folder holds a log (its experiment process has started training). */
async function logExists(dir: string): Promise<void> {
  for (;;) {
    try {
      if ([...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".json"))) return;
    } catch { /* not made yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const tableLines = (out: string) => out.split("\n").filter((l) => /^[|-]/.test(l));

async function killedAndResumed(
  spec: string,
  out: string,
): Promise<{ summary: SweepSummary; table: string[] }> {
  const args = [spec, "--out", out];
  const planOf = () => JSON.parse(Deno.readTextFileSync(join(out, "sweep.json"))) as Plan;
  // 1. SIGKILL to the sweep and the run it started (its process group) once two runs are done and the third
  //    has written its log: that log stays "running".
  const first = await sweepProcess(args, { setsid: true }, async (o, child) => {
    if (completed(o) < 2) return false;
    await logExists(join(out, planOf().runs[2].dir));
    Deno.kill(-child.pid, "SIGKILL");
    return true;
  });
  assert.equal(first.code, 137, first.out + first.err);
  const plan = planOf();
  const afterKill = logsOf(out, plan);
  const doneBefore = afterKill.filter((l) => l.status === "done");
  assert.equal(doneBefore.length, 2, JSON.stringify(afterKill.map((l) => l.status)));
  assert.deepEqual(afterKill.map((l) => l.status).filter((s) => s !== "done"), ["running"]);
  // 2. Resumed: 2 done, 4 to run; SIGTERM once one more is done and the next has started.
  const second = await sweepProcess(args, {}, async (o, child) => {
    if (completed(o) < 1) return false;
    await logExists(join(out, plan.runs[3].dir));
    child.kill("SIGTERM");
    return true;
  });
  assert.match(second.out, /; 2 done, 4 to run/);
  assert.equal(second.code, 143, second.out + second.err);
  assert.match(second.out, /SIGTERM: stopped/);
  // 3. Resumed to completion.
  const third = await sweepProcess(args);
  assert.equal(third.code, 0, third.out + third.err);
  assert.match(third.out, /; 3 done, 3 to run/);
  assert.equal(
    completed(first.out) + completed(second.out) + completed(third.out),
    6,
    "each run completed once",
  );
  const logs = logsOf(out, plan);
  for (const d of doneBefore) {
    assert.equal(logs.find((l) => l.path === d.path)?.bytes, d.bytes, `${d.path} untouched`);
  }
  // One invocation per log: six done runs plus the two that were killed (never done).
  assert.equal(logs.length, 8, JSON.stringify(logs.map((l) => [l.path, l.status])));
  assert.equal(logs.filter((l) => l.status === "done").length, 6);
  assert.deepEqual(logs.filter((l) => l.status !== "done").map((l) => l.status).sort().slice(-1), [
    "running",
  ]);
  for (const r of plan.runs) {
    assert.equal(logs.filter((l) => l.path.startsWith(join(out, r.dir)) && l.status === "done").length, 1);
  }
  assert.equal(tableLines(third.out).length, 6, third.out);
  return {
    summary: JSON.parse(Deno.readTextFileSync(join(out, "summary.json"))),
    table: tableLines(third.out),
  };
}

function checkSummary(s: SweepSummary) {
  assert.equal(s.done, 6);
  for (const c of s.configs) {
    const values = s.runs.filter((r) => r.config === c.id).map((r) => r.tta_val_acc!);
    assert.equal(values.length, 3);
    const d = describe(values);
    assert.deepEqual([c.n, c.mean, c.std, c.ci95], [d.n, d.mean, d.std, d.ci95]);
  }
  assert.equal(s.baseline, "c1");
  assert.ok(s.configs[0].vs_baseline && !s.configs[1].vs_baseline);
}

/** Starts the one-node SLURM cluster, or says why this machine cannot when this machine cannot (no root, no packages). */
async function startSlurm(): Promise<{ conf: string } | { skip: string }> {
  const r = await new Deno.Command("bash", {
    args: [join(ROOT, "tools/slurm/start.sh")],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const out = new TextDecoder().decode(r.stdout), err = new TextDecoder().decode(r.stderr);
  const conf = /^SLURM_CONF=(.+)$/m.exec(out)?.[1];
  return r.success && conf ? { conf } : { skip: (err.trim() || out.trim()).split("\n").at(-1)! };
}

Deno.test("tiny sweep: killed and resumed with no run done twice; through SLURM the same runs, bit for bit", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-sweep-" });
  let slurm: { conf: string } | { skip: string } | undefined;
  try {
    await writeDataset(join(dir, "data"), 100, testRng(20));
    const spec = join(dir, "tiny.json");
    Deno.writeTextFileSync(spec, JSON.stringify(tinySpec(join(dir, "data"))));
    let local: { summary: SweepSummary; table: string[] } | undefined;
    await t.step("locally: SIGKILL, resume, SIGTERM, resume to completion", async () => {
      local = await killedAndResumed(spec, join(dir, "local"));
      checkSummary(local.summary);
      for (const f of ["summary.html", "report.html"]) {
        assert.ok(Deno.statSync(join(dir, "local", f)).size > 1000);
      }
    });
    slurm = await startSlurm();
    if ("skip" in slurm) console.log(`SLURM step skipped: ${slurm.skip}`);
    await t.step({
      name:
        "through a one-node SLURM (sbatch --array, chunks of 2, dependent collect job): same runs and table",
      ignore: "skip" in slurm,
      fn: async () => {
        const env = { SLURM_CONF: (slurm as { conf: string }).conf };
        const out = join(dir, "slurm");
        const r = await sweepProcess([
          spec,
          "--out",
          out,
          "--slurm",
          "--chunk",
          "2",
          "--time",
          "10",
          "--wait",
        ], { env });
        assert.equal(r.code, 0, r.out + r.err);
        assert.match(r.out, /submitted job array \d+: 3 task\(s\) of up to 2 run\(s\) \(6 runs to do\)/);
        const s = JSON.parse(Deno.readTextFileSync(join(out, "summary.json"))) as SweepSummary;
        checkSummary(s);
        const key = (x: SweepSummary) =>
          x.runs.map((r) => [r.config, r.seed, r.status, r.tta_val_acc, r.val_acc, r.weights_sha256]);
        assert.deepEqual(key(s), key(local!.summary), "the same results bit for bit");
        assert.deepEqual(tableLines(r.out), local!.table, "the same table");
      },
    });
  } finally {
    if (slurm && "conf" in slurm) {
      await new Deno.Command("bash", { args: [join(ROOT, "tools/slurm/stop.sh")] }).output();
    }
    await Deno.remove(dir, { recursive: true });
  }
});
