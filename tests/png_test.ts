import assert from "node:assert/strict";
import { crc32, decodePng } from "../lib/data/png.ts";
import { encodePng } from "./png_encode.ts";

function pixels(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) >>> 0) >>> 24);
}

Deno.test("png: crc32 matches the standard check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("png: every filter type and channel count round-trips", () => {
  for (const ch of [1, 2, 3, 4]) {
    for (const filters of [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0]]) {
      const w = 13, h = 9, px = pixels(w * h * ch, ch * 10 + filters[0]);
      const img = decodePng(encodePng(w, h, ch, px, { filters, parts: 3 }));
      assert.deepEqual([img.width, img.height, img.channels], [w, h, ch]);
      assert.deepEqual(img.data, px, `channels ${ch}, filters ${filters}`);
    }
  }
});

Deno.test("png: bad inputs give errors naming the file", () => {
  const good = encodePng(4, 3, 3, pixels(36, 1));
  assert.throws(() => decodePng(good.subarray(1), "x.png"), /^Error: x\.png: not a PNG file/);
  assert.throws(() => decodePng(good.subarray(0, good.length - 20), "x.png"), /x\.png: .*truncated/);
  const badCrc = good.slice();
  badCrc[29] ^= 1; // IHDR's CRC
  assert.throws(() => decodePng(badCrc, "x.png"), /IHDR CRC mismatch/);
  assert.deepEqual(decodePng(badCrc, "x.png", false).data, decodePng(good).data); // CRC check is optional
  const deep = encodePng(4, 3, 3, pixels(36, 1), { depth: 16 });
  assert.throws(() => decodePng(deep, "x.png"), /unsupported format \(bit depth 16/);
  const tall = encodePng(4, 3, 3, pixels(36, 1), { ihdrHeight: 4 });
  assert.throws(() => decodePng(tall, "x.png"), /image data is 39 bytes, expected 52 for 4x4/);
  const short = encodePng(4, 3, 3, pixels(36, 1), { ihdrHeight: 2 });
  assert.throws(() => decodePng(short, "x.png"), /image data is 27 bytes, expected 26/);
});
