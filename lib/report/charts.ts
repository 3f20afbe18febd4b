// Charts as SVG strings: pure functions (no Deno APIs, no DOM), so the report CLI and a browser page draw the
// same pictures. Every piece of text is escaped; coordinates are rounded to 0.01 px.
//
//   lineChart({ title, xLabel, yLabel, series: [{ name, color, points: [[x, y], ...] }] })
//   dotChart({ title, xLabel, groups: [{ name, color, values: [...] }], summary: "meanStd" })
//
// Both return a complete <svg> element with a viewBox (it scales with CSS `width: 100%; height: auto`).

/** Formats a tick value; `step` is the distance between ticks (to choose the number of decimals). */
export type TickFormat = (v: number, step: number) => string;

export interface Series {
  /** The legend entry: series with the same name and colour share one entry. */
  name: string;
  color: string;
  /** [x, y] pairs; a non-finite y (NaN, null in JSON) breaks the line there. */
  points: readonly (readonly [number, number])[];
  /** Hover text of the curve (an SVG <title>); defaults to `name`. */
  title?: string;
  /** Stroke opacity, default 0.85. */
  opacity?: number;
  /** Stroke width, default 1.6. */
  strokeWidth?: number;
  /** An SVG stroke-dasharray, e.g. "5 3". */
  dash?: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  width?: number; // default 560
  height?: number; // default 360
  xFormat?: TickFormat;
  yFormat?: TickFormat;
  /** Ticks only at whole numbers on the x axis (epochs). */
  xInteger?: boolean;
  /** Values the y axis always spans (e.g. [0, 1] for accuracies: a point is not drawn on the edge). */
  yInclude?: readonly number[];
  /** A dot at every point; default: when there are at most 400 points in all. */
  markers?: boolean;
  /** Default true. */
  legend?: boolean;
  /** The most points drawn per series (default MAX_DRAWN_POINTS); longer ones are thinned (see thinPoints). */
  maxDrawnPoints?: number;
  /** The most series drawn (default MAX_DRAWN_SERIES); beyond it an even spread of them, said in the chart. */
  maxDrawnSeries?: number;
}

export interface DotGroup {
  name: string;
  color: string;
  values: readonly number[];
  /** Hover text per value (an SVG <title>), e.g. "run 3 (seed 42)". */
  labels?: readonly string[];
}

export interface DotChartOptions {
  title: string;
  /** The label of the value axis (horizontal). */
  xLabel: string;
  /** One row per group, top to bottom. */
  groups: readonly DotGroup[];
  width?: number; // default 1100
  /** Default: from the number of groups (rowHeight each). */
  height?: number;
  rowHeight?: number; // default 40
  /** Tick labels of the value axis. */
  format?: TickFormat;
  /** How a value is written in the summary at the right of each row (default: `format` at a fine step). */
  valueFormat?: (v: number) => string;
  /** "meanStd": a mean ± standard deviation bar over the dots; "mean": a mean mark only. Default "meanStd". */
  summary?: "meanStd" | "mean" | "none";
  /** The value axis starts at zero (for durations, so ratios can be read off). */
  includeZero?: boolean;
  /** A light bar from zero to the mean behind the dots (with includeZero). */
  bars?: boolean;
  /** Characters of a group name shown at the left before it is cut with "…" (the full name is in a tooltip). */
  maxLabelChars?: number; // default 30
  /** The most dots drawn per group (default MAX_DRAWN_DOTS); the summary always uses every value. */
  maxDrawnDots?: number;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Axis {
  min: number;
  max: number;
  step: number;
  ticks: number[];
}

/** Escapes text for SVG/HTML element content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** The 10 colours of Tableau 10: distinct, readable on white; `PALETTE[i % PALETTE.length]` for the i-th log. */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#59a14f",
  "#b07aa1",
  "#76b7b2",
  "#edc948",
  "#9c755f",
  "#ff9da7",
  "#bab0ac",
];

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif";
const INK = "#222";
const MUTED = "#666";
const GRID = "#e4e4e4";

