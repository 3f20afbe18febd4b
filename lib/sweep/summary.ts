// A sweep's summary from its runs' logs: per configuration n, mean, std and the 95% confidence interval of
// the mean of the final accuracy (tta_val_acc); against the baseline the difference, its 95% interval (Welch)
// and Welch's two-sided p-value; and the runs per configuration needed for 80% power (lib/sweep/stats.ts).
// Pure: the console table and the HTML page are strings (lib/cli/sweep.ts writes them).

import { dotChart, escapeXml, PALETTE, percentFormat } from "../report/charts.ts";
import type { Config, Plan } from "./plan.ts";
import { describe, type Described, pooledStd, POWER_NOTE, runsForPower, type Welch, welch } from "./stats.ts";

/** One planned run as its logs say: the log of its `done` invocation, or the state of the latest one. */
export interface RunResult {
  index: number;
  config: string;
  seed: number;
  status: "done" | "failed" | "interrupted" | "running" | "not started";
  /** The done log (or the latest log), relative to the sweep's folder. */
  log?: string;
  tta_val_acc?: number;
  /** The last epoch's val_acc. */
  val_acc?: number;
  weights_sha256?: string;
  total_time_seconds?: number;
}

export interface ConfigSummary extends Described {
  id: string;
  label: string;
  experiment: string;
  varied: Record<string, string>;
  planned: number;
  values: number[];
  vs_baseline?: Welch & { pooled_std: number; runs_for_power: number };
  /** Runs for 80% power to resolve the spec's `resolve` difference at this configuration's std. */
  runs_to_resolve?: number;
}

export interface SweepSummary {
  sweep: string;
  metric: "tta_val_acc";
  seeds: number[];
  baseline?: string;
  resolve?: number;
  power: string;
  done: number;
  planned: number;
  configs: ConfigSummary[];
  runs: RunResult[];
}

export function summarize(plan: Plan, runs: RunResult[]): SweepSummary {
  const valuesOf = (c: Config) =>
    runs.filter((r) => r.config === c.id && r.status === "done" && Number.isFinite(r.tta_val_acc))
      .map((r) => r.tta_val_acc!);
  const base = plan.configs.find((c) => c.id === plan.baseline);
  const baseValues = base ? valuesOf(base) : [];
  const configs = plan.configs.map((c): ConfigSummary => {
    const values = valuesOf(c);
    const d = describe(values);
    const out: ConfigSummary = {
      id: c.id,
      label: c.label,
      experiment: c.experiment,
      varied: c.varied,
      ...d,
      planned: plan.seeds.length,
      values,
    };
    if (base && c.id !== base.id) {
      const w = welch(values, baseValues);
      const sp = pooledStd(values, baseValues);
      out.vs_baseline = {
        ...w,
        pooled_std: sp,
        runs_for_power: Number.isFinite(sp) ? runsForPower(w.diff, sp) : NaN,
      };
    }
    if (plan.resolve !== undefined) {
      out.runs_to_resolve = Number.isFinite(d.std) ? runsForPower(plan.resolve, d.std) : NaN;
    }
    return out;
  });
  return {
    sweep: plan.name,
    metric: "tta_val_acc",
    seeds: plan.seeds,
    baseline: plan.baseline,
    resolve: plan.resolve,
    power: POWER_NOTE,
    done: runs.filter((r) => r.status === "done").length,
    planned: runs.length,
    configs,
    runs,
  };
}

const pct = (
  v: number | undefined,
  d = 2,
) => (v !== undefined && Number.isFinite(v) ? (v * 100).toFixed(d) : "–");
const signed = (
  v: number,
  d = 2,
) => (Number.isFinite(v) ? `${v >= 0 ? "+" : ""}${(v * 100).toFixed(d)}` : "–");
const interval = (ci: [number, number], sign = false) =>
  Number.isFinite(ci[0])
    ? `[${sign ? signed(ci[0]) : pct(ci[0])}, ${sign ? signed(ci[1]) : pct(ci[1])}]`
    : "–";
const pValue = (p: number) => (Number.isFinite(p) ? (p < 1e-4 ? p.toExponential(1) : p.toFixed(4)) : "–");
const runsText = (n: number | undefined) =>
  n === undefined ? "" : Number.isNaN(n) ? "–" : Number.isFinite(n) ? String(n) : "∞";

