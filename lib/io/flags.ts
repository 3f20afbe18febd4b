// Command line of the experiment files (main.ts, experiments/*.ts): the run options below, and one flag per
// hyperparameter the experiment declares (lib/io/hyp.ts). Invalid flags or values fail with one line that
// names the flag and the accepted values.

import { parseArgs } from "node:util";
import { getAt, type Hyperparameters, parseLeaf, setAt } from "./hyp.ts";

export interface RunOptions {
  runs: number;
  trainN?: number;
  /** Evaluate on the first N test images only (quick runs); default all. */
  testN?: number;
  seed: number;
  precision: "auto" | "f16" | "f32";
  data?: string;
  verify: boolean;
  saveWeights?: string;
  logDir: string;
  quiet: boolean;
  /** Convolution kernel variants (lib/nn/tune.ts): auto (default), off, force. */
  tune?: "auto" | "off" | "force";
  /** A run log whose `conv_variants` pin every convolution's kernel variant (instead of --tune). */
  variants?: string;
}

export type Kind = "int" | "posint" | "bool" | "widths" | "string" | "choice";
/**
 * A run option (the library's, the same for every experiment): its flag, the RunOptions field it sets, its
 * help, and what the help table shows when the field is absent.
 */
interface Flag {
  name: string;
  key: keyof RunOptions;
  kind: Kind;
  help: string;
  choices?: string[];
  absent?: string;
}

const RUN_FLAGS: Flag[] = [
  {
    name: "runs",
    key: "runs",
    kind: "posint",
    help: "independent training runs (the reference: 25)",
  },
  {
    name: "train-n",
    key: "trainN",
    kind: "posint",
    help: "train on the first N training images only (quick runs on slow adapters)",
    absent: "all",
  },
  {
    name: "test-n",
    key: "testN",
    kind: "posint",
    help: "evaluate on the first N test images only (quick runs; every accuracy then says so: not the " +
      "benchmark's figure)",
    absent: "all",
  },
  {
    name: "seed",
    key: "seed",
    kind: "int",
    help: "seed of run 0; run i uses seed + i",
  },
  {
    name: "precision",
    key: "precision",
    kind: "choice",
    choices: ["auto", "f16", "f32"],
    help: "activation storage: auto = f16 on GPUs with shader-f16, f32 on CPU adapters",
  },
  {
    name: "data",
    key: "data",
    kind: "string",
    help: "CIFAR-10 from a local cifar-10-binary.tar.gz or a folder of the six .bin files",
    absent: "download (cached under data/)",
  },
  {
    name: "verify",
    key: "verify",
    kind: "bool",
    help:
      "check the data against the official SHA-256 (false: your own data in the CIFAR-10 layout, needs --data)",
  },
  {
    name: "save-weights",
    key: "saveWeights",
    kind: "string",
    help: "write the trained weights as safetensors (PyTorch state-dict names); -runI added when runs > 1",
    absent: "no",
  },
  {
    name: "tune",
    key: "tune",
    kind: "choice",
    choices: ["auto", "off", "force"],
    help: "conv kernel variants: auto = tune once on GPUs and reuse the cache (CPU adapters: cached or " +
      "default), off = defaults, force = tune now on any adapter",
    absent: "auto",
  },
  {
    name: "variants",
    key: "variants",
    kind: "string",
    help: "run the conv kernel variants a run log recorded (its conv_variants) instead of --tune's " +
      "(deno task reproduce sets it)",
    absent: "no",
  },
  {
    name: "log-dir",
    key: "logDir",
    kind: "string",
    help: "folder of the JSON log",
  },
];

export class UsageError extends Error {}

/** `--runs -1` -> `--runs=-1`, so a negative number reaches the flag's check instead of reading as a flag. */
export function joinNegativeValues(args: string[], options: Record<string, { type: string }>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : "";
    if (options[name]?.type === "string" && /^-[\d.]/.test(args[i + 1] ?? "")) {
      out.push(`${args[i]}=${args[++i]}`);
    } else out.push(args[i]);
  }
  return out;
}

/**
 * Parse flags strictly: negative numbers reach their flag's check, a flag given twice and an unknown flag are
 * one-line usage errors (`hint` says where to look).
 */