/** A rough width of `s` in a sans-serif font of `size` px (SVG cannot measure text without a DOM). */
export function textWidth(s: string, size: number): number {
  let w = 0;
  // Widths of DejaVu Sans, the widest common fallback, so that text measured here fits in most fonts.
  for (const ch of s) {
    w += /[il.,:;|!'\[\] ]/.test(ch)
      ? 0.32
      : /[()]/.test(ch)
      ? 0.4
      : /[MWm@%]/.test(ch)
      ? 0.92
      : /[A-Z]/.test(ch)
      ? 0.72
      : 0.64;
  }
  return w * size;
}

/** The fewest decimals that write every multiple of `step` exactly (0.25 → 2, 5 → 0). */
export function decimalsFor(step: number): number {
  for (let d = 0; d < 10; d++) {
    const s = step * 10 ** d;
    if (Math.abs(s - Math.round(s)) < 1e-6 * Math.max(1, Math.abs(s))) return d;
  }
  return 10;
}

/** The default tick format: as many decimals as the step needs. */
export const fixedFormat: TickFormat = (v, step) =>
  (Math.abs(v) < step * 1e-9 ? 0 : v).toFixed(decimalsFor(step));

/** Fractions written as percent without the sign (put "%" in the axis label): 0.925 → "92.5". */
export const percentFormat: TickFormat = (v, step) => fixedFormat(v * 100, step * 100);

function niceStep(raw: number, integer: boolean): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  return integer ? Math.max(1, Math.round(step) || 1) : step;
}

/**
 * Round ticks covering [lo, hi]: about `target` intervals of 1, 2, 2.5 or 5 times a power of ten; the axis
 * runs from the tick at or below lo to the tick at or above hi. An empty or one-value range is widened.
 */
export function niceAxis(lo: number, hi: number, target = 5, integer = false): Axis {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const d = integer ? 1 : Math.abs(lo) * 0.05 || 0.5;
    [lo, hi] = [lo - d, hi + d];
  }
  const step = niceStep((hi - lo) / target, integer);
  const min = Math.floor(lo / step + 1e-9) * step;
  const max = Math.ceil(hi / step - 1e-9) * step;
  const n = Math.round((max - min) / step);
  const ticks = Array.from({ length: n + 1 }, (_, i) => Number((min + i * step).toPrecision(12)));
  return { min: ticks[0], max: ticks[n], step, ticks };
}

/** The pixel position of `v` on an axis drawn from p0 (at axis.min) to p1 (at axis.max). */
export function toPixel(axis: Axis, v: number, p0: number, p1: number): number {
  return p0 + (v - axis.min) / (axis.max - axis.min) * (p1 - p0);
}

/**
 * The smallest and largest finite value, or undefined when there is none. A loop: `Math.min(...xs)` passes
 * every value as an argument and overflows the call stack at about 100k values.
 */
export function finiteExtent(xs: Iterable<number>): [number, number] | undefined {
  let lo = Infinity, hi = -Infinity;
  for (const v of xs) {
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : undefined;
}

/** A line chart draws at most this many points per series (a chart is about 500 px wide). */
export const MAX_DRAWN_POINTS = 2000;
/** A line chart draws at most this many series (one per run: a log of 150k runs). */
export const MAX_DRAWN_SERIES = 1000;
/** A dot chart draws at most this many dots per row. */
export const MAX_DRAWN_DOTS = 500;

/**
 * At most about `max` of `points` for drawing, in order: the first and the last point, and in each of max/2
 * equal runs of consecutive points the lowest and the highest (finite) y, so spikes stay visible; a run with
 * a non-finite y keeps its first one (the line breaks there). Series of at most `max` points are returned as
 * they are. Only what is drawn is thinned: axes, tables and summaries use every point.
 */
export function thinPoints<P extends readonly [number, number]>(
  points: readonly P[],
  max: number,
): readonly P[] {
  const n = points.length;
  if (n <= max) return points;
  const buckets = Math.max(1, Math.floor((max - 2) / 3));
  const keep: number[] = [0];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor(b * n / buckets), end = Math.floor((b + 1) * n / buckets);
    let lo = -1, hi = -1, gap = -1;
    for (let i = start; i < end; i++) {
      const [x, y] = points[i];
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        if (gap < 0) gap = i;
      } else {
        if (lo < 0 || y < points[lo][1]) lo = i;
        if (hi < 0 || y > points[hi][1]) hi = i;
      }
    }
    for (const i of [lo, hi, gap].filter((i) => i > keep[keep.length - 1]).sort((a, b) => a - b)) {
      if (i !== keep[keep.length - 1]) keep.push(i);
    }
  }
  if (keep[keep.length - 1] !== n - 1) keep.push(n - 1);
  return keep.map((i) => points[i]);
}

