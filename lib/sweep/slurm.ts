// `deno task sweep SPEC --slurm`: the sweep's pending runs as one SLURM job array (`sbatch --array`, one task
// per chunk of --chunk runs), each task running its runs' experiment commands (`lib/cli/sweep.ts --task I`,
// which skips runs already done: a requeued task does not run them twice), and a job that depends on the
// array (`--dependency=afterany`) and collects the summary. Scheduling, placement, retries (`--requeue`) and
// time limits are SLURM's; nothing here waits or polls, except `--wait` (sbatch's own).

import { join, resolve } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { ROOT } from "../root.ts";
import { collect, type Options, runResult, type SweepDir } from "./dir.ts";
import type { Plan } from "./plan.ts";
import { SpecError } from "./plan.ts";

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The time limit of one array task: --time, else from the longest done run's logged time (3x, plus 10 minutes
 * for start-up and data per run, times the runs per task), else one hour. Returns SLURM's minutes and why.
 */
export function timeLimit(o: Options, longestRunSeconds: number | undefined): { time: string; why: string } {
  if (o.time) return { time: o.time, why: "--time" };
  if (longestRunSeconds === undefined) {
    return { time: "60", why: "no run of this sweep is done yet to measure; give --time to change it" };
  }
  const minutes = Math.ceil((o.chunk * (3 * longestRunSeconds + 600)) / 60);
  return {
    time: String(minutes),
    why: `3x the longest done run (${longestRunSeconds.toFixed(1)} s) + 10 min, per run`,
  };
}

/** The array job's script: one task per chunk of runs; `indices` are the chunks with a run still to do. */
export function arrayScript(
  sweep: SweepDir,
  plan: Plan,
  o: Options,
  chunks: number[],
  time: string,
): string {
  const dir = resolve(sweep.path);
  const lines = [
    "#!/bin/bash",
    `#SBATCH --job-name=sweep-${plan.name}`,
    `#SBATCH --array=${chunks.join(",")}`,
    `#SBATCH --output=${join(dir, "slurm", "%A_%a.out")}`,
    "#SBATCH --open-mode=append",
    "#SBATCH --requeue",
    "#SBATCH --ntasks=1",
    `#SBATCH --time=${time}`,
    `#SBATCH --chdir=${Deno.cwd()}`,
  ];
  if (o.partition) lines.push(`#SBATCH --partition=${o.partition}`);
  if (o.gpusPerTask) lines.push(`#SBATCH --gpus-per-task=${o.gpusPerTask}`);
  lines.push(
    `# ${plan.runs.length} runs of ${plan.configs.length} configuration(s), ${o.chunk} per task; runs done are skipped`,
    `exec ${q(Deno.execPath())} run -A ${q(join(ROOT, "lib", "cli", "sweep.ts"))} --out ${q(dir)} ` +
      `--chunk ${o.chunk} --task "$SLURM_ARRAY_TASK_ID"`,
    "",
  );
  return lines.join("\n");
}

async function sbatch(args: string[]): Promise<{ code: number; out: string }> {
  let r;
  try {
    r = await new Deno.Command("sbatch", { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new SpecError("--slurm: no sbatch on this machine (run it on a SLURM login node)");
    }
    throw e;
  }
  const dec = new TextDecoder();
  if (!r.success && !args.includes("--wait")) {
    throw new Error(`sbatch ${args.join(" ")}: ${dec.decode(r.stderr).trim().split("\n")[0]}`);
  }
  return { code: r.code, out: dec.decode(r.stdout).trim() };
}

/** Submits the array (pending chunks only) and the collecting job; with --wait, waits and prints the table. */
export async function submitSlurm(sweep: SweepDir, plan: Plan, o: Options): Promise<number> {
  const results = plan.runs.map((r) => runResult(sweep, r));
  const chunkCount = Math.ceil(plan.runs.length / o.chunk);
  const chunks = [...Array(chunkCount).keys()].filter((c) =>
    results.slice(c * o.chunk, (c + 1) * o.chunk).some((r) => r.status !== "done")
  );
  if (!chunks.length) {
    console.log(`sweep ${plan.name}: every run is done; collecting`);
    collect(sweep, plan);
    return 0;
  }
  const times = results.map((r) => r.total_time_seconds).filter((t): t is number => t !== undefined);
  const { time, why } = timeLimit(o, times.length ? Math.max(...times) : undefined);
  const script = join(resolve(sweep.path), "slurm", "array.sh");
  writeFileAtomic(script, arrayScript(sweep, plan, o, chunks, time));
  const array = (await sbatch(["--parsable", script])).out.split(";")[0];
  console.log(
    `submitted job array ${array}: ${chunks.length} task(s) of up to ${o.chunk} run(s) ` +
      `(${
        results.filter((r) => r.status !== "done").length
      } runs to do), time limit ${time} (${why}); ${script}`,
  );
  const collectArgs = [
    "--parsable",
    `--dependency=afterany:${array}`,
    `--job-name=sweep-${plan.name}-collect`,
    `--output=${join(resolve(sweep.path), "slurm", "collect-%j.out")}`,
    `--chdir=${Deno.cwd()}`,
    "--time=30",
    ...(o.partition ? [`--partition=${o.partition}`] : []),
    `--wrap=${q(Deno.execPath())} run -A ${q(join(ROOT, "lib", "cli", "sweep.ts"))} ${q(plan.spec)} ` +
    `--out ${q(resolve(sweep.path))} --collect`,
  ];
  if (!o.wait) {
    const job = (await sbatch(collectArgs)).out.split(";")[0];
    console.log(`submitted collecting job ${job} (after the array); or run: deno task sweep SPEC --collect`);
    return 0;
  }
  const done = await sbatch(["--wait", ...collectArgs]);
  console.log(`collecting job ${done.out.split(";")[0]} ended (exit status ${done.code})`);
  return collect(sweep, plan).done === plan.runs.length ? 0 : 1;
}
