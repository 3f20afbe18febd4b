// The JSON log of an experiment run: created exclusively (never overwriting another run's log), rewritten
// atomically as the run goes, and a fingerprint of the code that ran (git commit, dirty flag, and the SHA-256
// of every file under lib/ and kernels/).

import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { ROOT } from "../root.ts";
import { writeFileAtomic } from "./atomic.ts";

export interface Fingerprint {
  commit: string | null;
  dirty: boolean | null;
  /**
   * Which files of lib/, kernels/ and the experiment file differ from the commit (git status --porcelain
   * lines: "M lib/train/session.ts", "?? my_experiment.ts"); null without git. Absent in older logs.
   */
  dirty_files?: string[] | null;
  files: Record<string, string>;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * SHA-256 of a state dict's values: each tensor's float32 bytes (little-endian), entries in the state dict's
 * order. Two runs have the same digest only when every weight and buffer is the same, bit for bit.
 */
export function stateDigest(tensors: Record<string, { data: Float32Array }>): string {
  const h = createHash("sha256");
  for (const t of Object.values(tensors)) {
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest("hex");
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...listFiles(path));
    else if (e.isFile) out.push(path);
  }
  return out;
}

function git(args: string[]): string | null {
  try {
    const r = new Deno.Command("git", { args: ["-C", ROOT, ...args], stdout: "piped", stderr: "null" })
      .outputSync();
    return r.success ? new TextDecoder().decode(r.stdout).trim() : null;
  } catch {
    return null; // no git on this machine
  }
}

/** `git status --porcelain` output as one "XY path" entry per changed file (leading blanks dropped). */
export function porcelainFiles(status: string): string[] {
  return status.split("\n").map((l) => l.trim()).filter(Boolean);
}

/**
 * What code ran: every file under lib/ and kernels/ by SHA-256, plus git's commit, dirty flag and which of
 * lib/, kernels/ and `experiment` (a project-relative path) differ from the commit.
 */
export function fingerprint(root = ROOT, experiment?: string): Fingerprint {
  const files: Record<string, string> = {};
  for (const dir of ["lib", "kernels"]) {
    for (const path of listFiles(join(root, dir)).sort()) {
      files[relative(root, path).split("\\").join("/")] = sha256(Deno.readFileSync(path));
    }
  }
  const commit = root === ROOT ? git(["rev-parse", "HEAD"]) : null;
  const status = commit === null ? null : git(["status", "--porcelain", "--untracked-files=no"]);
  const paths = ["lib", "kernels", ...(experiment ? [experiment] : [])];
  const changed = commit === null
    ? null
    : git(["status", "--porcelain", "--untracked-files=all", "--", ...paths]);
  return {
    commit,
    dirty: status === null ? null : status.length > 0,
    dirty_files: changed === null ? null : porcelainFiles(changed),
    files,
  };
}

/**
 * A new log file in `dir`, created exclusively: `<stamp>.json`, or `<stamp>-1.json`, ... when another run
 * took the name in the same millisecond.
 */
export function createLogPath(dir: string, stamp: string): string {
  Deno.mkdirSync(dir, { recursive: true });
  for (let i = 0;; i++) {
    const path = join(dir, `${stamp}${i ? `-${i}` : ""}.json`);
    try {
      Deno.writeTextFileSync(path, "{}", { createNew: true });
      return path;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/** A log the run writes through: a file (LogFile) in Deno, an object the page shows and offers in a browser. */
export interface SavedLog<T> {
  readonly path: string;
  readonly data: T;
  save(): void;
}

/** A JSON log rewritten in full (atomically) at every save. */
export class LogFile<T> implements SavedLog<T> {
  constructor(readonly path: string, readonly data: T) {}
  save(): void {
    writeFileAtomic(this.path, JSON.stringify(this.data, null, 1));
  }
}

/**
 * Checks before any expensive work that an output path can be written: a folder for --log-dir (created if
 * missing), a file path for --save-weights (its folder must exist or be creatable, and it must not be a
 * folder). Throws naming the flag.
 */
export function checkWritable(flag: string, path: string, kind: "dir" | "file"): void {
  const fail = (why: string) => {
    throw new Error(`${flag} ${path}: ${why}`);
  };
  let stat: Deno.FileInfo | undefined;
  try {
    stat = Deno.statSync(path);
  } catch { /* does not exist yet */ }
  if (kind === "dir" && stat && !stat.isDirectory) {
    fail("is a file, not a folder; name a folder");
  }
  if (kind === "file" && stat?.isDirectory) fail("is a folder; name a file such as weights.safetensors");
  const dir = kind === "dir" ? path : join(path, "..");
  try {
    Deno.mkdirSync(dir, { recursive: true });
    const probe = join(dir, `.write-test-${Deno.pid}-${crypto.randomUUID()}`);
    Deno.writeTextFileSync(probe, "", { createNew: true });
    Deno.removeSync(probe);
  } catch (e) {
    fail(`cannot write there (${(e as Error).message.split("\n")[0]}); choose a writable location`);
  }
}