/** At most `max` of the indices of `values`, spread evenly over their sorted order (min and max included). */
function quantileIndices(values: readonly number[], max: number): number[] {
  if (values.length <= max) return values.map((_, i) => i);
  const order = values.map((_, i) => i).sort((a, b) => values[a] - values[b]);
  const picked = new Set<number>();
  for (let k = 0; k < max; k++) picked.add(order[Math.round(k * (order.length - 1) / (max - 1))]);
  return [...picked].sort((a, b) => a - b);
}

const r2 = (v: number) => String(Math.round(v * 100) / 100);

function text(
  x: number,
  y: number,
  s: string,
  attrs: {
    size?: number;
    anchor?: "start" | "middle" | "end";
    weight?: string;
    fill?: string;
    extra?: string;
  } = {},
): string {
  const { size = 12, anchor = "start", weight, fill = INK, extra = "" } = attrs;
  return `<text x="${r2(x)}" y="${r2(y)}" font-size="${size}" text-anchor="${anchor}" fill="${fill}"${
    weight ? ` font-weight="${weight}"` : ""
  }${extra}>${escapeXml(s)}</text>`;
}

function svgOpen(width: number, height: number, title: string, cls: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart ${cls}" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}" font-family="${
      escapeXml(FONT)
    }"><rect width="${width}" height="${height}" fill="#fff"/>`;
}

interface LegendEntry {
  name: string;
  color: string;
  x: number;
  row: number;
}

/** Legend entries (unique name + colour) flowed into rows of at most `width` px. */
function legendLayout(series: readonly Series[], width: number): LegendEntry[] {
  const seen = new Set<string>();
  const out: LegendEntry[] = [];
  let x = 0, row = 0;
  for (const s of series) {
    const key = `${s.name}\u0000${s.color}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const w = 22 + textWidth(s.name, 12) + 18;
    if (x > 0 && x + w > width) [x, row] = [0, row + 1];
    out.push({ name: s.name, color: s.color, x, row });
    x += w;
  }
  return out;
}

export interface LineChartLayout {
  width: number;
  height: number;
  plot: Rect;
  x: Axis;
  y: Axis;
  legend: LegendEntry[];
  /** Pixel coordinates of a data point. */
  px(x: number, y: number): [number, number];
}

/** Where lineChart puts everything: the plot rectangle and the axes (exported for tests and custom overlays). */
export function lineChartLayout(o: LineChartOptions): LineChartLayout {
  const width = o.width ?? 560, height = o.height ?? 360;
  const xs: number[] = [], ys: number[] = [];
  for (const s of o.series) {
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) {
        xs.push(x);
        ys.push(y);
      }
    }
  }
  const xr = finiteExtent(xs), yr = finiteExtent(ys.length ? [...ys, ...(o.yInclude ?? [])] : ys);
  const x = xr ? niceAxis(xr[0], xr[1], 6, o.xInteger) : niceAxis(0, 1);
  const y = yr ? niceAxis(yr[0], yr[1], 5) : niceAxis(0, 1);
  const yFormat = o.yFormat ?? fixedFormat;
  const yTickW = Math.max(...y.ticks.map((t) => textWidth(yFormat(t, y.step), 11)));
  const left = Math.ceil(yTickW) + 36, right = 18;
  const legend = o.legend === false ? [] : legendLayout(o.series, width - left - right);
  const rows = legend.length ? legend[legend.length - 1].row + 1 : 0;
  const top = 34 + rows * 18 + (rows ? 6 : 0), bottom = 46;
  const plot = {
    x: left,
    y: top,
    w: Math.max(10, width - left - right),
    h: Math.max(10, height - top - bottom),
  };
  return {
    width,
    height,
    plot,
    x,
    y,
    legend,
    px: (vx, vy) => [toPixel(x, vx, plot.x, plot.x + plot.w), toPixel(y, vy, plot.y + plot.h, plot.y)],
  };
}

/** The grid, the axes with their ticks and labels, and the title, shared by both charts. */
function frame(
  L: { width: number; plot: Rect },
  title: string,
  xAxis: Axis,
  xFormat: TickFormat,
  xLabel: string,
  yAxis?: { axis: Axis; format: TickFormat; label: string },
): string {
  const { plot } = L;
  const out: string[] = [];
  out.push(text(plot.x, 21, title, { size: 15, weight: "600" }));
  const bottom = plot.y + plot.h;
  for (const t of xAxis.ticks) {
    const x = toPixel(xAxis, t, plot.x, plot.x + plot.w);
    out.push(`<line x1="${r2(x)}" y1="${r2(plot.y)}" x2="${r2(x)}" y2="${r2(bottom)}" stroke="${GRID}"/>`);
    out.push(`<line x1="${r2(x)}" y1="${r2(bottom)}" x2="${r2(x)}" y2="${r2(bottom + 5)}" stroke="${INK}"/>`);
    out.push(text(x, bottom + 18, xFormat(t, xAxis.step), { size: 11, anchor: "middle", fill: MUTED }));
  }
  if (yAxis) {
    const { axis, format, label } = yAxis;
    for (const t of axis.ticks) {
      const y = toPixel(axis, t, bottom, plot.y);
      out.push(
        `<line x1="${r2(plot.x)}" y1="${r2(y)}" x2="${r2(plot.x + plot.w)}" y2="${r2(y)}" stroke="${GRID}"/>`,
      );
      out.push(
        `<line x1="${r2(plot.x - 5)}" y1="${r2(y)}" x2="${r2(plot.x)}" y2="${r2(y)}" stroke="${INK}"/>`,
      );
      out.push(text(plot.x - 8, y + 4, format(t, axis.step), { size: 11, anchor: "end", fill: MUTED }));
    }
    const cy = plot.y + plot.h / 2;
    out.push(
      text(14, cy, label, { size: 12, anchor: "middle", extra: ` transform="rotate(-90 14 ${r2(cy)})"` }),
    );
    out.push(
      `<line x1="${r2(plot.x)}" y1="${r2(plot.y)}" x2="${r2(plot.x)}" y2="${r2(bottom)}" stroke="${INK}"/>`,
    );
  }
  out.push(
    `<line x1="${r2(plot.x)}" y1="${r2(bottom)}" x2="${r2(plot.x + plot.w)}" y2="${
      r2(bottom)
    }" stroke="${INK}"/>`,
  );
  out.push(text(plot.x + plot.w / 2, bottom + 38, xLabel, { size: 12, anchor: "middle" }));
  return out.join("");
}

