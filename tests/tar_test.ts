import assert from "node:assert/strict";
import { readTar, TarReader, writeTar } from "../lib/tar.ts";

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

/** Set a header's type flag and fix its checksum, to build GNU records writeTar doesn't make. */
function retype(tar: Uint8Array, headerOffset: number, flag: string): void {
  const h = tar.subarray(headerOffset, headerOffset + 512);
  h[156] = flag.charCodeAt(0);
  h.fill(32, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
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
