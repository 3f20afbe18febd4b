// `deno task reproduce LOG [--runs N] [--trust]`: rerun what a log says ran, and check it gives the same
// accuracies.
//
// A log is untrusted input (logs travel: issues, papers, chat), so before anything runs or is written:
// - the log's keys are checked, and its `experiment` must name a .ts file inside the project (relative, no
//   "..", its folder really inside the project);
// - the log's `code` is compared with that file in the working tree: the same text runs the file itself,
//   without asking; other text (or a file this tree lacks) is shown as a short diff and runs only with
//   --trust (or a yes on a terminal), from a temporary file beside the experiment file (so its imports
//   resolve).
// Every library or kernel file whose SHA-256 differs from the log's fingerprint is named in a warning (lib/
// and kernels/ are this tree's own code, trusted as the checkout is). The logged command line runs again
// with the logged seed (the first N runs only with --runs N) and the logged convolution kernel variants
// (--variants LOG), in a child Deno with narrow permissions (childPermissions: read the project, the data and
// the log; write a fresh temporary log folder only; no run, net, ffi or sys); SIGINT / SIGTERM stop the child
// and remove the temporary files. Each run's tta_val_acc, every epoch's val_acc and the digest of the final
// weights (weights_sha256, in logs that have it) are compared with the log bit for bit.
// Exit status 0 only when every compared value matches; 1 when one differs or the rerun failed; 2 for bad
// input (a bad log, code not trusted); 130 / 143 when interrupted.