export function parseFlags(
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
  hint?: string,
): Record<string, string | boolean | undefined> {
  const joined = joinNegativeValues(args, options);
  let parsed;
  try {
    parsed = parseArgs({ args: joined, options, allowPositionals: false, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]}${hint ? ` (${hint})` : ""}`);
  }
  // Given twice: read off the arguments themselves (the page's parseArgs has no `tokens`). They parsed
  // strictly, so every "--name" is a known flag and a string flag without "=" is followed by its value.
  const seen = new Set<string>();
  for (let i = 0; i < joined.length; i++) {
    const eq = joined[i].indexOf("=");
    const name = joined[i].slice(2, eq < 0 ? undefined : eq);
    if (seen.has(name)) throw new UsageError(`--${name} given twice; give each flag once`);
    seen.add(name);
    if (eq < 0 && options[name].type === "string") i++;
  }
  return parsed.values as Record<string, string | boolean | undefined>;
}

/** A flag's text as a value of its kind, or a one-line usage error naming the flag and what it accepts. */
export function convertFlag(f: { name: string; kind: Kind; choices?: string[] }, raw: string): unknown {
  const bad = (what: string) => new UsageError(`--${f.name} ${JSON.stringify(raw)}: expected ${what}`);
  switch (f.kind) {
    case "int":
    case "posint": {
      const v = Number(raw);
      if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(v) || (f.kind === "posint" ? v < 1 : v < 0)) {
        throw bad(f.kind === "posint" ? "a positive integer" : "a non-negative integer");
      }
      return v;
    }
    case "bool":
      if (!["true", "false", "1", "0"].includes(raw)) throw bad("true or false");
      return raw === "true" || raw === "1";
    case "widths": {
      const parts = raw.split(",").map((s) => Number(s.trim()));
      if (parts.some((v) => !Number.isInteger(v) || v < 4 || v % 4 !== 0)) {
        throw bad("comma-separated multiples of 4, one per block, e.g. 64,256,256 (kernels load vec4s)");
      }
      return parts;
    }
    case "choice":
      if (!f.choices!.includes(raw)) throw bad(`one of ${f.choices!.join(", ")}`);
      return raw;
    case "string":
      if (raw === "") throw bad("a non-empty value");
      return raw;
  }
}

/**
 * Apply the command line to (copies of) the defaults: the run options and one flag per declared
 * hyperparameter. Returns help text instead when --help is given.
 */
export function parseCommandLine<H>(
  args: string[],
  hyperparameters: Hyperparameters<H>,
  defaultOpts: RunOptions,
  about = {
    title: "airbench94 (BatchNorm-free) on WebGPU: train CIFAR-10 and report test accuracy.",
    file: "main.ts",
  },
): { hyp: H; opts: RunOptions; help?: string } {
  const hyp = hyperparameters.defaults;
  const opts: RunOptions = structuredClone(defaultOpts);
  const options: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
    quiet: { type: "boolean" },
  };
  for (const f of RUN_FLAGS) options[f.name] = { type: "string" };
  for (const f of hyperparameters.flags) {
    if (options[f.flag]) throw new Error(`hyperparameter ${f.path.join(".")} is --${f.flag}, a run option`);
    options[f.flag] = { type: "string" };
  }
  const values = parseFlags(args, options, "see --help for the accepted flags");
  if (values.help) return { hyp, opts, help: usage(hyperparameters, hyp, opts, about) };
  opts.quiet = Boolean(values.quiet);
  for (const f of RUN_FLAGS) {
    const raw = values[f.name];
    if (typeof raw === "string") (opts as unknown as Record<string, unknown>)[f.key] = convertFlag(f, raw);
  }
  for (const f of hyperparameters.flags) {
    const raw = values[f.flag];
    if (typeof raw !== "string") continue;
    const r = parseLeaf(f.param, raw);
    if ("error" in r) throw new UsageError(`--${f.flag} ${JSON.stringify(raw)}: expected ${r.error}`);
    setAt(hyp, f.path, r.value);
  }
  if (!opts.verify && !opts.data) throw new UsageError("--verify false needs --data PATH (your own data)");
  if (opts.seed > Number.MAX_SAFE_INTEGER - (opts.runs - 1)) {
    throw new UsageError(
      `--seed ${opts.seed} with --runs ${opts.runs}: run seeds go up to seed + runs - 1, which must be at most ` +
        `${Number.MAX_SAFE_INTEGER} (the seed generator takes safe integers)`,
    );
  }
  return { hyp, opts };
}

function usage<H>(
  hp: Hyperparameters<H>,
  h: H,
  o: RunOptions,
  about: { title: string; file: string },
): string {
  const lines = [
    about.title,
    "",
    `usage: deno run -A ${about.file} [flags]`,
    "",
  ];
  const line = (flag: string, arg: string, help: string, def: unknown) =>
    lines.push(`  --${flag}${arg}`.padEnd(34) + `${help} [default: ${def}]`);
  for (const f of RUN_FLAGS) {
    const arg = f.kind === "bool"
      ? " true|false"
      : f.kind === "choice"
      ? ` ${f.choices!.join("|")}`
      : " VALUE";
    line(f.name, arg, f.help, o[f.key] ?? f.absent);
  }
  for (const f of hp.flags) {
    const v = getAt(h, f.path);
    const arg = typeof v === "boolean"
      ? " true|false"
      : f.param.choices
      ? ` ${f.param.choices.join("|")}`
      : " VALUE";
    line(f.flag, arg, f.param.help, Array.isArray(v) ? v.join(",") : v);
  }
  lines.push("  --quiet".padEnd(34) + "no progress line or status messages");
  lines.push("  --help".padEnd(34) + "this text");
  return lines.join("\n");
}
