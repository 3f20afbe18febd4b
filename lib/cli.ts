// Command line of the experiment files (main.ts, experiments/*.ts): every hyperparameter of the dict can be overridden, plus run options.
// Invalid flags or values fail with one line that names the flag and the accepted values.

import { parseArgs } from "node:util";

export interface Hyp {
  opt: {
    train_epochs: number;
    batch_size: number;
    lr: number;
    momentum: number;
    weight_decay: number;
    label_smoothing: number;
    whiten_bias_epochs: number;
  };
  aug: { flip: boolean; translate: number };
  net: { widths: number[]; scaling_factor: number; tta_level: number };
}

export interface RunOptions {
  runs: number;
  trainN?: number;
  seed: number;
  precision: "auto" | "f16" | "f32";
  data?: string;
  verify: boolean;
  saveWeights?: string;
  logDir: string;
  quiet: boolean;
  /** Convolution kernel variants (lib/tune.ts): auto (default), off, force. */
  tune?: "auto" | "off" | "force";
  /** A run log whose `conv_variants` pin every convolution's kernel variant (instead of --tune). */
  variants?: string;
}

type Kind = "int" | "posint" | "float" | "bool" | "widths" | "string" | "choice";
interface Flag {
  name: string;
  kind: Kind;
  help: string;
  choices?: string[];
  set: (h: Hyp, o: RunOptions, v: unknown) => void;
  get: (h: Hyp, o: RunOptions) => unknown;
}