/** Line chart: one path per series (class "series"), legend under the title, grid, ticks and axis labels. */
export function lineChart(o: LineChartOptions): string {
  const L = lineChartLayout(o);
  const { plot } = L;
  const out: string[] = [svgOpen(L.width, L.height, o.title, "line-chart")];
  out.push(frame(L, o.title, L.x, o.xFormat ?? fixedFormat, o.xLabel, {
    axis: L.y,
    format: o.yFormat ?? fixedFormat,
    label: o.yLabel,
  }));
  for (const e of L.legend) {
    const y = 40 + e.row * 18, x = plot.x + e.x;
    out.push(
      `<line x1="${r2(x)}" y1="${r2(y - 4)}" x2="${r2(x + 16)}" y2="${r2(y - 4)}" stroke="${
        escapeXml(e.color)
      }" stroke-width="3"/>`,
    );
    out.push(text(x + 22, y, e.name));
  }
  const total = o.series.reduce((n, s) => n + s.points.length, 0);
  const markers = o.markers ?? total <= 400;
  if (total === 0) {
    out.push(text(plot.x + plot.w / 2, plot.y + plot.h / 2, "no data", { anchor: "middle", fill: MUTED }));
  }
  const maxSeries = o.maxDrawnSeries ?? MAX_DRAWN_SERIES;
  const drawn = o.series.length <= maxSeries
    ? o.series
    : Array.from({ length: maxSeries }, (_, k) =>
      o.series[Math.round(k * (o.series.length - 1) / (maxSeries - 1))]);
  if (drawn.length < o.series.length) {
    out.push(
      text(plot.x + plot.w, 21, `${drawn.length} of ${o.series.length} curves drawn`, {
        size: 11,
        anchor: "end",
        fill: MUTED,
        extra: ' class="thinned"',
      }),
    );
  }
  for (const s of drawn) {
    let d = "", pen = "M";
    const dots: string[] = [];
    for (const [x, y] of thinPoints(s.points, o.maxDrawnPoints ?? MAX_DRAWN_POINTS)) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        pen = "M";
        continue;
      }
      const [px, py] = L.px(x, y);
      d += `${d ? " " : ""}${pen}${r2(px)} ${r2(py)}`;
      pen = "L";
      if (markers) dots.push(`<circle cx="${r2(px)}" cy="${r2(py)}" r="2.2"/>`);
    }
    const color = escapeXml(s.color);
    out.push(
      `<g class="series-group" data-name="${
        escapeXml(s.name)
      }"><path class="series" d="${d}" fill="none" stroke="${color}" stroke-width="${
        s.strokeWidth ?? 1.6
      }" stroke-opacity="${s.opacity ?? 0.85}" stroke-linejoin="round" stroke-linecap="round"${
        s.dash ? ` stroke-dasharray="${escapeXml(s.dash)}"` : ""
      }><title>${escapeXml(s.title ?? s.name)}</title></path>${
        dots.length ? `<g fill="${color}" fill-opacity="${s.opacity ?? 0.85}">${dots.join("")}</g>` : ""
      }</g>`,
    );
  }
  out.push("</svg>");
  return out.join("");
}