/** The table's cells: one row per configuration (accuracies in percent). */
export function tableRows(s: SweepSummary): { head: string[]; rows: string[][] } {
  const head = [
    "config",
    "n",
    "mean %",
    "std",
    "95% CI",
    "Δ vs base",
    "95% CI of Δ",
    "p (Welch)",
    "runs for Δ",
  ];
  if (s.resolve !== undefined) head.push(`runs for ${pct(s.resolve, 3)} pt`);
  const rows = s.configs.map((c) => {
    const v = c.vs_baseline;
    const row = [
      `${c.id} ${c.label}${c.id === s.baseline ? " (baseline)" : ""}`,
      c.n < c.planned ? `${c.n}/${c.planned}` : String(c.n),
      pct(c.mean),
      pct(c.std),
      interval(c.ci95),
      v ? signed(v.diff) : "",
      v ? interval(v.ci95, true) : "",
      v ? pValue(v.p) : "",
      runsText(v?.runs_for_power),
    ];
    if (s.resolve !== undefined) row.push(runsText(c.runs_to_resolve));
    return row;
  });
  return { head, rows };
}

/** The console table, with the notes that say what the columns are. */
export function summaryTable(s: SweepSummary): string {
  const { head, rows } = tableRows(s);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |";
  const rule = "-".repeat(line(head).length);
  const notes = [
    `${s.sweep}: ${s.metric} in percent; ${s.done} of ${s.planned} runs done; 95% CI: Student t on n - 1 df.`,
    s.baseline
      ? `Δ: mean - baseline's mean, 95% CI and two-sided p by Welch's t-test; runs for Δ: ${s.power}.`
      : "No baseline in the spec: no differences or p-values.",
  ];
  return [rule, line(head), rule, ...rows.map(line), rule, ...notes].join("\n");
}

/** The sweep's HTML page: the statistics table, the runs per configuration, every run with its log. */
export function summaryHtml(s: SweepSummary, opts: { generated?: string; report?: string } = {}): string {
  const { head, rows } = tableRows(s);
  const table = `<table><thead><tr>${
    head.map((h) => `<th>${escapeXml(h)}</th>`).join("")
  }</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c) => `<td>${escapeXml(c)}</td>`).join("")}</tr>`).join("\n")
  }</tbody></table>`;
  const chart = dotChart({
    title: `Final accuracy (${s.metric}) per run`,
    xLabel: "test accuracy (%)   ·   dot: one run, bar: mean ± std",
    groups: s.configs.map((c, i) => ({
      name: `${c.id} ${c.label}`,
      color: PALETTE[i % PALETTE.length],
      values: c.values,
      labels: s.runs.filter((r) => r.config === c.id && r.status === "done").map((r) =>
        `seed ${r.seed}: ${pct(r.tta_val_acc)}%`
      ),
    })),
    format: percentFormat,
    valueFormat: (v) => (v * 100).toFixed(2),
    summary: "meanStd",
  });
  const runRows = s.runs.map((r) =>
    `<tr><td>${r.config}</td><td>${r.seed}</td><td>${r.status}</td><td>${pct(r.tta_val_acc)}</td><td>${
      pct(r.val_acc)
    }</td><td><code>${escapeXml((r.weights_sha256 ?? "").slice(0, 16))}</code></td><td>${
      r.log ? `<a href="${escapeXml(r.log)}">${escapeXml(r.log)}</a>` : ""
    }</td></tr>`
  ).join("\n");
  const title = `Sweep ${s.sweep}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title><style>${CSS}</style></head>
<body><main><h1>${escapeXml(title)}</h1>
<p class="meta">${s.done} of ${s.planned} runs done · seeds ${s.seeds.join(", ")}${
    opts.generated ? ` · generated ${escapeXml(opts.generated)}` : ""
  }${opts.report ? ` · <a href="${escapeXml(opts.report)}">training curves of every run</a>` : ""}</p>
${table}
<p class="note">Accuracies in percent. 95% CI of the mean: Student t on n - 1 degrees of freedom. ${
    s.baseline
      ? `Δ against ${escapeXml(s.baseline)}: Welch's interval and two-sided p; runs for Δ: ${
        escapeXml(s.power)
      }.`
      : "No baseline in the spec."
  }</p>
<figure>${chart}</figure>
<h2>Runs</h2>
<table><thead><tr><th>config</th><th>seed</th><th>status</th><th>${s.metric}</th><th>val_acc</th>
<th>weights_sha256</th><th>log</th></tr></thead><tbody>${runRows}</tbody></table>
</main></body></html>
`;
}

const CSS =
  `body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}main{max-width:1140px;margin:auto;padding:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.meta,.note{color:#555}figure{margin:16px 0}`;
