// The HTML report of one or more training logs: one self-contained page (inline SVG and CSS, no scripts, no
// fonts, nothing fetched). Pure: it takes parsed logs and returns a string (no Deno APIs, no DOM), so a
// browser page can build the same report. `lib/cli/report.ts` at the root is the command line around it.

import {
  dotChart,
  escapeXml,
  finiteExtent,
  lineChart,
  PALETTE,
  percentFormat,
  type Series,
} from "./charts.ts";

/** One row of a run's per-epoch table; every field may be missing (older or partial logs). */
export interface EpochRow {
  run?: number | string;
  epoch?: number | string;
  train_loss?: number | null;
  train_acc?: number | null;
  val_acc?: number | null;
  total_time_seconds?: number | null;
  [key: string]: unknown;
}

export interface RunEntry {
  run?: number;
  seed?: number;
  epochs?: EpochRow[];
  tta_val_acc?: number | null;
  total_time_seconds?: number | null;
  error?: string;
  [key: string]: unknown;
}

/** The parts of a main.ts log (lib/train/session.ts's ExperimentLog) the report reads; the rest is ignored. */
export interface TrainingLog {
  config: Record<string, unknown>;
  runs: RunEntry[];
  experiment?: string;
  argv?: string[];
  code?: string;
  fingerprint?: {
    commit?: string | null;
    dirty?: boolean | null;
    dirty_files?: string[] | null;
    [key: string]: unknown;
  };
  adapter?: Record<string, unknown>;
  precision?: string;
  conv_variant?: string;
  status?: string;
  mean?: number | null;
  std?: number | null;
  error?: string;
  [key: string]: unknown;
}

export interface NamedLog {
  /** How the log is called in legends and tables (see displayNames). */
  name: string;
  /** Where it was read from, shown in the summary; optional. */
  source?: string;
  log: TrainingLog;
}

export interface ReportOptions {
  title?: string;
  /** When the report was made, shown under the title (a string so the output is reproducible in tests). */
  generated?: string;
}

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** Why `x` is not a training log (a short phrase), or null when it is one the report can draw. */
export function checkTrainingLog(x: unknown): string | null {
  if (!isObject(x)) {
    return `not a training log: the JSON is ${Array.isArray(x) ? "an array" : typeof x}, not an object`;
  }
  if (!Array.isArray(x.runs)) return `not a training log: no "runs" array`;
  if (!isObject(x.config)) return `not a training log: no "config" object`;
  for (let i = 0; i < x.runs.length; i++) {
    const r = x.runs[i];
    if (!isObject(r)) return `not a training log: runs[${i}] is not an object`;
    if (r.epochs !== undefined && !Array.isArray(r.epochs)) {
      return `not a training log: runs[${i}].epochs is not an array`;
    }
    const bad = ((r.epochs ?? []) as unknown[]).findIndex((e) => !isObject(e));
    if (bad >= 0) return `not a training log: runs[${i}].epochs[${bad}] is not an object`;
  }
  return null;
}

/**
 * Short unique names for log paths: the file name without ".json", with as many parent folders as it takes to
 * tell equal file names apart.
 */
export function displayNames(paths: readonly string[]): string[] {
  const parts = paths.map((p) => p.replace(/\\/g, "/").replace(/\.json$/i, "").split("/").filter(Boolean));
  const depth = parts.map(() => 1);
  for (let round = 0; round < 64; round++) {
    const names = parts.map((p, i) => p.slice(-depth[i]).join("/"));
    let changed = false;
    names.forEach((n, i) => {
      if (names.indexOf(n) !== names.lastIndexOf(n) && depth[i] < parts[i].length) {
        depth[i]++;
        changed = true;
      }
    });
    if (!changed) {
      // Still equal (the same file twice): number them.
      const seen = new Map<string, number>();
      return names.map((n) => {
        const k = (seen.get(n) ?? 0) + 1;
        seen.set(n, k);
        return names.indexOf(n) !== names.lastIndexOf(n) ? `${n} (${k})` : n;
      });
    }
  }
  return paths.slice();
}

/** How deep flattenConfig splits nested objects into keys; deeper ones are one key whose value is their JSON. */
export const MAX_CONFIG_DEPTH = 16;

