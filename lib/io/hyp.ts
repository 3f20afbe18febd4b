// Hyperparameters as data. An experiment file declares its `hyp` as a tree (nested sections) whose leaves are
// `param(value, help, bounds)`: the default, its help text and its checks next to each other. Every leaf is a
// command-line flag without any edit of the library: `--key-name` (the key with "_" as "-"), or the name the
// leaf gives (`flag: "epochs"`). Numbers, booleans, strings and lists of numbers; a bad value is one line
// that names the flag and what it accepts.

/** Checks of a number (or of each number of a list); a string leaf may only have `choices`. */
export interface Bounds {
  /** value >= min */
  min?: number;
  /** value <= max */
  max?: number;
  /** value > above */
  above?: number;
  /** value < below */
  below?: number;
  int?: boolean;
  /** value % multipleOf == 0 */
  multipleOf?: number;
  /** A factor a kernel takes as f32: finite, nonzero and normal in f32 (|value| in [2^-126, 3.4e38]). */
  f32?: boolean;
  choices?: readonly (number | string)[];
}

const F32_MIN_NORMAL = 2 ** -126;

export type Leaf = number | boolean | string | number[];

export interface Param<T extends Leaf> extends Bounds {
  readonly value: T;
  readonly help: string;
  /** The flag's name when it is not the key with "_" as "-" (airbench's train_epochs is --epochs). */
  readonly flag?: string;
}

const PARAM = Symbol("param");
type Tagged<T extends Leaf> = Param<T> & { readonly [PARAM]: true };

/** A hyperparameter: its default value, its help text, and its checks (see Bounds), e.g. `{ min: 0 }`. */
export function param(value: number, help: string, o?: Bounds & { flag?: string }): Param<number>;
export function param(value: boolean, help: string, o?: { flag?: string }): Param<boolean>;
export function param(value: string, help: string, o?: { flag?: string; choices?: string[] }): Param<string>;
export function param(value: number[], help: string, o?: Bounds & { flag?: string }): Param<number[]>;
export function param(value: Leaf, help: string, o: Bounds & { flag?: string } = {}): Param<Leaf> {
  const p = { ...o, value, help, [PARAM]: true as const };
  const problem = check(p, value);
  if (problem) throw new Error(`param(${JSON.stringify(value)}, "${help}"): the default is not ${problem}`);
  return p;
}

export type HypDecl = { readonly [key: string]: Param<Leaf> | HypDecl };

/** The values of a declaration: each leaf's type, sections as nested objects. */
export type HypValues<D> = { -readonly [K in keyof D]: D[K] extends Param<infer T> ? T : HypValues<D[K]> };

/** One leaf of a declaration with its path and flag name. */
export interface HypFlag {
  path: string[];
  flag: string;
  param: Param<Leaf>;
}

/** A declared `hyp`: its default values (a fresh copy each time) and one flag per leaf. */
export class Hyperparameters<H> {
  readonly flags: HypFlag[] = [];

  constructor(readonly decl: HypDecl) {
    const walk = (d: HypDecl, path: string[]) => {
      for (const [k, v] of Object.entries(d)) {
        if (isParam(v)) {
          this.flags.push({ path: [...path, k], flag: v.flag ?? k.replaceAll("_", "-"), param: v });
        } else walk(v, [...path, k]);
      }
    };
    walk(decl, []);
    const seen = new Map<string, string>();
    for (const f of this.flags) {
      const had = seen.get(f.flag);
      if (had) {
        throw new Error(
          `hyperparameters ${had} and ${f.path.join(".")} are both --${f.flag}: give one a flag name`,
        );
      }
      seen.set(f.flag, f.path.join("."));
    }
  }

  /** The default of the flag `--name` as a command line writes it (a list comma-separated). */
  defaultText(name: string): string | undefined {
    const f = this.flags.find((x) => x.flag === name);
    if (!f) return undefined;
    return Array.isArray(f.param.value) ? f.param.value.join(",") : String(f.param.value);
  }

  /** The declared values (a new object each call: change it freely). */
  get defaults(): H {
    const values = (d: HypDecl): Record<string, unknown> =>
      Object.fromEntries(
        Object.entries(d).map(([k, v]) => [k, isParam(v) ? structuredClone(v.value) : values(v)]),
      );
    return values(this.decl) as H;
  }
}

/** Declare an experiment's `hyp`: sections of `param(value, help, bounds)` leaves. */
export function hyperparameters<D extends HypDecl>(decl: D): Hyperparameters<HypValues<D>> {
  return new Hyperparameters<HypValues<D>>(decl);
}

function isParam(v: Param<Leaf> | HypDecl): v is Param<Leaf> {
  return (v as Tagged<Leaf>)[PARAM] === true;
}

