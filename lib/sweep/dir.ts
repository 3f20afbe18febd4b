// A sweep's folder (lib/cli/sweep.ts): its plan (sweep.json), one log folder per run, and the summary
// collected from the runs' logs (summary.json, summary.html, report.html). Shared by the local runner and the
// SLURM submission.

import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { reportHtml } from "../report/html.ts";
import type { ExperimentLog } from "../train/session.ts";
import { type Plan, planKey, SpecError } from "./plan.ts";
import { type RunResult, summarize, summaryHtml, summaryTable, type SweepSummary } from "./summary.ts";

export interface Options {
  out: string;
  collect: boolean;
  slurm: boolean;
  partition?: string;
  gpusPerTask?: number;
  time?: string;
  chunk: number;
  wait: boolean;
}

/** The sweep's folder on disk: its plan (sweep.json) and one folder per run. */
export class SweepDir {
  constructor(readonly path: string) {}
  get planPath(): string {
    return join(this.path, "sweep.json");
  }
  runDir(dir: string): string {
    return join(this.path, dir);
  }
  readPlan(): Plan | undefined {
    try {
      return JSON.parse(Deno.readTextFileSync(this.planPath));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw new SpecError(
        `${this.planPath}: not a readable sweep plan (${(e as Error).message.split("\n")[0]})`,
      );
    }
  }
  /** Writes the plan, or checks that the folder holds this same sweep (resume). */
  claim(plan: Plan): void {
    const old = this.readPlan();
    if (old && planKey(old) !== planKey(plan)) {
      throw new SpecError(
        `--out ${this.path} holds another sweep (${old.name}: its configurations or seeds differ); ` +
          `choose another --out or remove that folder`,
      );
    }
    writeFileAtomic(this.planPath, JSON.stringify(plan, null, 1));
  }
}

/** What a run's log folder says: done (its done log), or the state of its latest invocation. */
export function runResult(sweep: SweepDir, run: Plan["runs"][number]): RunResult {
  const base: RunResult = { index: run.index, config: run.config, seed: run.seed, status: "not started" };
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(sweep.runDir(run.dir))].filter((e) =>
      e.isFile && /^[^.].*\.json$/.test(e.name)
    )
      .map((e) => e.name).sort();
  } catch { /* not started */ }
  let latest: RunResult | undefined;
  for (const name of names) {
    let log: Partial<ExperimentLog>;
    try {
      log = JSON.parse(Deno.readTextFileSync(join(sweep.runDir(run.dir), name)));
    } catch {
      continue; // being replaced at this moment, or not a log
    }
    const status = log.status ?? "running"; // "{}": created, not yet written
    const path = `${run.dir}/${name}`;
    if (status === "done") {
      const r = log.runs?.[0];
      return {
        ...base,
        status,
        log: path,
        tta_val_acc: r?.tta_val_acc,
        val_acc: r?.epochs.at(-1)?.val_acc as number | undefined,
        weights_sha256: r?.weights_sha256,
        total_time_seconds: r?.total_time_seconds,
      };
    }
    latest = { ...base, status, log: path };
  }
  return latest ?? base;
}

/** Reads every run's logs, writes summary.json, summary.html and report.html, prints the table. */
export function collect(sweep: SweepDir, plan: Plan): SweepSummary {
  const runs = plan.runs.map((r) => runResult(sweep, r));
  const s = summarize(plan, runs);
  const stamp = new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  writeFileAtomic(join(sweep.path, "summary.json"), JSON.stringify(s, null, 1));
  writeFileAtomic(join(sweep.path, "report.html"), trainingReport(sweep, plan, runs, stamp));
  writeFileAtomic(
    join(sweep.path, "summary.html"),
    summaryHtml(s, { generated: stamp, report: "report.html" }),
  );
  console.log(summaryTable(s));
  const missing = runs.filter((r) => r.status !== "done");
  if (missing.length) {
    console.log(`not done: ${missing.map((r) => `${r.config} seed ${r.seed} (${r.status})`).join(", ")}`);
  }
  console.log(join(sweep.path, "summary.html"));
  return s;
}

/** `deno task report`'s page of the done runs, one entry per configuration (its runs are the seeds). */
function trainingReport(sweep: SweepDir, plan: Plan, runs: RunResult[], stamp: string): string {
  const named = plan.configs.flatMap((c) => {
    const logs = runs.filter((r) => r.config === c.id && r.status === "done").map((r) =>
      JSON.parse(Deno.readTextFileSync(join(sweep.path, r.log!))) as ExperimentLog
    );
    if (!logs.length) return [];
    const merged = { ...logs[0], runs: logs.map((l, i) => ({ ...l.runs[0], run: i })) };
    return [{ name: `${c.id} ${c.label}`, source: sweep.path, log: merged as never }];
  });
  return reportHtml(named, { title: `Sweep ${plan.name}: training curves`, generated: stamp });
}
