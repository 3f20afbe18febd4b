// A sweep's spec (a small JSON or TS file) and the plan it expands to: one run per (configuration, seed),
// each an ordinary invocation of an experiment file with its flags, `--runs 1 --seed S` and its own --log-dir
// inside the sweep's folder. Every flag and value is checked with the experiment's own command-line parser
// before any run.
//
// Spec keys: experiment (a file, or a list of files: one more grid dimension; paths relative to the project
// root, as the logs' `experiment`), flags (fixed for every run), grid (flag -> list of values: every
// combination) or list (a list of flag sets), seeds (a count: seeds 0..N-1, or a list of seeds), baseline
// (flag values naming one configuration, optional), resolve (a difference in the metric whose runs-for-power
// the summary states, optional).

import { isAbsolute, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseCommandLine, type RunOptions } from "../io/flags.ts";
import type { BaseHyp, Hyperparameters } from "../io/hyp.ts";
import { ROOT } from "../root.ts";

/** A bad spec: one line naming the problem (exit 2, before any run starts). */
export class SpecError extends Error {}

type Value = string | number | boolean;
type Flags = Record<string, Value>;

export interface SweepSpec {
  experiment: string | string[];
  flags?: Flags;
  grid?: Record<string, Value[]>;
  list?: Flags[];
  seeds: number | number[];
  baseline?: Flags;
  resolve?: number;
}

export interface Config {
  id: string; // c0, c1, ...
  label: string; // what varies: "lr=1 widths=8,16,16"
  experiment: string; // relative to the project root (or absolute when outside it)
  varied: Record<string, string>;
  /** The experiment's flags for this configuration (fixed + varied), without the per-run ones. */
  args: string[];
}

export interface PlannedRun {
  index: number;
  config: string;
  seed: number;
  /** Its --log-dir, relative to the sweep's folder. */
  dir: string;
}

export interface Plan {
  name: string;
  spec: string; // absolute path of the spec file
  configs: Config[];
  seeds: number[];
  baseline?: string;
  resolve?: number;
  runs: PlannedRun[];
}

/** Flags the sweep sets per run (or that make no sense in a sweep). */
const RESERVED: Record<string, string> = {
  runs: "each run is --runs 1",
  seed: "use the spec's seeds",
  "log-dir": "each run's log folder is inside the sweep's folder (--out)",
  "save-weights": "runs would overwrite each other's weights",
  help: "not a training flag",
  quiet: "the sweep sets it",
};
const KEYS = ["experiment", "flags", "grid", "list", "seeds", "baseline", "resolve"];

const isScalar = (v: unknown): v is Value => ["string", "number", "boolean"].includes(typeof v);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Reads a JSON spec, or a TS/JS module whose default export is the spec. */
export async function readSpec(path: string): Promise<SweepSpec> {
  const abs = resolve(path);
  let raw: unknown;
  try {
    if (/\.json$/i.test(abs)) raw = JSON.parse(Deno.readTextFileSync(abs));
    else if (/\.[cm]?[jt]s$/i.test(abs)) raw = (await import(pathToFileURL(abs).href)).default;
    else throw new SpecError(`${path}: expected a .json or .ts spec file`);
  } catch (e) {
    if (e instanceof SpecError) throw e;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message.split("\n")[0];
    throw new SpecError(`${path}: ${why}`);
  }
  checkShape(raw, path);
  return raw as SweepSpec;
}

function checkFlags(v: unknown, where: string): Flags {
  if (!isObject(v)) throw new SpecError(`${where}: expected an object of flag: value`);
  for (const [k, x] of Object.entries(v)) {
    if (!isScalar(x)) throw new SpecError(`${where}.${k}: expected a string, number or boolean`);
    const name = k.replace(/^--/, "");
    if (RESERVED[name]) throw new SpecError(`${where}: --${name} is set by the sweep (${RESERVED[name]})`);
  }
  return v as Flags;
}