import { dirname, isAbsolute, join, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { defaultDataDir } from "../data/cifar_cache.ts";
import { joinNegativeValues } from "../io/flags.ts";
import type { ExperimentLog, RunLog } from "../train/session.ts";
import { type Fingerprint, fingerprint } from "../io/runlog.ts";
import { ROOT } from "../root.ts";

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

/** Text from a log made safe for a terminal: control characters (escape sequences) shown as \u{..}. */
export function printable(s: string, max = 200): string {
  // deno-lint-ignore no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

const show = (v: unknown) => printable(JSON.stringify(v) ?? String(v), 120);

/**
 * The file a log's `experiment` names, when it is a .ts file inside `root`: a relative path without "." or
 * ".." segments whose folder, links resolved, is inside the project. Throws one line otherwise.
 */
export function experimentFile(name: unknown, root = ROOT): string {
  const bad = (why: string): never => {
    throw new Error(
      `"experiment" ${show(name)} ${why}; a log can name only an experiment file of this project`,
    );
  };
  if (typeof name !== "string" || !name.endsWith(".ts")) bad("is not the path of a .ts file");
  const path = name as string;
  const parts = path.split(/[\\/]/);
  // deno-lint-ignore no-control-regex
  if (isAbsolute(path) || /^[a-zA-Z]:/.test(path) || /[\u0000-\u001f,]/.test(path)) {
    bad("is not a plain relative path");
  }
  if (parts.some((p) => p === "" || p === "." || p === "..")) bad('has an empty, "." or ".." part');
  const file = resolve(root, path);
  let realDir = "";
  try {
    realDir = Deno.realPathSync(dirname(file));
  } catch {
    bad("is in a folder this project does not have");
  }
  const realRoot = Deno.realPathSync(root);
  if (realDir !== realRoot && !realDir.startsWith(realRoot + sep)) bad("leads outside the project");
  return file;
}

/** The log checked for what reproduce reads (a log is untrusted input). Throws one line naming the key. */
export function checkLog(path: string, log: unknown): ExperimentLog {
  const fail = (why: string): never => {
    throw new Error(`${path}: ${why}`);
  };
  if (typeof log !== "object" || log === null || Array.isArray(log)) fail("not a JSON object (a run log)");
  const l = log as Record<string, unknown>;
  for (const key of ["experiment", "code", "argv", "fingerprint", "runs"]) {
    if (!Object.hasOwn(l, key)) {
      fail(`no "${key}" key; logs written before reproduce existed cannot be replayed`);
    }
  }
  try {
    experimentFile(l.experiment);
  } catch (e) {
    fail((e as Error).message);
  }
  if (typeof l.code !== "string") fail(`"code" is ${show(l.code)}, not the experiment file's text`);
  if (!Array.isArray(l.argv) || !l.argv.every((a) => typeof a === "string")) {
    fail(`"argv" is ${show(l.argv)}, not a list of strings (the logged command line)`);
  }
  const fp = l.fingerprint as Partial<Fingerprint> | null;
  if (typeof fp !== "object" || fp === null || typeof fp.files !== "object" || fp.files === null) {
    fail(
      `"fingerprint" is ${show(fp)}: the log does not say which library code ran, so it cannot be replayed`,
    );
  }
  const runs = l.runs as Partial<RunLog>[];
  if (!Array.isArray(runs) || runs.length === 0) {
    fail(
      `"runs" is ${show(runs)}: the logged invocation (status ${show(l.status)}) finished no run to compare`,
    );
  }
  runs.forEach((r, i) => {
    if (!Number.isSafeInteger(r?.seed) || !Array.isArray(r?.epochs)) {
      fail(`"runs"[${i}] has no integer "seed" and "epochs" list; it is not a run of a run log`);
    }
  });
  return l as unknown as ExperimentLog;
}

function readLog(path: string): ExperimentLog {
  let log: unknown;
  try {
    log = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new Error(`${path}: not a readable JSON log (${(e as Error).message.split("\n")[0]})`);
  }
  return checkLog(path, log);
}

/**
 * The project files the log's code imports (relative specifiers, resolved from the experiment's folder
 * `dir`) that this tree lacks: a log from before a file moved. Empty when every import is there.
 */
export function missingImports(code: string, dir: string): string[] {
  const missing: string[] = [];
  for (const m of code.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
    try {
      Deno.statSync(join(dir, m[1]));
    } catch {
      if (!missing.includes(m[1])) missing.push(m[1]);
    }
  }
  return missing;
}

/**
 * How the log's code differs from the experiment file in the tree (null: the same text; `current` null: the
 * tree has no such file): the changed block's size and its first `max` removed and added lines.
 */
export function codeChanges(current: string | null, logged: string, name: string, max = 8): string[] | null {
  if (current === logged) return null;
  const a = current === null ? [] : current.split("\n");
  const b = logged.split("\n");
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (
    tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) {
    tail++;
  }
  const removed = a.slice(head, a.length - tail);
  const added = b.slice(head, b.length - tail);
  const shown = (sign: string, lines: string[]) => [
    ...lines.slice(0, max).map((l) => `${sign} ${printable(l, 120)}`),
    ...(lines.length > max ? [`${sign} ... (${lines.length - max} more)`] : []),
  ];
  return [
    current === null
      ? `the log's code (${b.length} lines) is not in this tree: ${name} does not exist here`
      : `the log's code differs from ${name} in this tree from line ${head + 1}: ` +
        `${removed.length} line(s) of the file replaced by ${added.length} line(s) of the log`,
    ...shown("-", removed),
    ...shown("+", added),
  ];
}

/**
 * The rerun's Deno permissions: read the project, the data folders and the log, read and write the fresh log
 * folder only, read $AIRBENCH_DATA; never run, net, ffi or sys (the code may be someone else's: even git can
 * run commands through its config), and never a prompt.
 */
export function childPermissions(
  o: { root: string; logDir: string; logPath: string; data: string[] },
): string[] {
  const read = [o.root, o.logDir, o.logPath, ...o.data].map((p) => resolve(p));
  for (const p of read) {
    if (p.includes(",")) {
      throw new Error(`${p}: a path with a comma cannot be granted to the rerun; rename it`);
    }
  }
  return [
    "--no-prompt",
    `--allow-read=${read.join(",")}`,
    `--allow-write=${o.logDir}`,
    "--allow-env=AIRBENCH_DATA",
  ];
}

/** The data folders the rerun may read: the logged --data PATH (if any) and the cache's folder. */
export function dataPaths(argv: string[]): string[] {
  const out = [defaultDataDir()];
  argv.forEach((a, i) => {
    if (a === "--data" && i + 1 < argv.length) out.push(argv[i + 1]);
    else if (a.startsWith("--data=")) out.push(a.slice("--data=".length));
  });
  return out.filter((p) => p !== "");
}

/** Run the log's code? Yes with --trust; on a terminal, ask; else no. */
function trusted(trust: boolean): boolean {
  if (trust) return true;
  if (!Deno.stdin.isTerminal()) return false;
  return confirm("run the log's code (it can read the project and the data, and write a temporary folder)?");
}

/** The rerun in a narrow child; SIGINT / SIGTERM end it and leave no temporary file. Returns the exit status. */
async function rerun(log: ExperimentLog, logPath: string, expFile: string, runs: number): Promise<number> {
  const ownCode = Deno.readTextFileSync(expFile) === log.code; // checked again: the file may have changed
  const script = ownCode
    ? expFile
    : join(dirname(expFile), `.reproduce-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.ts`);
  let child: Deno.ChildProcess | undefined;
  let signal: Deno.Signal | undefined;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) =>
    [sig, () => {
      try {
        child?.kill(signal === undefined ? "SIGTERM" : "SIGKILL"); // a second signal: no more waiting
      } catch { /* already ended */ }
      signal ??= sig;
    }] as const
  );
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  // From here to the child's start nothing awaits: a signal is seen only once the child can be ended.
  const logDir = Deno.makeTempDirSync({ prefix: "airbench-reproduce-" });
  try {
    if (!ownCode) Deno.writeTextFileSync(script, log.code, { createNew: true });
    const pin = log.conv_variants === undefined ? undefined : logPath;
    const args = replayArgs(log.argv, runs, log.runs[0].seed, logDir, pin);
    const perms = childPermissions({ root: ROOT, logDir, logPath, data: dataPaths(log.argv) });
    console.error(printable(`reproducing ${log.experiment} ${args.join(" ")}`, 1000));
    child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...perms, script, ...args],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    if (signal !== undefined) {
      console.error(`interrupted (${signal}): the rerun was stopped and its temporary files removed`);
      return signal === "SIGINT" ? 130 : 143;
    }
    return compareLogs(log.runs.slice(0, runs), logDir, status.code);
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    if (!ownCode) Deno.removeSync(script);
    Deno.removeSync(logDir, { recursive: true });
  }
}

