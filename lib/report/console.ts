// Console table (the reference's columns), live progress line, and the JSON log written atomically.

export const COLUMNS = [
  "run ",
  "epoch",
  "train_loss",
  "train_acc",
  "val_acc",
  "tta_val_acc",
  "total_time_seconds",
];

export interface EpochRow {
  run?: number | string;
  epoch: number | string;
  train_loss?: number;
  train_acc?: number;
  val_acc?: number;
  tta_val_acc?: number;
  total_time_seconds?: number;
}

function cell(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if (typeof v === "string") return v;
  return "";
}

function line(cols: string[]): string {
  return cols.map((c) => `| ${c} `).join("") + "|";
}

/** The table's header; `note` (lib/train/session.ts testNote, e.g. "test 1000 of 10000") is said above it. */
export function printHeader(note = ""): void {
  const head = line(COLUMNS);
  if (note) console.log(`accuracies on ${note} images (--test-n): a subset, not the benchmark's figure`);
  console.log("-".repeat(head.length));
  console.log(head);
  console.log("-".repeat(head.length));
}

export function printRow(row: EpochRow, final = false): void {
  const vals = COLUMNS.map((c) => {
    const key = c.trim() as keyof EpochRow;
    return cell(row[key]).padStart(c.length);
  });
  const s = line(vals);
  console.log(s);
  if (final) console.log("-".repeat(s.length));
}

/**
 * A live status line on stderr: rewritten in place on a terminal; elsewhere (nohup, CI, a pipe) a plain line
 * at most every `plainEveryMs` (30 s), so long work is never silent. The clock and output are injectable.
 */
export class Progress {
  private lastPlain = -Infinity;
  constructor(
    private quiet = false,
    private readonly tty = typeof Deno !== "undefined" && Deno.stderr.isTerminal(),
    private readonly now: () => number = () => performance.now(),
    private readonly write: (s: string) => void = (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
    private readonly plainEveryMs = 30_000,
  ) {}
  update(text: string): void {
    if (this.quiet) return;
    if (this.tty) return this.write(`\r\x1b[2K${text}`);
    const t = this.now();
    if (t - this.lastPlain < this.plainEveryMs) return;
    this.lastPlain = t;
    this.write(`${text}\n`);
  }
  clear(): void {
    if (!this.tty || this.quiet) return;
    this.write("\r\x1b[2K");
  }
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function meanStd(xs: number[]): { mean: number; std: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  // Sample standard deviation, as torch.std (unbiased); 0 for a single run.
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std };
}
