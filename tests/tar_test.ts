import assert from "node:assert/strict";
import { escapeBytes, isTarHeader, readTar, TarReader, writeTar } from "../lib/data/tar.ts";

const enc = new TextEncoder();

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 255);
}

const FILES = [
  { name: "dir/a.bin", data: bytes(1000, 1) },
  { name: "dir/empty", data: new Uint8Array(0) },
  { name: "dir/exact.bin", data: bytes(1024, 2) },
  { name: "b.txt", data: enc.encode("hello") },
];

/** Recompute a header's checksum after editing it. */
function fixChecksum(tar: Uint8Array, headerOffset: number): void {
  const h = tar.subarray(headerOffset, headerOffset + 512);
  h.fill(32, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
}

/** Set a header's type flag and fix its checksum, to build GNU records writeTar doesn't make. */
function retype(tar: Uint8Array, headerOffset: number, flag: string): void {
  tar[headerOffset + 156] = flag.charCodeAt(0);
  fixChecksum(tar, headerOffset);
}

/** An error message that is safe to print: printable ASCII only. */
function assertPrintable(msg: string): void {
  assert.match(msg, /^[\x20-\x7e]*$/, `not printable: ${JSON.stringify(msg)}`);
}

Deno.test("tar: round trip through writeTar/readTar", () => {
  const got = readTar(writeTar(FILES));
  assert.deepEqual(got.map((e) => e.name), FILES.map((f) => f.name));
  for (const [i, e] of got.entries()) {
    assert.equal(e.size, FILES[i].data.length);
    assert.deepEqual(e.data, FILES[i].data);
  }
});

Deno.test("tar: any chunking gives the same entries", () => {
  const tar = writeTar(FILES);
  for (const step of [1, 7, 511, 513, 4096]) {
    const got: string[] = [];
    const r = new TarReader((e) => got.push(`${e.name}:${e.data.reduce((a, b) => a + b, 0)}`));
    for (let p = 0; p < tar.length; p += step) r.push(tar.subarray(p, p + step));
    r.end();
    assert.deepEqual(got, FILES.map((f) => `${f.name}:${f.data.reduce((a, b) => a + b, 0)}`), `step ${step}`);
  }
});

Deno.test("tar: want() skips members without buffering them", () => {
  const got = readTar(writeTar(FILES), (name) => name.endsWith(".bin"));
  assert.deepEqual(got.map((e) => e.name), ["dir/a.bin", "dir/exact.bin"]);
});

Deno.test("tar: GNU long name record names the next member", () => {
  const long = "x/".repeat(80) + "long.bin";
  const tar = writeTar([{ name: "././@LongLink", data: enc.encode(long + "\0") }, FILES[0]]);
  retype(tar, 0, "L");
  const got = readTar(tar);
  assert.equal(got.length, 1);
  assert.equal(got[0].name, long);
  assert.deepEqual(got[0].data, FILES[0].data);
});

Deno.test("tar: truncated archive and corrupt header are errors", () => {
  const tar = writeTar(FILES);
  assert.throws(() => readTar(tar.subarray(0, 900)), /truncated inside member dir\/a\.bin/);
  assert.throws(() => readTar(tar.subarray(0, 300)), /truncated inside a header/);
  const bad = tar.slice();
  bad[10] ^= 1; // inside the first name field
  assert.throws(() => readTar(bad), /header checksum mismatch/);
});

/** The message of the error fn throws. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail("expected an error");
}

Deno.test("tar: bad header fields are reported with their bytes escaped", () => {
  // A size field holding a terminal escape sequence, a bell, invalid UTF-8, a quote and a backslash,
  // with a valid checksum so that the size field is what gets parsed.
  const tar = writeTar(FILES);
  tar.set([0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x07, 0xff, 0xfe, 0x22, 0x5c, 0x39, 0], 124);
  fixChecksum(tar, 0);
  const msg = errorOf(() => readTar(tar));
  assertPrintable(msg);
  assert.ok(msg.includes(String.raw`size field "\x1b[31m\x07\xff\xfe\x22\x5c9" is not octal`), msg);

  // Not a tar at all: the checksum field is garbage.
  const junk = Uint8Array.from({ length: 1024 }, (_, i) => (i * 37 + 11) & 255);
  junk.set([0x1b, 0x0d, 0x0a, 0x7f, 0x00], 148);
  assert.equal(isTarHeader(junk), false);
  const junkMsg = errorOf(() => readTar(junk));
  assertPrintable(junkMsg);
  assert.ok(junkMsg.includes(String.raw`checksum field "\x1b\x0d\x0a\x7f" is not octal`), junkMsg);
});

Deno.test("tar: member names with control characters are escaped in errors", () => {
  const tar = writeTar([{ name: "evil\x1b[2J\x07.bin", data: new Uint8Array(2000) }]);
  const msg = errorOf(() => readTar(tar.subarray(0, 1000)));
  assertPrintable(msg);
  assert.ok(msg.includes(String.raw`member evil\x1b[2J\x07.bin (488 of 2000 bytes)`), msg);
});

Deno.test("tar: escapeBytes and isTarHeader", () => {
  assert.equal(
    escapeBytes(Uint8Array.of(0x41, 0x00, 0x22, 0x5c, 0x7f, 0xe9)),
    String.raw`"A\x00\x22\x5c\x7f\xe9"`,
  );
  const tar = writeTar(FILES);
  assert.equal(isTarHeader(tar), true);
  assert.equal(isTarHeader(new Uint8Array(512)), true); // end-of-archive block
  assert.equal(isTarHeader(tar.subarray(0, 100)), false);
  const bad = tar.slice(0, 512);
  bad[0] ^= 1;
  assert.equal(isTarHeader(bad), false);
});