function compareLogs(logged: RunLog[], logDir: string, code: number): number {
  const files = [...Deno.readDirSync(logDir)].filter((e) => e.name.endsWith(".json"));
  let rerun: ExperimentLog | undefined;
  try {
    rerun = files.length === 1 ? JSON.parse(Deno.readTextFileSync(join(logDir, files[0].name))) : undefined;
  } catch { /* an empty or partial log: no runs */ }
  if (!Array.isArray(rerun?.runs)) {
    console.log(
      `NOT reproduced: the rerun failed before it logged a run (exit status ${code}; its error is above)`,
    );
    return 1;
  }
  const { ok, lines } = compareRuns(logged, rerun.runs);
  for (const l of lines) console.log(printable(l, 1000));
  console.log(ok ? "reproduced: every compared value is the same, bit for bit" : "NOT reproduced");
  return ok ? 0 : 1;
}

const USAGE = "usage: deno task reproduce LOG.json [--runs N] [--trust]   " +
  "(rerun a logged experiment, compare its accuracies; --trust: run the log's code even where it differs " +
  "from the experiment file in this tree)";

async function main(): Promise<number> {
  const options = {
    runs: { type: "string" },
    trust: { type: "boolean" },
    help: { type: "boolean" },
  } as const;
  const { values, positionals } = parseArgs({
    args: joinNegativeValues(Deno.args, options),
    options,
    allowPositionals: true,
  });
  if (values.help || positionals.length !== 1) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const logPath = positionals[0];
  const log = readLog(logPath);
  const expFile = experimentFile(log.experiment);
  const runs = values.runs === undefined ? log.runs.length : Number(values.runs);
  if (!/^\d+$/.test(values.runs ?? "1") || runs < 1 || runs > log.runs.length) {
    throw new Error(
      `--runs ${values.runs}: expected 1..${log.runs.length} (the log has ${log.runs.length} runs)`,
    );
  }
  const missing = missingImports(log.code, dirname(expFile));
  if (missing.length) {
    const at = log.fingerprint.commit;
    throw new Error(
      `${logPath}: its code imports ${
        missing.map((m) => printable(m)).join(", ")
      }, which this tree lacks (a file moved ` +
        `since the run); reproduce it in a checkout of the commit it ran at` +
        (at && /^[0-9a-f]{40}$/.test(at)
          ? `: git worktree add ../airbench-${at.slice(0, 8)} ${at}, then deno task reproduce there`
          : ""),
    );
  }
  let current: string | null = null;
  try {
    current = Deno.readTextFileSync(expFile);
  } catch { /* not in this tree */ }
  const changes = codeChanges(current, log.code, log.experiment);
  if (changes) {
    for (const l of changes) console.error(l);
    if (!trusted(values.trust === true)) {
      console.error(
        `error: ${logPath}: its code is not ${log.experiment} as in this tree; read the changes above, then ` +
          "rerun with --trust to run it",
      );
      return 2;
    }
  }
  for (const f of fingerprintDiff(log.fingerprint, fingerprint())) {
    console.error(`warning: ${printable(f)} differs from the logged run's; the results may differ`);
  }
  return await rerun(log, logPath, expFile, runs);
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
}
