// The verified CIFAR-10 cache, <dataDir>/cifar-10-batches-bin: verified by content every time it is read
// (SHA-256 of the bytes loaded, never sizes or times), and filled under a lock file so that concurrent first
// runs download once and never see each other's temp files.
import { createHash } from "node:crypto";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../io/atomic.ts";
import {
  BATCH_NAMES,
  BATCH_SHA256,
  type Batches,
  type CifarSplit,
  IMAGE_BYTES,
  PER_BATCH,
  RECORD_BYTES,
  type Say,
  sha256Hex,
} from "./cifar_batches.ts";

const STAMP = "verified.json";
/** The cache's lock file, in dataDir next to the cache folder: writers of the cache hold an OS lock on it. */
export const CACHE_LOCK = ".cifar-10-batches-bin.lock";
/** Environment variable naming the data folder (the cache goes in its cifar-10-batches-bin/). */
export const DATA_ENV = "AIRBENCH_DATA";

/**
 * The folder the cache goes in (as <dir>/cifar-10-batches-bin): $AIRBENCH_DATA when set, else the
 * project's data/ folder, found from this module's location so that it does not depend on where the
 * program is run from.
 */
export function defaultDataDir(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get(DATA_ENV);
  } catch (e) {
    throw new Error(
      `CIFAR-10: cannot read $${DATA_ENV} (${(e as Error).message}); run with --allow-env or -A`,
    );
  }
  if (env) return resolve(env);
  const url = new URL("../../data", import.meta.url);
  // Run from a URL rather than a checkout, there is no project folder: use ./data.
  return url.protocol === "file:" ? fileURLToPath(url) : resolve("data");
}

/** verified.json: the size and SHA-256 of each batch as written (what the cache is checked against). */
interface Stamp {
  [name: string]: { size: number; sha256: string };
}