function checkShape(raw: unknown, path: string): void {
  const fail = (m: string) => {
    throw new SpecError(`${path}: ${m}`);
  };
  if (!isObject(raw)) fail("expected an object (keys: " + KEYS.join(", ") + ")");
  const s = raw as Record<string, unknown>;
  const unknown = Object.keys(s).filter((k) => !KEYS.includes(k));
  if (unknown.length) fail(`unknown key "${unknown[0]}" (keys: ${KEYS.join(", ")})`);
  const exps = Array.isArray(s.experiment) ? s.experiment : [s.experiment];
  if (!exps.length || exps.some((e) => typeof e !== "string" || !e)) {
    fail(`"experiment": expected an experiment file such as "main.ts" (or a non-empty list of them)`);
  }
  if (s.flags !== undefined) checkFlags(s.flags, `${path}: flags`);
  if ((s.grid === undefined) === (s.list === undefined)) fail(`give one of "grid" and "list"`);
  if (s.grid !== undefined) {
    if (!isObject(s.grid) || !Object.keys(s.grid).length) fail(`"grid" is empty: give flag: [values]`);
    for (const [k, vs] of Object.entries(s.grid as object)) {
      if (!Array.isArray(vs) || !vs.length) fail(`grid.${k}: expected a non-empty list of values`);
      (vs as unknown[]).forEach((v) => checkFlags({ [k]: v }, `${path}: grid`));
    }
  }
  if (s.list !== undefined) {
    if (!Array.isArray(s.list) || !s.list.length) fail(`"list" is empty: give a list of flag sets`);
    (s.list as unknown[]).forEach((f, i) => checkFlags(f, `${path}: list[${i}]`));
  }
  const seeds = s.seeds;
  const okSeed = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  if (typeof seeds === "number" ? !(Number.isSafeInteger(seeds) && seeds >= 1) : !Array.isArray(seeds)) {
    fail(`"seeds": ${JSON.stringify(seeds)}: expected a count >= 1 (seeds 0..N-1) or a list of seeds`);
  }
  if (Array.isArray(seeds) && (!seeds.length || !seeds.every(okSeed) || new Set(seeds).size < seeds.length)) {
    fail(`"seeds": expected a non-empty list of distinct integers >= 0`);
  }
  if (s.baseline !== undefined) checkFlags(s.baseline, `${path}: baseline`);
  if (s.resolve !== undefined && !(typeof s.resolve === "number" && s.resolve > 0)) {
    fail(`"resolve": expected a difference > 0 in the metric (e.g. 0.0005 for 0.05 points of accuracy)`);
  }
}

const strip = (k: string) => k.replace(/^--/, "");
const str = (v: Value) => String(v);

/** The configurations: experiments x (grid combinations | list entries). */
function configurations(spec: SweepSpec): { experiment: string; varied: Record<string, string> }[] {
  const exps = Array.isArray(spec.experiment) ? spec.experiment : [spec.experiment];
  let sets: Record<string, string>[] = [{}];
  if (spec.grid) {
    for (const [k, vs] of Object.entries(spec.grid)) {
      sets = sets.flatMap((s) => vs.map((v) => ({ ...s, [strip(k)]: str(v) })));
    }
  } else {
    sets = spec.list!.map((f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [strip(k), str(v)])));
  }
  return exps.flatMap((experiment) => sets.map((varied) => ({ experiment, varied })));
}

function experimentFile(e: string, specPath: string): string {
  const abs = isAbsolute(e) ? e : join(ROOT, e);
  try {
    if (Deno.statSync(abs).isFile) return abs;
  } catch { /* reported below */ }
  throw new SpecError(
    `${specPath}: experiment "${e}": no such file (paths are relative to the project root)`,
  );
}

