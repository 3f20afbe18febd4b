// Where CIFAR-10's batches come from besides the cache: the official archive (a path the user names, or
// the download), a folder of the six .bin files. Each source returns the six raw batch files; verification
// happens in one place (loadCifar10). The npm sprites are in lib/data/cifar_npm.ts.
import { basename, join } from "node:path";
import { Gunzip } from "fflate";
import { escapeBytes, isTarHeader, TarReader } from "./tar.ts";
import { BATCH_NAMES, BATCH_SHA256, type Batches, PER_BATCH, RECORD_BYTES } from "./cifar_batches.ts";

export const PATH_FIX =
  "pass --data the official cifar-10-binary.tar.gz or a folder holding the six .bin files";

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
export type PathPlan =
  | { kind: "folder"; files: Map<string, string> } // batch name -> file
  | { kind: "archive"; gzipped: boolean; size: number };

/**
 * Check an explicit --data path up front (it exists, is readable, is a gzip or tar archive, or a folder
 * holding the six batch files of plausible sizes) so that bad input fails in one line before any
 * expensive work.
 */
export async function checkPath(path: string, expected: Record<string, string> | null): Promise<PathPlan> {
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

export async function fromPath(
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

export async function fromOfficial(
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

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
