// `deno task sweep SPEC [--out DIR] [--collect] [--slurm ...]`: a grid of experiment configurations x seeds,
// one ordinary run per (configuration, seed) with its own --log-dir inside the sweep's folder, and a summary
// with statistics (lib/sweep/summary.ts). Resumable: a run whose log says `done` is never run again; a
// failed, interrupted or never-finished one (a log left `running` by a killed process) is. With --slurm the
// pending runs go to SLURM as one job array (SLURM schedules, places and requeues), and a dependent job
// collects the summary. The spec and its checks: lib/sweep/plan.ts.

import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkWritable } from "../io/runlog.ts";
import { ROOT } from "../root.ts";
import { collect, type Options, runResult, SweepDir } from "../sweep/dir.ts";
import { type Plan, planSweep, readSpec, SpecError } from "../sweep/plan.ts";
import { submitSlurm } from "../sweep/slurm.ts";

const USAGE = "usage: deno task sweep SPEC.json [--out DIR] [--collect] " +
  "[--slurm [--partition P] [--gpus-per-task N] [--time T] [--chunk K] [--wait]]";

function parseOptions(args: string[]): { spec?: string; task?: number; o: Options; help: boolean } {
  const { values, positionals } = parseArgs({
    args,
    options: {
      out: { type: "string" },
      collect: { type: "boolean" },
      slurm: { type: "boolean" },
      partition: { type: "string" },
      "gpus-per-task": { type: "string" },
      time: { type: "string" },
      chunk: { type: "string" },
      wait: { type: "boolean" },
      task: { type: "string" },
      help: { type: "boolean" },
    },
    allowPositionals: true,
  });
  const posInt = (flag: string, v: string | undefined, min: number) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min) {
      throw new SpecError(`--${flag} ${v}: expected an integer >= ${min}`);
    }
    return Number(v);
  };
  if (values.time !== undefined && !/^(\d+-)?\d+(:\d+){0,2}$/.test(values.time)) {
    throw new SpecError(`--time ${values.time}: expected SLURM's format, e.g. 30, 1:30:00 or 1-0`);
  }
  if (positionals.length > 1) throw new SpecError(`one SPEC only (got ${positionals.join(" ")}); ${USAGE}`);
  const spec = positionals[0];
  const name = (spec ?? "").replace(/^.*[\\/]/, "").replace(/\.[^.]+$/, "");
  const o: Options = {
    out: values.out ?? join("logs", `sweep-${name}`),
    collect: Boolean(values.collect),
    slurm: Boolean(values.slurm),
    partition: values.partition,
    gpusPerTask: posInt("gpus-per-task", values["gpus-per-task"], 1),
    time: values.time,
    chunk: posInt("chunk", values.chunk, 1) ?? 1,
    wait: Boolean(values.wait),
  };
  if (o.collect && o.slurm) throw new SpecError("--collect and --slurm: give one");
  const slurmOnly = ["partition", "gpus-per-task", "time", "chunk", "wait"].find((k) => k in values);
  if (slurmOnly && !o.slurm && values.task === undefined) throw new SpecError(`--${slurmOnly} needs --slurm`);
  return { spec, task: posInt("task", values.task, 0), o, help: Boolean(values.help) };
}

/** One run, as an ordinary invocation of its experiment file; its output appended to output.txt beside the log. */
async function runOne(
  sweep: SweepDir,
  plan: Plan,
  run: Plan["runs"][number],
  signals: Signals,
): Promise<number> {
  const c = plan.configs.find((x) => x.id === run.config)!;
  const dir = sweep.runDir(run.dir);
  Deno.mkdirSync(dir, { recursive: true });
  const args = [...c.args, "--runs", "1", "--seed", String(run.seed), "--log-dir", resolve(dir), "--quiet"];
  const exp = c.experiment.startsWith("/") ? c.experiment : join(ROOT, c.experiment);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", exp, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  signals.child = child;
  const sink = async (s: ReadableStream<Uint8Array>) => {
    const f = await Deno.open(join(dir, "output.txt"), { append: true, create: true });
    await s.pipeTo(f.writable);
  };
  await Promise.all([sink(child.stdout), sink(child.stderr)]);
  const { code } = await child.status;
  signals.child = undefined;
  return code;
}