/**
 * A nested config as flat keys a.b.c; arrays, scalars, empty objects and objects nested deeper than
 * MAX_CONFIG_DEPTH are leaves, written as JSON (so a pathological log cannot exhaust the call stack).
 */
export function flattenConfig(obj: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (o: Record<string, unknown>, prefix: string, depth: number) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (isObject(v) && Object.keys(v).length && depth < MAX_CONFIG_DEPTH) walk(v, key, depth + 1);
      else out[key] = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
    }
  };
  walk(obj, "", 1);
  return out;
}

export interface ConfigDiff {
  /** The keys whose value is not the same in every log (missing counts as a value), in first-seen order. */
  rows: { key: string; values: (string | undefined)[] }[];
  /** How many keys are equal in all logs (not in rows). */
  equal: number;
}

/** The keys whose value differs between flat key → value maps (a missing key counts as a value). */
export function diffFlat(flats: readonly Record<string, string>[]): ConfigDiff {
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const f of flats) {
    for (const k of Object.keys(f)) {
      if (!seen.has(k)) {
        seen.add(k);
        keys.push(k);
      }
    }
  }
  const rows: ConfigDiff["rows"] = [];
  let equal = 0;
  for (const key of keys) {
    const values = flats.map((f) => (key in f ? f[key] : undefined));
    if (values.every((v) => v === values[0])) equal++;
    else rows.push({ key, values });
  }
  return { rows, equal };
}

/** The flattened config keys that differ between the logs. */
export function configDiff(logs: readonly NamedLog[]): ConfigDiff {
  return diffFlat(logs.map((l) => flattenConfig(l.log.config)));
}

/** 32-bit FNV-1a of a string, in hex: a short tag that tells two texts apart. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** What ran besides the config (the experiment file and its text, the adapter, the precision, the commit). */
export function contextFields(log: TrainingLog): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v: unknown) => {
    if (v !== undefined && v !== null && v !== "") out[k] = typeof v === "string" ? v : JSON.stringify(v);
  };
  put("experiment", log.experiment);
  if (typeof log.code === "string") {
    out.code = `${log.code.split("\n").length} lines, FNV-1a ${fnv1a(log.code)}`;
  }
  put("precision", log.precision);
  put("conv_variant", log.conv_variant);
  if (isObject(log.adapter)) put("adapter.name", log.adapter.name);
  if (isObject(log.fingerprint)) {
    put("fingerprint.commit", log.fingerprint.commit);
    put("fingerprint.dirty", log.fingerprint.dirty);
    const files = log.fingerprint.dirty_files;
    if (Array.isArray(files)) out["fingerprint.dirty_files"] = files.length ? files.join(", ") : "none";
  }
  return out;
}

/**
 * What every accuracy of a run that evaluated a subset of the test set carries ("test 1000 of 10000"), so a
 * subset's figure is never taken for the benchmark's; "" for the whole test set. `config` is a log's config.
 */
export function testNote(config: { testN?: unknown; testOf?: unknown } | undefined): string {
  const n = config?.testN, of = config?.testOf;
  return typeof n === "number" && typeof of === "number" && n < of ? `test ${n} of ${of}` : "";
}

