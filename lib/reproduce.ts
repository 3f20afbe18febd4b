// `deno task reproduce LOG [--runs N]`: rerun what a log says ran, and check it gives the same accuracies.
//
// The logged experiment code is written beside the experiment file under a temporary name (so its imports
// resolve), every library or kernel file whose SHA-256 differs from the log's fingerprint is named in a
// warning, the logged command line runs again with the logged seed (the first N runs only with --runs N) and
// the logged convolution kernel variants (--variants LOG), and each run's tta_val_acc, every epoch's val_acc
// and the digest of the final weights (weights_sha256, in logs that have it) are compared with the log bit for
// bit.
// Exit status 0 only when every compared value matches.

import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { ExperimentLog, RunLog } from "./run.ts";
import { type Fingerprint, fingerprint, ROOT } from "./runlog.ts";

/** The files whose SHA-256 differs between the log's fingerprint and the tree now (or that exist in one only). */
export function fingerprintDiff(logged: Fingerprint, now: Fingerprint): string[] {
  const names = new Set([...Object.keys(logged.files), ...Object.keys(now.files)]);
  return [...names].sort().filter((n) => logged.files[n] !== now.files[n]).map((n) =>
    !(n in now.files) ? `${n} (in the log, missing now)` : !(n in logged.files) ? `${n} (new)` : n
  );
}

/**
 * The logged command line without the flags the rerun sets itself; with `variantsFrom` (the log, when it
 * recorded conv_variants) the rerun runs the logged kernel variants, whatever the tuning cache holds now.
 */
export function replayArgs(
  argv: string[],
  runs: number,
  seed: number,
  logDir: string,
  variantsFrom?: string,
): string[] {
  const drop = new Set(["--runs", "--log-dir", "--save-weights", "--seed", "--variants"]);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [flag] = argv[i].split("=");
    if (drop.has(flag)) {
      if (!argv[i].includes("=")) i++; // skip its value
      continue;
    }
    out.push(argv[i]);
  }
  const pin = variantsFrom === undefined ? [] : ["--variants", variantsFrom];
  return [...out, "--runs", String(runs), "--seed", String(seed), "--log-dir", logDir, ...pin];
}

/** Per run: does the rerun give the logged accuracies (and weights, when logged) bit for bit? One line each. */
export function compareRuns(logged: RunLog[], rerun: RunLog[]): { ok: boolean; lines: string[] } {
  let ok = true;
  const lines = logged.map((want, i) => {
    const got = rerun[i];
    const diffs: string[] = [];
    if (!got) diffs.push("did not run");
    else {
      want.epochs.forEach((e, k) => {
        const g = got.epochs[k];
        if (!g || !Object.is(g.val_acc, e.val_acc)) {
          diffs.push(`epoch ${k} val_acc ${g?.val_acc} != ${e.val_acc}`);
        }
      });
      if (!Object.is(got.tta_val_acc, want.tta_val_acc)) {
        diffs.push(`tta_val_acc ${got.tta_val_acc} != ${want.tta_val_acc}`);
      }
      if (want.weights_sha256 !== undefined && got.weights_sha256 !== want.weights_sha256) {
        diffs.push(
          `weights_sha256 ${got.weights_sha256?.slice(0, 12)}... != ${want.weights_sha256.slice(0, 12)}...`,
        );
      }
    }
    if (diffs.length) ok = false;
    return `run ${i} (seed ${want.seed}): ${diffs.length ? `DIFFERS: ${diffs.join("; ")}` : "same bits"}`;
  });
  return { ok, lines };
}

function readLog(path: string): ExperimentLog {
  let log: ExperimentLog;
  try {
    log = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new Error(`${path}: not a readable JSON log (${(e as Error).message.split("\n")[0]})`);
  }
  for (const key of ["experiment", "code", "argv", "fingerprint", "runs"] as const) {
    if (!(key in log)) {
      throw new Error(`${path}: no "${key}" key; logs written before reproduce existed cannot be replayed`);
    }
  }
  return log;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { runs: { type: "string" }, help: { type: "boolean" } },
    allowPositionals: true,
  });
  if (values.help || positionals.length !== 1) {
    console.error(
      "usage: deno task reproduce LOG.json [--runs N]   (rerun a logged experiment, compare its accuracies)",
    );
    return values.help ? 0 : 2;
  }
  const log = readLog(positionals[0]);
  const runs = values.runs === undefined ? log.runs.length : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > log.runs.length) {
    throw new Error(
      `--runs ${values.runs}: expected 1..${log.runs.length} (the log has ${log.runs.length} runs)`,
    );
  }
  for (const f of fingerprintDiff(log.fingerprint, fingerprint())) {
    console.error(`warning: ${f} differs from the logged run's; the results may differ`);
  }
  const expFile = join(ROOT, log.experiment);
  const tmp = join(dirname(expFile), `.reproduce-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.ts`);
  const logDir = await Deno.makeTempDir({ prefix: "airbench-reproduce-" });
  try {
    Deno.writeTextFileSync(tmp, log.code);
    const pin = log.conv_variants === undefined ? undefined : positionals[0];
    const args = replayArgs(log.argv, runs, log.runs[0].seed, logDir, pin);
    console.error(`reproducing ${log.experiment} ${args.join(" ")}`);
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", tmp, ...args],
      stdout: "inherit",
      stderr: "inherit",
    });
    const r = await cmd.output();
    const files = [...Deno.readDirSync(logDir)].filter((e) => e.name.endsWith(".json"));
    if (files.length !== 1) throw new Error(`the rerun wrote no log (exit status ${r.code})`);
    const rerun = JSON.parse(Deno.readTextFileSync(join(logDir, files[0].name))) as ExperimentLog;
    const { ok, lines } = compareRuns(log.runs.slice(0, runs), rerun.runs);
    for (const l of lines) console.log(l);
    console.log(ok ? "reproduced: every compared value is the same, bit for bit" : "NOT reproduced");
    return ok ? 0 : 1;
  } finally {
    Deno.removeSync(tmp);
    Deno.removeSync(logDir, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
