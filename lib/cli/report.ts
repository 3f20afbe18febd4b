// `deno run -A lib/cli/report.ts LOG... [--out FILE]`: one self-contained HTML page (inline SVG and CSS,
// nothing fetched) from one or more JSON logs of main.ts: validation accuracy and training loss per epoch for
// every run, the spread of the final TTA accuracies, time per run, and the config keys that differ between
// the logs.
//
// Every log is read and checked before anything is written; a bad one is named in a one-line error (exit 2).
// The page is written atomically (temp file + rename), by default to logs/report-<timestamp>.html, and its
// path is printed.

import { parseArgs } from "node:util";
import { writeFileAtomic } from "../io/atomic.ts";
import {
  checkTrainingLog,
  describeLogs,
  displayNames,
  type NamedLog,
  reportHtml,
  type TrainingLog,
} from "../report/html.ts";

const USAGE = "usage: deno run -A lib/cli/report.ts LOG.json... [--out FILE.html]";

class UsageError extends Error {}

/** Reads and checks one log; throws a UsageError naming the file and what is wrong with it. */
export function readLog(path: string): TrainingLog {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.IsADirectory
      ? "is a folder, not a log file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : `cannot read it (${firstLine(e)})`;
    throw new UsageError(`${path}: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${path}: not JSON (${firstLine(e)})`);
  }
  const why = checkTrainingLog(json);
  if (why) throw new UsageError(`${path}: ${why}`);
  return json as TrainingLog;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** The command line; returns the exit status (0 written, 2 bad arguments or logs, 1 the page not written). */
export function main(args: string[]): number {
  let values: { out?: string; help?: boolean }, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { out: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    }));
  } catch (e) {
    console.error(`error: ${firstLine(e)}; ${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(
      `${USAGE}\n\nWrites one HTML page comparing the logs (default: logs/report-<timestamp>.html).`,
    );
    return 0;
  }
  if (!positionals.length) {
    console.error(`error: no logs given; ${USAGE}`);
    return 2;
  }
  const stamp = new Date().toISOString();
  const out = values.out ?? `logs/report-${stamp.replace(/[:.]/g, "-")}.html`;
  let logs: TrainingLog[];
  try {
    logs = positionals.map(readLog);
    try {
      if (Deno.statSync(out).isDirectory) {
        throw new UsageError(`--out ${out}: is a folder; name an .html file`);
      }
    } catch (e) {
      if (e instanceof UsageError) throw e;
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}`);
    return 2;
  }
  const names = describeLogs(logs, displayNames(positionals));
  const named: NamedLog[] = logs.map((log, i) => ({ name: names[i], source: positionals[i], log }));
  const html = reportHtml(named, { generated: stamp.replace("T", " ").replace(/\.\d+Z$/, " UTC") });
  try {
    writeFileAtomic(out, html);
  } catch (e) {
    console.error(`error: --out ${out}: cannot write it (${firstLine(e)})`);
    return 1;
  }
  console.log(out);
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