/** The experiment file's `experiment` export (what lib/cli/experiment.ts's main() runs). */
async function loadExperiment(abs: string, name: string) {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(abs).href);
  } catch (e) {
    throw new SpecError(`experiment "${name}": cannot be loaded (${(e as Error).message.split("\n")[0]})`);
  }
  const exp = Object.values(mod).find((v) => isObject(v) && "hyp" in v && "defaults" in v && "trainRun" in v);
  if (!exp) {
    throw new SpecError(`experiment "${name}": exports no experiment (an object with hyp and trainRun)`);
  }
  return exp as { hyp: Hyperparameters<BaseHyp>; defaults: RunOptions };
}

const toArgs = (flags: Record<string, string>) => Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]);

/** Expands and checks a spec: every configuration's flags through its experiment's parser, the baseline. */
export async function planSweep(spec: SweepSpec, specPath: string): Promise<Plan> {
  const fixed = Object.fromEntries(Object.entries(spec.flags ?? {}).map(([k, v]) => [strip(k), str(v)]));
  const seeds = typeof spec.seeds === "number" ? [...Array(spec.seeds).keys()] : spec.seeds;
  const multi = Array.isArray(spec.experiment) && spec.experiment.length > 1;
  const configs: Config[] = [];
  for (const [i, c] of configurations(spec).entries()) {
    const both = Object.keys(c.varied).find((k) => k in fixed);
    if (both) throw new SpecError(`${specPath}: --${both} is both in "flags" and in the grid/list`);
    const abs = experimentFile(c.experiment, specPath);
    const label = [
      multi ? `experiment=${c.experiment}` : "",
      ...Object.entries(c.varied).map(([k, v]) => `${k}=${v}`),
    ]
      .filter(Boolean).join(" ") || "default";
    const args = toArgs({ ...fixed, ...c.varied });
    const exp = await loadExperiment(abs, c.experiment);
    for (const seed of [seeds[0], seeds[seeds.length - 1]]) {
      try {
        parseCommandLine([...args, "--runs", "1", "--seed", String(seed)], exp.hyp, exp.defaults);
      } catch (e) {
        throw new SpecError(`configuration c${i} (${label}) of ${c.experiment}: ${(e as Error).message}`);
      }
    }
    const experiment = relative(ROOT, abs).startsWith("..") ? abs : relative(ROOT, abs).split("\\").join("/");
    configs.push({ id: `c${i}`, label, experiment, varied: c.varied, args });
  }
  const runs = configs.flatMap((c, ci) =>
    seeds.map((seed, si) => ({
      index: ci * seeds.length + si,
      config: c.id,
      seed,
      dir: `${c.id}-${c.label.replace(/[^A-Za-z0-9.,=_-]+/g, "_").slice(0, 60)}/seed-${seed}`,
    }))
  );
  const name = specPath.replace(/^.*[\\/]/, "").replace(/\.[^.]+$/, "");
  return {
    name,
    spec: resolve(specPath),
    configs,
    seeds,
    baseline: baselineOf(spec, configs, specPath),
    resolve: spec.resolve,
    runs,
  };
}

function baselineOf(spec: SweepSpec, configs: Config[], specPath: string): string | undefined {
  if (!spec.baseline) return undefined;
  const want = Object.entries(spec.baseline).map(([k, v]) => [strip(k), str(v)]);
  const hits = configs.filter((c) =>
    want.every(([k, v]) => k === "experiment" ? c.experiment === v : c.varied[k] === v)
  );
  const text = want.map(([k, v]) => `${k}=${v}`).join(" ");
  if (hits.length !== 1) {
    throw new SpecError(
      `${specPath}: baseline (${text}) matches ${hits.length} configurations; it must name exactly one`,
    );
  }
  return hits[0].id;
}

/** What must not change when a sweep's folder is resumed: the configurations' commands and the seeds. */
export function planKey(p: Plan): string {
  return JSON.stringify({ configs: p.configs.map((c) => [c.experiment, c.args]), seeds: p.seeds });
}