/** An argv as its flags: "--k v" or "--k=v" entries (a value that is not a flag joins its flag). */
export function argvFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = String(argv[i]);
    const next = argv[i + 1];
    if (a.startsWith("--") && !a.includes("=") && next !== undefined && !String(next).startsWith("--")) {
      out.push(`${a} ${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Names for legends and rows that lead with what ran: the experiment file, then the flags not given alike to
 * every log (a single log: all its flags), then `names[i]` (the log's file, for telling runs apart): "main.ts
 * --lr 6 · logs/2026-...".
 */
export function describeLogs(logs: readonly TrainingLog[], names: readonly string[]): string[] {
  const flags = logs.map((l) => argvFlags(Array.isArray(l.argv) ? l.argv : []));
  // one log: all its flags; several: those not given alike to all
  const common = flags.length > 1 ? flags.reduce((a, f) => a.filter((x) => f.includes(x))) : [];
  return logs.map((l, i) => {
    const differ = flags[i].filter((x) => !common.includes(x));
    const what = [typeof l.experiment === "string" ? l.experiment : "?", ...differ].join(" ");
    const note = testNote(l.config);
    return `${what}${note ? ` (${note})` : ""} · ${names[i]}`;
  });
}

/**
 * A small unified diff of two texts by lines (longest common subsequence; `context` lines around each
 * change), "" when they are equal. Texts over `maxLines` lines are not diffed (one line says so).
 */
export function lineDiff(a: string, b: string, context = 2, maxLines = 3000): string {
  if (a === b) return "";
  const x = a.split("\n"), y = b.split("\n");
  if (x.length > maxLines || y.length > maxLines) {
    return `(${x.length} and ${y.length} lines: too long to diff here)`;
  }
  // lcs[i][j]: length of the longest common subsequence of x[i..] and y[j..]
  const lcs = Array.from({ length: x.length + 1 }, () => new Uint16Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops: { t: " " | "-" | "+"; line: string; ai: number; bi: number }[] = [];
  let i = 0, j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) ops.push({ t: " ", line: x[i], ai: i++, bi: j++ });
    else if (i < x.length && (j >= y.length || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push({ t: "-", line: x[i], ai: i++, bi: j });
    } else ops.push({ t: "+", line: y[j], ai: i, bi: j++ });
  }
  return diffHunks(ops, context);
}

/** The changed ops with `context` unchanged lines around them, as @@ hunks. */
function diffHunks(ops: { t: string; line: string; ai: number; bi: number }[], context: number): string {
  const keep = ops.map(() => false);
  ops.forEach((o, k) => {
    if (o.t === " ") return;
    for (let d = Math.max(0, k - context); d <= Math.min(ops.length - 1, k + context); d++) keep[d] = true;
  });
  const out: string[] = [];
  for (let k = 0; k < ops.length; k++) {
    if (!keep[k]) continue;
    let end = k;
    while (end + 1 < ops.length && keep[end + 1]) end++;
    const hunk = ops.slice(k, end + 1);
    const na = hunk.filter((o) => o.t !== "+").length, nb = hunk.filter((o) => o.t !== "-").length;
    out.push(`@@ -${hunk[0].ai + 1},${na} +${hunk[0].bi + 1},${nb} @@`);
    for (const o of hunk) out.push(`${o.t}${o.line}`);
    k = end;
  }
  return out.join("\n");
}

export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  // Sample standard deviation, as torch.std and lib/report/console.ts; 0 for one run.
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std };
}

const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : NaN);

/** The finished runs' TTA accuracies (runs with an error left out, as main.ts's mean). */
function ttaValues(log: TrainingLog): { values: number[]; labels: string[] } {
  const values: number[] = [], labels: string[] = [];
  log.runs.forEach((r, i) => {
    const v = num(r.tta_val_acc);
    if (r.error === undefined && Number.isFinite(v)) {
      values.push(v);
      labels.push(`${runLabel(r, i)}: ${pct(v)}`);
    }
  });
  return { values, labels };
}

function runLabel(r: RunEntry, i: number): string {
  const run = typeof r.run === "number" ? r.run : i;
  return `run ${run}${typeof r.seed === "number" ? ` (seed ${r.seed})` : ""}`;
}

const pct = (v: number, d = 2) => (Number.isFinite(v) ? `${(v * 100).toFixed(d)}%` : "–");

/** A duration in a unit that suits it. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "–";
  if (s < 90) return `${s.toPrecision(3)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(2)} h`;
}

function timeUnit(maxSeconds: number): { div: number; name: string } {
  if (maxSeconds >= 5400) return { div: 3600, name: "hours" };
  if (maxSeconds >= 120) return { div: 60, name: "minutes" };
  return { div: 1, name: "seconds" };
}

function epochCurves(logs: readonly NamedLog[], field: "val_acc" | "train_loss"): Series[] {
  const out: Series[] = [];
  logs.forEach((l, li) => {
    const color = PALETTE[li % PALETTE.length];
    l.log.runs.forEach((r, ri) => {
      const points = (r.epochs ?? []).map((e, k) => {
        const x = typeof e.epoch === "number" ? e.epoch : k;
        return [x, num(e[field])] as [number, number];
      });
      if (points.length) {
        out.push({ name: l.name, color, points, title: `${l.name} · ${runLabel(r, ri)}`, opacity: 0.75 });
      }
    });
  });
  return out;
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#222;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif}
main{max-width:1160px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 2px}
h2{font-size:16px;margin:0 0 10px}
.meta{color:#666;margin:0 0 16px}
section{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:14px 16px;margin:0 0 16px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px;margin:0 0 16px}
.grid2>figure{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:8px}
figure{margin:0}
svg.chart{display:block;width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
th{font-weight:600;color:#444;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:nowrap}
td.val{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;word-break:break-word}
.sw{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600}
.done{background:#e3f4e6;color:#1d6b2c}.failed{background:#fde5e5;color:#9b1c1c}
.running,.interrupted,.unknown{background:#fdf2d8;color:#7a5a00}
.absent{color:#999;font-style:italic}
tr.group th{background:#fff;color:#666;padding-top:14px;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.note{color:#666;font-size:13px;margin:8px 0 0}
.problems{color:#9b1c1c;margin:8px 0 0;padding-left:18px;font-size:13px}
details{margin:6px 0}
summary{cursor:pointer;font-weight:600}
.src{color:#888;font-size:12px;overflow-wrap:anywhere}
pre.diff{overflow-x:auto;background:#f6f7f9;padding:8px;font-size:12px}
code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
`;

const dash = (s: string) => (s ? escapeXml(s) : "–");

function swatch(color: string): string {
  return `<span class="sw" style="background:${escapeXml(color)}"></span>`;
}

function summaryTable(logs: readonly NamedLog[]): string {
  const head = [
    "log",
    "experiment",
    "status",
    "runs",
    "TTA accuracy",
    "time per run",
    "adapter",
    "precision",
    "code",
  ];
  const rows = logs.map((l, i) => {
    const log = l.log;
    const { values } = ttaValues(log);
    const { mean, std } = meanStd(values);
    const times = log.runs.map((r) => num(r.total_time_seconds)).filter(Number.isFinite);
    const status = typeof log.status === "string" ? log.status : "unknown";
    const statusCls = ["done", "failed", "running", "interrupted"].includes(status) ? status : "unknown";
    const failed = log.runs.filter((r) => r.error !== undefined).length;
    const adapter = log.adapter && typeof log.adapter.name === "string"
      ? `${log.adapter.name}${log.adapter.isCpu === true ? " (CPU)" : ""}`
      : "";
    const fp = log.fingerprint;
    const commit = fp && typeof fp.commit === "string"
      ? fp.commit.slice(0, 7) + (fp.dirty ? " (dirty)" : "")
      : "";
    const tta = values.length
      ? `${pct(mean)}${values.length > 1 ? ` ± ${(std * 100).toFixed(2)}` : ""}`
      : "–";
    const cells = [
      `${swatch(PALETTE[i % PALETTE.length])}<b>${escapeXml(l.name)}</b>${
        l.source && l.source !== l.name
          ? `<div class="src">${escapeXml(l.source).replace(/\//g, "/<wbr>")}</div>`
          : ""
      }`,
      dash(typeof log.experiment === "string" ? log.experiment : ""),
      `<span class="badge ${statusCls}">${escapeXml(status)}</span>`,
      `${log.runs.length}${failed ? ` <span class="failed badge">${failed} failed</span>` : ""}`,
      tta,
      times.length ? formatSeconds(meanStd(times).mean) : "–",
      dash(adapter),
      dash(typeof log.precision === "string" ? log.precision : ""),
      commit ? `<code>${escapeXml(commit)}</code>` : "–",
    ];
    return `<tr>${
      cells.map((c, k) => `<td${k === 3 || k === 4 || k === 5 ? ' class="num"' : ""}>${c}</td>`).join("")
    }</tr>`;
  });
  const problems = logs.flatMap((l) => {
    const out: string[] = [];
    const int = l.log.interrupted;
    if (isObject(int)) {
      out.push(
        `${l.name}: interrupted${typeof int.signal === "string" ? ` by ${int.signal}` : ""}${
          typeof int.run === "number" ? ` in run ${int.run}` : ""
        }${typeof int.epochs_completed === "number" ? ` after ${int.epochs_completed} epochs` : ""}`,
      );
    }
    if (typeof l.log.error === "string" && l.log.error) out.push(`${l.name}: ${l.log.error}`);
    else {
      l.log.runs.forEach((r, i) => {
        if (typeof r.error === "string") out.push(`${l.name}, ${runLabel(r, i)}: ${r.error}`);
      });
    }
    return out;
  });
  return `<section><h2>Summary</h2><table class="summary"><thead><tr>${
    head.map((h, k) => `<th${k === 3 || k === 4 || k === 5 ? ' class="num"' : ""}>${h}</th>`).join("")
  }</tr></thead><tbody>${rows.join("")}</tbody></table>${
    problems.length
      ? `<ul class="problems">${problems.map((p) => `<li>${escapeXml(p)}</li>`).join("")}</ul>`
      : ""
  }<p class="note">TTA accuracy: mean ± sample standard deviation (percentage points) of the runs that finished.</p></section>`;
}

function configTable(logs: readonly NamedLog[]): string {
  const one = logs.length === 1;
  const { rows, equal } = configDiff(logs);
  const context = diffFlat(logs.map((l) => contextFields(l.log))).rows;
  const title = one ? "Config" : "Config differences";
  if (!one && rows.length === 0 && context.length === 0) {
    return `<section><h2>${title}</h2><p class="note">The ${equal} config keys are the same in all logs.</p></section>`;
  }
  const head = `<tr><th>key</th>${
    logs.map((l, i) => `<th>${swatch(PALETTE[i % PALETTE.length])}${escapeXml(l.name)}</th>`).join("")
  }</tr>`;
  const list = one
    ? Object.entries(flattenConfig(logs[0].log.config)).map(([key, v]) => ({ key, values: [v] }))
    : rows;
  const tr = (r: { key: string; values: (string | undefined)[] }, cls: string) =>
    `<tr class="${cls}"><td class="key">${escapeXml(r.key)}</td>${
      r.values.map((
        v,
      ) => (v === undefined ? `<td class="val absent">absent</td>` : `<td class="val">${escapeXml(v)}</td>`))
        .join("")
    }</tr>`;
  let body = list.map((r) => tr(r, "diff")).join("");
  if (!one && rows.length === 0) {
    body += `<tr><td colspan="${logs.length + 1}" class="absent">no config key differs</td></tr>`;
  }
  if (context.length) {
    body += `<tr class="group"><th colspan="${logs.length + 1}">outside config (log fields)</th></tr>`;
    body += context.map((r) => tr(r, "context")).join("");
  }
  const note = one
    ? "One log: every config key."
    : `${rows.length} config key${rows.length === 1 ? "" : "s"} differ; the ${equal} equal in all logs ${
      equal === 1 ? "is" : "are"
    } not shown.`;
  return `<section><h2>${title}</h2><table class="config"><thead>${head}</thead><tbody>${body}</tbody></table><p class="note">${note}</p></section>`;
}

/** The experiment code of every log that differs from the first log's, as a unified diff against it. */
function codeDiffs(logs: readonly NamedLog[]): string {
  const base = logs[0];
  if (logs.length < 2 || typeof base.log.code !== "string") return "";
  const parts: string[] = [];
  logs.slice(1).forEach((l, k) => {
    if (typeof l.log.code !== "string" || l.log.code === base.log.code) return;
    const diff = lineDiff(base.log.code!, l.log.code);
    const lines = diff.split("\n");
    const shown = lines.length > 400 ? [...lines.slice(0, 400), `(${lines.length - 400} more lines)`] : lines;
    parts.push(
      `<details open><summary>${swatch(PALETTE[(k + 1) % PALETTE.length])}${escapeXml(l.name)} against ${
        escapeXml(base.name)
      }</summary><pre class="diff">${escapeXml(shown.join("\n"))}</pre></details>`,
    );
  });
  return parts.length ? `<section><h2>Code differences</h2>${parts.join("")}</section>` : "";
}

function runsDetails(logs: readonly NamedLog[]): string {
  const parts = logs.map((l, i) => {
    const head = ["run", "seed", "epochs", "last val_acc", "TTA val_acc", "total time", "error"];
    const rows = l.log.runs.map((r, ri) => {
      const eps = r.epochs ?? [];
      const last = eps.length ? num(eps[eps.length - 1].val_acc) : NaN;
      const cells = [
        typeof r.run === "number" ? String(r.run) : String(ri),
        typeof r.seed === "number" ? String(r.seed) : "",
        String(eps.length),
        pct(last),
        pct(num(r.tta_val_acc)),
        formatSeconds(num(r.total_time_seconds)),
        escapeXml(typeof r.error === "string" ? r.error : ""),
      ];
      return `<tr>${cells.map((c, k) => `<td${k < 6 ? ' class="num"' : ""}>${c}</td>`).join("")}</tr>`;
    });
    const argv = Array.isArray(l.log.argv)
      ? `<p class="note">command: <code>${
        escapeXml([l.log.experiment ?? "main.ts", ...l.log.argv.map(String)].join(" "))
      }</code></p>`
      : "";
    return `<details${logs.length === 1 ? " open" : ""}><summary>${swatch(PALETTE[i % PALETTE.length])}${
      escapeXml(l.name)
    }: ${l.log.runs.length} run${l.log.runs.length === 1 ? "" : "s"}</summary>${argv}<table><thead><tr>${
      head.map((h, k) => `<th${k < 6 ? ' class="num"' : ""}>${h}</th>`).join("")
    }</tr></thead><tbody>${rows.join("")}</tbody></table></details>`;
  });
  return `<section><h2>Runs</h2>${parts.join("")}</section>`;
}

/** The whole page. */
export function reportHtml(logs: readonly NamedLog[], opts: ReportOptions = {}): string {
  const names = logs.map((l) => l.name).join(", ");
  const title = opts.title ??
    `Training report: ${names.length <= 70 ? names : `${logs.length} logs`}`;
  const colors = logs.map((_, i) => PALETTE[i % PALETTE.length]);

  const valAcc = lineChart({
    title: "Validation accuracy per epoch",
    xLabel: "epoch",
    yLabel: "validation accuracy (%)",
    series: epochCurves(logs, "val_acc"),
    yFormat: percentFormat,
    xInteger: true,
  });
  const loss = lineChart({
    title: "Training loss per epoch (last batch)",
    xLabel: "epoch",
    yLabel: "training loss",
    series: epochCurves(logs, "train_loss"),
    xInteger: true,
  });
  const tta = dotChart({
    title: "Final accuracy with test-time augmentation, per run",
    xLabel: "TTA test accuracy (%)   ·   dot: one run, bar: mean ± std",
    groups: logs.map((l, i) => ({ name: l.name, color: colors[i], ...ttaValues(l.log) })),
    format: percentFormat,
    valueFormat: (v) => `${(v * 100).toFixed(2)}`,
    summary: "meanStd",
  });
  const allTimes = logs.flatMap((l) =>
    l.log.runs.map((r) => num(r.total_time_seconds)).filter(Number.isFinite)
  );
  const unit = timeUnit(finiteExtent(allTimes)?.[1] ?? 0);
  const timing = dotChart({
    title: "Time per run (whitening + training + TTA)",
    xLabel: `${unit.name} per run   ·   dot: one run, bar: mean`,
    groups: logs.map((l, i) => {
      const values: number[] = [], labels: string[] = [];
      l.log.runs.forEach((r, ri) => {
        const t = num(r.total_time_seconds);
        if (Number.isFinite(t)) {
          [values.push(t / unit.div), labels.push(`${runLabel(r, ri)}: ${formatSeconds(t)}`)];
        }
      });
      return { name: l.name, color: colors[i], values, labels };
    }),
    summary: "mean",
    includeZero: true,
    bars: true,
    valueFormat: (v) => `mean ${formatSeconds(v * unit.div)}`,
  });

  const runs = logs.reduce((n, l) => n + l.log.runs.length, 0);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeXml(title)}</title><style>${CSS}</style></head>
<body><main>
<h1>${escapeXml(title)}</h1>
<p class="meta">${logs.length} log${logs.length === 1 ? "" : "s"}, ${runs} run${runs === 1 ? "" : "s"}${
    opts.generated ? ` · generated ${escapeXml(opts.generated)}` : ""
  }</p>
${summaryTable(logs)}
<div class="grid2"><figure>${valAcc}</figure><figure>${loss}</figure></div>
<section><figure>${tta}</figure></section>
<section><figure>${timing}</figure></section>
${configTable(logs)}
${codeDiffs(logs)}
${runsDetails(logs)}
</main></body></html>
`;
}