const FLAGS: Flag[] = [
  {
    name: "runs",
    kind: "posint",
    help: "independent training runs (the reference: 25)",
    set: (_h, o, v) => o.runs = v as number,
    get: (_h, o) => o.runs,
  },
  {
    name: "epochs",
    kind: "float",
    help: "training epochs (may be fractional)",
    set: (h, _o, v) => h.opt.train_epochs = v as number,
    get: (h) => h.opt.train_epochs,
  },
  {
    name: "batch-size",
    kind: "posint",
    help: "training batch size",
    set: (h, _o, v) => h.opt.batch_size = v as number,
    get: (h) => h.opt.batch_size,
  },
  {
    name: "lr",
    kind: "float",
    help: "learning rate per 1024 examples (decoupled)",
    set: (h, _o, v) => h.opt.lr = v as number,
    get: (h) => h.opt.lr,
  },
  {
    name: "momentum",
    kind: "float",
    help: "Nesterov momentum, in [0, 1)",
    set: (h, _o, v) => h.opt.momentum = v as number,
    get: (h) => h.opt.momentum,
  },
  {
    name: "weight-decay",
    kind: "float",
    help: "weight decay per 1024 examples (decoupled from the lr)",
    set: (h, _o, v) => h.opt.weight_decay = v as number,
    get: (h) => h.opt.weight_decay,
  },
  {
    name: "label-smoothing",
    kind: "float",
    help: "label smoothing of the cross-entropy, in [0, 1]",
    set: (h, _o, v) => h.opt.label_smoothing = v as number,
    get: (h) => h.opt.label_smoothing,
  },
  {
    name: "whiten-bias-epochs",
    kind: "int",
    help: "epochs during which the whitening bias trains",
    set: (h, _o, v) => h.opt.whiten_bias_epochs = v as number,
    get: (h) => h.opt.whiten_bias_epochs,
  },
  {
    name: "flip",
    kind: "bool",
    help: "random flip once, then alternate every epoch (true|false)",
    set: (h, _o, v) => h.aug.flip = v as boolean,
    get: (h) => h.aug.flip,
  },
  {
    name: "translate",
    kind: "int",
    help: "random translation range in pixels (reflect padding)",
    set: (h, _o, v) => h.aug.translate = v as number,
    get: (h) => h.aug.translate,
  },
  {
    name: "widths",
    kind: "widths",
    help: "channel widths of the conv blocks, one per block: a,b[,c,d,...] (multiples of 4)",
    set: (h, _o, v) => h.net.widths = v as number[],
    get: (h) => h.net.widths.join(","),
  },
  {
    name: "scale",
    kind: "float",
    help: "output scaling factor of the logits",
    set: (h, _o, v) => h.net.scaling_factor = v as number,
    get: (h) => h.net.scaling_factor,
  },
  {
    name: "tta",
    kind: "choice",
    choices: ["0", "1", "2"],
    help: "test-time augmentation level: 0 none, 1 mirror, 2 mirror + translate",
    set: (h, _o, v) => h.net.tta_level = Number(v),
    get: (h) => h.net.tta_level,
  },
  {
    name: "train-n",
    kind: "posint",
    help: "train on the first N training images only (quick runs on slow adapters)",
    set: (_h, o, v) => o.trainN = v as number,
    get: (_h, o) => o.trainN ?? "all",
  },
  {
    name: "seed",
    kind: "int",
    help: "seed of run 0; run i uses seed + i",
    set: (_h, o, v) => o.seed = v as number,
    get: (_h, o) => o.seed,
  },
  {
    name: "precision",
    kind: "choice",
    choices: ["auto", "f16", "f32"],
    help: "activation storage: auto = f16 on GPUs with shader-f16, f32 on CPU adapters",
    set: (_h, o, v) => o.precision = v as RunOptions["precision"],
    get: (_h, o) => o.precision,
  },
  {
    name: "data",
    kind: "string",
    help: "CIFAR-10 from a local cifar-10-binary.tar.gz or a folder of the six .bin files",
    set: (_h, o, v) => o.data = v as string,
    get: (_h, o) => o.data ?? "download (cached under data/)",
  },
  {
    name: "verify",
    kind: "bool",
    help:
      "check the data against the official SHA-256 (false: your own data in the CIFAR-10 layout, needs --data)",
    set: (_h, o, v) => o.verify = v as boolean,
    get: (_h, o) => o.verify,
  },
  {
    name: "save-weights",
    kind: "string",
    help: "write the trained weights as safetensors (PyTorch state-dict names); -runI added when runs > 1",
    set: (_h, o, v) => o.saveWeights = v as string,
    get: (_h, o) => o.saveWeights ?? "no",
  },
  {
    name: "tune",
    kind: "choice",
    choices: ["auto", "off", "force"],
    help: "conv kernel variants: auto = tune once on GPUs and reuse the cache (CPU adapters: cached or " +
      "default), off = defaults, force = tune now on any adapter",
    set: (_h, o, v) => o.tune = v as RunOptions["tune"],
    get: (_h, o) => o.tune ?? "auto",
  },
  {
    name: "variants",
    kind: "string",
    help: "run the conv kernel variants a run log recorded (its conv_variants) instead of --tune's " +
      "(deno task reproduce sets it)",
    set: (_h, o, v) => o.variants = v as string,
    get: (_h, o) => o.variants ?? "no",
  },
  {
    name: "log-dir",
    kind: "string",
    help: "folder of the JSON log",
    set: (_h, o, v) => o.logDir = v as string,
    get: (_h, o) => o.logDir,
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

function convert(f: Flag, raw: string): unknown {
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
    case "float": {
      const v = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(v)) throw bad("a finite number");
      return v;
    }
    case "bool":
      if (!["true", "false", "1", "0"].includes(raw)) throw bad("true or false");
      return raw === "true" || raw === "1";
    case "widths": {
      const parts = raw.split(",").map((s) => Number(s.trim()));
      if (parts.length < 1 || parts.some((v) => !Number.isInteger(v) || v < 4 || v % 4 !== 0)) {
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

/** Apply the command line to (copies of) the defaults. Returns help text instead when --help is given. */
export function parseCommandLine<H extends Hyp>(
  args: string[],
  defaults: H,
  defaultOpts: RunOptions,
  about = {
    title: "airbench94 (BatchNorm-free) on WebGPU: train CIFAR-10 and report test accuracy.",
    file: "main.ts",
  },
): { hyp: H; opts: RunOptions; help?: string } {
  const hyp: H = structuredClone(defaults);
  const opts: RunOptions = structuredClone(defaultOpts);
  const options: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
    quiet: { type: "boolean" },
  };
  for (const f of FLAGS) options[f.name] = { type: "string" };
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0];
    throw new UsageError(`${msg} (see --help for the accepted flags)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { hyp, opts, help: usage(hyp, opts, about) };
  opts.quiet = Boolean(values.quiet);
  for (const f of FLAGS) {
    const raw = values[f.name];
    if (typeof raw === "string") f.set(hyp, opts, convert(f, raw));
  }
  validate(hyp);
  if (!opts.verify && !opts.data) throw new UsageError("--verify false needs --data PATH (your own data)");
  if (opts.seed > Number.MAX_SAFE_INTEGER - (opts.runs - 1)) {
    throw new UsageError(
      `--seed ${opts.seed} with --runs ${opts.runs}: run seeds go up to seed + runs - 1, which must be at most ` +
        `${Number.MAX_SAFE_INTEGER} (the seed generator takes safe integers)`,
    );
  }
  return { hyp, opts };
}

function validate(h: Hyp) {
  const fail = (m: string) => {
    throw new UsageError(m);
  };
  if (!(h.opt.train_epochs > 0)) fail(`--epochs ${h.opt.train_epochs}: expected a number > 0`);
  if (!(h.opt.momentum >= 0 && h.opt.momentum < 1)) fail(`--momentum ${h.opt.momentum}: expected 0 <= m < 1`);
  if (!(h.opt.lr > 0)) fail(`--lr ${h.opt.lr}: expected a number > 0`);
  if (!(h.opt.weight_decay >= 0)) fail(`--weight-decay ${h.opt.weight_decay}: expected a number >= 0`);
  if (!(h.opt.label_smoothing >= 0 && h.opt.label_smoothing <= 1)) {
    fail(`--label-smoothing ${h.opt.label_smoothing}: expected 0 <= s <= 1`);
  }
  if (h.aug.translate > 8) fail(`--translate ${h.aug.translate}: expected 0..8`);
}

function usage(h: Hyp, o: RunOptions, about: { title: string; file: string }): string {
  const lines = [
    about.title,
    "",
    `usage: deno run -A ${about.file} [flags]`,
    "",
  ];
  for (const f of FLAGS) {
    const arg = f.kind === "bool"
      ? " true|false"
      : f.kind === "choice"
      ? ` ${f.choices!.join("|")}`
      : " VALUE";
    lines.push(`  --${f.name}${arg}`.padEnd(34) + `${f.help} [default: ${f.get(h, o)}]`);
  }
  lines.push("  --quiet".padEnd(34) + "no progress line or status messages");
  lines.push("  --help".padEnd(34) + "this text");
  return lines.join("\n");
}