/** SIGINT / SIGTERM while a sweep runs: passed to the running experiment (which marks its log interrupted). */
class Signals {
  child?: Deno.ChildProcess;
  caught?: Deno.Signal;
  private handlers: [Deno.Signal, () => void][] = [];
  constructor() {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const h = () => {
        this.caught = sig;
        try {
          this.child?.kill(sig);
        } catch { /* it has just ended */ }
      };
      Deno.addSignalListener(sig, h);
      this.handlers.push([sig, h]);
    }
  }
  off(): void {
    for (const [sig, h] of this.handlers) Deno.removeSignalListener(sig, h);
  }
}

/** Runs the pending runs among `indices` one after another. Returns the exit status (130/143 when stopped). */
async function runLocal(sweep: SweepDir, plan: Plan, indices: number[]): Promise<number> {
  const pending = indices.filter((i) => runResult(sweep, plan.runs[i]).status !== "done");
  console.log(
    `sweep ${plan.name}: ${plan.configs.length} configuration(s) x ${plan.seeds.length} seed(s) = ` +
      `${plan.runs.length} runs in ${sweep.path}; ${
        indices.length - pending.length
      } done, ${pending.length} to run`,
  );
  const signals = new Signals();
  let failed = 0;
  try {
    for (const [k, i] of pending.entries()) {
      const run = plan.runs[i];
      const label = `${run.config} ${plan.configs.find((c) => c.id === run.config)!.label} seed ${run.seed}`;
      const t0 = performance.now();
      const code = signals.caught ? 0 : await runOne(sweep, plan, run, signals);
      if (signals.caught) {
        console.log(`${signals.caught}: stopped during ${label}; run the same command again to resume`);
        return signals.caught === "SIGINT" ? 130 : 143;
      }
      const r = runResult(sweep, run);
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if (r.status !== "done") failed++;
      console.log(
        `[${k + 1}/${pending.length}] ${label}: ` +
          (r.status === "done"
            ? `tta_val_acc ${r.tta_val_acc?.toFixed(4)} (${secs} s)`
            : `${r.status}, exit status ${code}; see ${join(sweep.runDir(run.dir), "output.txt")}`),
      );
    }
  } finally {
    signals.off();
  }
  return failed ? 1 : 0;
}

export async function main(args: string[]): Promise<number> {
  const { spec, task, o, help } = parseOptions(args);
  if (help) {
    console.log(`${USAGE}\n\nSee README.md (Sweeps) for the spec's keys.`);
    return 0;
  }
  const sweep = new SweepDir(o.out);
  if (task !== undefined) return await runTask(sweep, task, o.chunk);
  if (!spec) throw new SpecError(`no SPEC given; ${USAGE}`);
  const plan = await planSweep(await readSpec(spec), spec);
  try {
    checkWritable("--out", o.out, "dir");
  } catch (e) {
    throw new SpecError((e as Error).message);
  }
  sweep.claim(plan);
  if (o.collect) return collect(sweep, plan).done === plan.runs.length ? 0 : 1;
  if (o.slurm) {
    return await submitSlurm(sweep, plan, o);
  }
  const code = await runLocal(sweep, plan, plan.runs.map((r) => r.index));
  if (code >= 128) return code;
  const s = collect(sweep, plan);
  return code || (s.done === plan.runs.length ? 0 : 1);
}

/** A SLURM array task: the runs of chunk `task` (of `chunk` runs each) that are not done yet. */
async function runTask(sweep: SweepDir, task: number, chunk: number): Promise<number> {
  const plan = sweep.readPlan();
  if (!plan) throw new SpecError(`--task: no sweep plan in ${sweep.path} (sweep.json)`);
  const indices = plan.runs.map((r) => r.index).slice(task * chunk, (task + 1) * chunk);
  if (!indices.length) throw new SpecError(`--task ${task}: the sweep has ${plan.runs.length} runs`);
  return await runLocal(sweep, plan, indices);
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(e instanceof SpecError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? 2 : 1);
  }
}