function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std };
}

/** Vertical offsets that keep dots of radius r apart (a small beeswarm), within ±limit. */
function dodge(xs: readonly number[], r: number, limit: number): number[] {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
  const placed: [number, number][] = [];
  const out = new Array<number>(xs.length).fill(0);
  for (const i of order) {
    let best = 0;
    for (let k = 0; k <= 2 * Math.floor(limit / r); k++) {
      const dy = (k % 2 ? 1 : -1) * Math.ceil(k / 2) * r;
      if (Math.abs(dy) > limit) break;
      if (placed.every(([x, y]) => (x - xs[i]) ** 2 + (y - dy) ** 2 >= (2 * r) ** 2 * 0.8)) {
        best = dy;
        break;
      }
    }
    placed.push([xs[i], best]);
    out[i] = best;
  }
  return out;
}

export interface DotChartLayout {
  width: number;
  height: number;
  plot: Rect;
  x: Axis;
  rowHeight: number;
  /** The summary text at the right of each row ("" for none). */
  summaries: string[];
  /** Pixel x of a value. */
  px(v: number): number;
  /** Pixel y of the middle of group i's row. */
  rowY(i: number): number;
}

/** Where dotChart puts everything (exported for tests and custom overlays). */
export function dotChartLayout(o: DotChartOptions): DotChartLayout {
  const width = o.width ?? 1100, rowHeight = o.rowHeight ?? 40;
  const summary = o.summary ?? "meanStd";
  const maxDots = o.maxDrawnDots ?? MAX_DRAWN_DOTS;
  const vals = o.groups.flatMap((g) => g.values.filter(Number.isFinite));
  const stats = o.groups.map((g) => meanStd(g.values.filter(Number.isFinite)));
  let [lo, hi] = finiteExtent(vals) ?? [0, 1];
  if (summary === "meanStd") {
    stats.forEach((s, i) => {
      if (o.groups[i].values.some(Number.isFinite)) {
        [lo, hi] = [Math.min(lo, s.mean - s.std), Math.max(hi, s.mean + s.std)];
      }
    });
  }
  if (!vals.length) [lo, hi] = [0, 1];
  if (o.includeZero) [lo, hi] = [Math.min(0, lo), Math.max(0, hi)];
  const x = niceAxis(lo, hi, 6);
  const fmt = o.valueFormat ?? ((v: number) => fixedFormat(v, x.step / 100));
  const summaries = o.groups.map((g, i) => {
    const n = g.values.filter(Number.isFinite).length;
    if (n === 0) return "no values";
    const count = n > maxDots ? `n=${n}, ${maxDots} drawn` : `n=${n}`;
    if (summary === "none") return count;
    const { mean, std } = stats[i];
    return summary === "meanStd" && n > 1
      ? `${fmt(mean)} ± ${fmt(std)} (${count})`
      : `${fmt(mean)} (${count})`;
  });
  const maxChars = o.maxLabelChars ?? 30;
  const labelW = Math.max(40, ...o.groups.map((g) => textWidth(cut(g.name, maxChars), 12)));
  const sumW = Math.max(40, ...summaries.map((s) => textWidth(s, 12)));
  const left = Math.ceil(labelW) + 20, right = Math.ceil(sumW) + 24;
  const top = 34, bottom = 46;
  const height = o.height ?? top + bottom + Math.max(1, o.groups.length) * rowHeight;
  const plot = {
    x: left,
    y: top,
    w: Math.max(10, width - left - right),
    h: Math.max(10, height - top - bottom),
  };
  const rows = Math.max(1, o.groups.length);
  return {
    width,
    height,
    plot,
    x,
    rowHeight: plot.h / rows,
    summaries,
    px: (v) => toPixel(x, v, plot.x, plot.x + plot.w),
    rowY: (i) => plot.y + (i + 0.5) * plot.h / rows,
  };
}

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/**
 * Dot chart, one row per group: every value a dot (class "dot", data-value), over it the mean ± standard
 * deviation (sample, as torch.std) as a bar with caps, and the numbers at the right of the row.
 */