/** The value at a leaf's path. */
export function getAt(h: unknown, path: string[]): unknown {
  return path.reduce((o, k) => (o as Record<string, unknown>)[k], h);
}

/** Set the value at a leaf's path. */
export function setAt(h: unknown, path: string[], v: unknown): void {
  const parent = getAt(h, path.slice(0, -1)) as Record<string, unknown>;
  parent[path[path.length - 1]] = v;
}

/** What a leaf accepts, in words ("a number in [0, 1)", "comma-separated integers, each a multiple of 4"). */
export function accepts(p: Param<Leaf>): string {
  if (typeof p.value === "boolean") return "true or false";
  if (p.choices) return `one of ${p.choices.join(", ")}`;
  if (typeof p.value === "string") return "a non-empty value";
  const conds: string[] = [];
  if (p.min !== undefined && (p.below !== undefined || p.max !== undefined)) {
    conds.push(`in [${p.min}, ${p.below ?? p.max}${p.below !== undefined ? ")" : "]"}`);
  } else if (p.above !== undefined && (p.below !== undefined || p.max !== undefined)) {
    conds.push(`in (${p.above}, ${p.below ?? p.max}${p.below !== undefined ? ")" : "]"}`);
  } else {
    if (p.min !== undefined) conds.push(`>= ${p.min}`);
    if (p.above !== undefined) conds.push(`> ${p.above}`);
    if (p.max !== undefined) conds.push(`<= ${p.max}`);
    if (p.below !== undefined) conds.push(`< ${p.below}`);
  }
  if (p.multipleOf !== undefined) conds.unshift(`a multiple of ${p.multipleOf}`);
  if (p.f32) conds.push(`finite and nonzero in f32 (${F32_MIN_NORMAL.toPrecision(2)} <= |x| <= 3.4e38)`);
  const what = p.int ? "integer" : "number";
  if (Array.isArray(p.value)) {
    return `comma-separated ${what}s${conds.length ? `, each ${conds.join(" and ")}` : ""}, e.g. ${
      p.value.join(",")
    }`;
  }
  return `${what === "integer" ? "an integer" : "a number"}${conds.length ? ` ${conds.join(" and ")}` : ""}`;
}

/** Why `v` is not acceptable for `p` (the words of `accepts`), or undefined when it is. */
function check(p: Param<Leaf>, v: Leaf): string | undefined {
  const bad = () => accepts(p);
  if (typeof p.value !== typeof v || Array.isArray(p.value) !== Array.isArray(v)) return bad();
  if (typeof v === "boolean") return undefined;
  if (typeof v === "string") return v === "" || (p.choices && !p.choices.includes(v)) ? bad() : undefined;
  const nums = Array.isArray(v) ? v : [v as number];
  if (Array.isArray(v) && v.length === 0) return bad();
  for (const x of nums) {
    if (!Number.isFinite(x) || (p.int && !Number.isSafeInteger(x))) return bad();
    if (p.choices && !p.choices.includes(x)) return bad();
    if (p.min !== undefined && !(x >= p.min)) return bad();
    if (p.max !== undefined && !(x <= p.max)) return bad();
    if (p.above !== undefined && !(x > p.above)) return bad();
    if (p.below !== undefined && !(x < p.below)) return bad();
    if (p.multipleOf !== undefined && x % p.multipleOf !== 0) return bad();
    const f = Math.fround(x);
    if (p.f32 && !(Number.isFinite(f) && Math.abs(f) >= F32_MIN_NORMAL)) return bad();
  }
  return undefined;
}

/** A flag's text as the leaf's value, or the reason it is not one (what the leaf accepts). */
export function parseLeaf(p: Param<Leaf>, raw: string): { value: Leaf } | { error: string } {
  const num = (s: string) => (s.trim() === "" ? NaN : Number(s));
  let v: Leaf;
  if (typeof p.value === "boolean") {
    if (!["true", "false", "1", "0"].includes(raw)) return { error: accepts(p) };
    v = raw === "true" || raw === "1";
  } else if (typeof p.value === "string") v = raw;
  else if (Array.isArray(p.value)) v = raw.split(",").map(num);
  else v = num(raw);
  const problem = check(p, v);
  return problem ? { error: problem } : { value: v };
}

/**
 * The keys of an experiment's `hyp` that the library reads: the batch size and epochs (the session, the
 * plan's length), the augmentation (the loader), the widths (messages) and the TTA level (evaluation).
 */
export interface BaseHyp {
  opt: { train_epochs: number; batch_size: number };
  aug: { flip: boolean; translate: number };
  net: { widths: number[]; tta_level: number };
}