async function readStamp(dir: string): Promise<Stamp | null> {
  try {
    const v = JSON.parse(await Deno.readTextFile(join(dir, STAMP)));
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

/**
 * Remove batch files, stamp and temp files, so a damaged cache is never trusted. Only called while
 * holding the cache lock: every writer holds it, so any temp file here is a crashed writer's leftover.
 */
export async function clearCache(dir: string): Promise<void> {
  const names = [STAMP, ...BATCH_NAMES]; // the stamp first: it must never vouch for half a cache
  try {
    for await (const e of Deno.readDir(dir)) if (/^\..*\.tmp$/.test(e.name)) names.push(e.name);
  } catch { /* no folder, nothing to clear */ }
  for (const name of names) await Deno.remove(join(dir, name)).catch(() => {});
}

/**
 * Take the cache's lock (an OS file lock on <dataDir>/.cifar-10-batches-bin.lock: released when the process
 * ends, however it ends). Waits while another process holds it. Returns null, having said why, when the
 * folder or the lock cannot be had: the caller then goes on without the cache.
 */
export async function lockCache(dataDir: string, cacheDir: string, say: Say): Promise<Deno.FsFile | null> {
  let f: Deno.FsFile | undefined;
  try {
    await Deno.mkdir(cacheDir, { recursive: true });
    f = await Deno.open(join(dataDir, CACHE_LOCK), { read: true, write: true, create: true });
    if (!await f.tryLock(true)) {
      say(`CIFAR-10: waiting for another process that is filling the cache ${cacheDir}`);
      await f.lock(true);
    }
    return f;
  } catch (e) {
    f?.close();
    say(`CIFAR-10: cannot use the cache ${cacheDir} (${(e as Error).message}); continuing without it`);
    return null;
  }
}

/**
 * Read batch files straight into one split through a small reused buffer (on some hosts touching fresh
 * memory dominates, so we avoid holding whole files next to the final arrays), hashing the bytes as they
 * are read. `want[k]`, when given, is the SHA-256 file k must have. Throws a one-line error naming the file.
 */
async function readSplitHashed(
  paths: string[],
  want: (string | undefined)[] = [],
): Promise<{ split: CifarSplit; shas: string[] }> {
  const infos = await Promise.all(paths.map((p) => Deno.stat(p)));
  for (const [k, info] of infos.entries()) {
    if (info.size === 0 || info.size % RECORD_BYTES !== 0) {
      const why = `${info.size} bytes is not a whole number of ${RECORD_BYTES}-byte records`;
      throw new Error(`CIFAR-10: ${basename(paths[k])}: ${why}`);
    }
  }
  const n = infos.reduce((a, i) => a + i.size / RECORD_BYTES, 0);
  const images = new Uint8Array(n * IMAGE_BYTES), labels = new Uint8Array(n);
  const buf = new Uint8Array(1024 * RECORD_BYTES);
  const shas: string[] = [];
  let i = 0;
  for (const [k, path] of paths.entries()) {
    const name = basename(path), hash = createHash("sha256");
    const changed = () => new Error(`CIFAR-10: ${name} changed while being read`);
    let total = 0;
    using f = await Deno.open(path);
    for (let got = -1; got !== 0;) {
      got = 0; // fill buf with whole records, or up to end of file
      for (let r; got < buf.length && (r = await f.read(buf.subarray(got))); got += r);
      total += got;
      if (total > infos[k].size) throw changed();
      hash.update(buf.subarray(0, got));
      for (let o = 0; o + RECORD_BYTES <= got; o += RECORD_BYTES, i++) {
        if (buf[o] > 9) {
          throw new Error(
            `CIFAR-10: ${name}: record ${(total - got + o) / RECORD_BYTES} has label ${buf[o]}`,
          );
        }
        labels[i] = buf[o];
        images.set(buf.subarray(o + 1, o + RECORD_BYTES), i * IMAGE_BYTES);
      }
    }
    if (total !== infos[k].size) throw changed();
    const sha = hash.digest("hex");
    if (want[k] !== undefined && sha !== want[k]) {
      throw new Error(
        `CIFAR-10: ${name}: SHA-256 mismatch (got ${sha.slice(0, 12)}…, want ${want[k]!.slice(0, 12)}…)`,
      );
    }
    shas.push(sha);
  }
  return { split: { images, labels, n }, shas };
}

type CacheRead =
  | { ok: true; train: CifarSplit; test: CifarSplit }
  | { ok: false; absent: boolean; why: string };

/**
 * Read the cache, verifying the SHA-256 of every byte loaded: against `expected` when given, else against
 * the stamp written with the files. Never trusts sizes or times alone.
 */
export async function readCache(dir: string, expected: Record<string, string> | null): Promise<CacheRead> {
  const damaged = (why: string): CacheRead => ({ ok: false, absent: false, why });
  const infos = await Promise.all(BATCH_NAMES.map((n) => Deno.stat(join(dir, n)).catch(() => null)));
  if (infos.every((i) => i === null)) return { ok: false, absent: true, why: "empty" };
  const missing = BATCH_NAMES.filter((_, i) => !infos[i]);
  if (missing.length) return damaged(`${missing.join(", ")} missing`);
  for (const [k, name] of BATCH_NAMES.entries()) {
    if (expected === BATCH_SHA256 && infos[k]!.size !== PER_BATCH * RECORD_BYTES) {
      return damaged(`${name}: ${infos[k]!.size} bytes, expected ${PER_BATCH * RECORD_BYTES}`);
    }
  }
  const stamp = expected ? null : await readStamp(dir);
  const want = BATCH_NAMES.map((n) => expected ? expected[n] : stamp?.[n]?.sha256);
  if (want.some((w) => typeof w !== "string")) return damaged(`${STAMP} missing or incomplete`);
  const paths = BATCH_NAMES.map((n) => join(dir, n));
  try {
    const [train, test] = await Promise.all([
      readSplitHashed(paths.slice(0, 5), want.slice(0, 5)),
      readSplitHashed(paths.slice(5), want.slice(5)),
    ]);
    return { ok: true, train: train.split, test: test.split };
  } catch (e) {
    return damaged((e as Error).message.replace(/^CIFAR-10: /, ""));
  }
}

/**
 * Make the cache hold `batches` (already verified), writing only the files whose content differs, each
 * through a unique temp name and a rename, the stamp last. Call while holding the cache lock. Returns
 * the names of the batch files that were there and differed (replaced), and whether anything was written.
 */
export async function fillCache(
  dir: string,
  batches: Batches,
  shas: Record<string, string>,
): Promise<{ written: boolean; replaced: string[] }> {
  await Deno.mkdir(dir, { recursive: true });
  const stale: string[] = [], replaced: string[] = [];
  for (const name of BATCH_NAMES) {
    let old: Uint8Array | null = null;
    try {
      old = await Deno.readFile(join(dir, name));
    } catch { /* not there */ }
    if (old && sha256Hex(old) === shas[name]) continue;
    stale.push(name);
    if (old) replaced.push(name);
  }
  const stamp = await readStamp(dir);
  const stampOk = BATCH_NAMES.every((n) =>
    stamp?.[n]?.sha256 === shas[n] && stamp?.[n]?.size === batches.get(n)!.length
  );
  // Leftover temp files are a crashed writer's: we hold the lock.
  for await (const e of Deno.readDir(dir)) {
    if (/^\..*\.tmp$/.test(e.name)) await Deno.remove(join(dir, e.name)).catch(() => {});
  }
  if (!stale.length && stampOk) return { written: false, replaced };
  await Deno.remove(join(dir, STAMP)).catch(() => {}); // an old stamp must not vouch for new files
  for (const name of stale) writeFileAtomic(join(dir, name), batches.get(name)!);
  const out: Stamp = {};
  for (const name of BATCH_NAMES) out[name] = { size: batches.get(name)!.length, sha256: shas[name] };
  writeFileAtomic(join(dir, STAMP), new TextEncoder().encode(JSON.stringify(out, null, 1) + "\n"));
  return { written: true, replaced };
}