export function dotChart(o: DotChartOptions): string {
  const L = dotChartLayout(o);
  const { plot } = L;
  const summary = o.summary ?? "meanStd";
  const out: string[] = [svgOpen(L.width, L.height, o.title, "dot-chart")];
  out.push(frame(L, o.title, L.x, o.format ?? fixedFormat, o.xLabel));
  const maxChars = o.maxLabelChars ?? 30;
  o.groups.forEach((g, i) => {
    const cy = L.rowY(i), color = escapeXml(g.color);
    if (i > 0) {
      const y = cy - L.rowHeight / 2;
      out.push(
        `<line x1="${r2(plot.x)}" y1="${r2(y)}" x2="${r2(plot.x + plot.w)}" y2="${r2(y)}" stroke="#f0f0f0"/>`,
      );
    }
    const shown = cut(g.name, maxChars);
    out.push(
      `<g class="row-label">${text(plot.x - 10, cy + 4, shown, { anchor: "end" })}<title>${
        escapeXml(g.name)
      }</title></g>`,
    );
    out.push(
      text(plot.x + plot.w + 12, cy + 4, L.summaries[i], {
        fill: g.values.some(Number.isFinite) ? INK : MUTED,
      }),
    );
    const idx = g.values.map((_, k) => k).filter((k) => Number.isFinite(g.values[k]));
    if (!idx.length) return;
    const values = idx.map((k) => g.values[k]);
    const { mean, std } = meanStd(values);
    if (o.bars) {
      const x0 = L.px(Math.max(L.x.min, 0)), x1 = L.px(mean), h = Math.min(22, L.rowHeight * 0.6);
      out.push(
        `<rect class="bar" x="${r2(Math.min(x0, x1))}" y="${r2(cy - h / 2)}" width="${
          r2(Math.abs(x1 - x0))
        }" height="${r2(h)}" fill="${color}" fill-opacity="0.22"/>`,
      );
    }
    const rad = 4;
    // Many values: a spread of them is drawn (the summary and its bar use them all).
    const drawn = quantileIndices(values, o.maxDrawnDots ?? MAX_DRAWN_DOTS);
    const offsets = dodge(drawn.map((j) => L.px(values[j])), rad, Math.max(0, L.rowHeight / 2 - rad - 2));
    drawn.forEach((j, d) => {
      const v = values[j], label = g.labels?.[idx[j]];
      out.push(
        `<circle class="dot" data-value="${v}" cx="${r2(L.px(v))}" cy="${
          r2(cy + offsets[d])
        }" r="${rad}" fill="${color}" fill-opacity="0.8" stroke="#fff" stroke-width="0.8">${
          label ? `<title>${escapeXml(label)}</title>` : ""
        }</circle>`,
      );
    });
    if (summary === "none") return;
    const m = L.px(mean), cap = Math.min(9, L.rowHeight / 2 - 2);
    let g2 = `<g class="summary" stroke="${INK}" data-mean="${mean}" data-std="${std}">`;
    if (summary === "meanStd" && values.length > 1) {
      const a = L.px(mean - std), b = L.px(mean + std);
      g2 += `<line x1="${r2(a)}" y1="${r2(cy)}" x2="${r2(b)}" y2="${r2(cy)}" stroke-width="1.5"/>`;
      g2 += `<line x1="${r2(a)}" y1="${r2(cy - cap / 2)}" x2="${r2(a)}" y2="${
        r2(cy + cap / 2)
      }" stroke-width="1.5"/>`;
      g2 += `<line x1="${r2(b)}" y1="${r2(cy - cap / 2)}" x2="${r2(b)}" y2="${
        r2(cy + cap / 2)
      }" stroke-width="1.5"/>`;
    }
    g2 += `<line x1="${r2(m)}" y1="${r2(cy - cap)}" x2="${r2(m)}" y2="${r2(cy + cap)}" stroke-width="2.5"/>`;
    out.push(`${g2}</g>`);
  });
  if (!o.groups.length) {
    out.push(text(plot.x + plot.w / 2, plot.y + plot.h / 2, "no data", { anchor: "middle", fill: MUTED }));
  }
  out.push("</svg>");
  return out.join("");
}
