// A small PNG encoder for tests (the project only decodes PNG): 8-bit gray/RGB/RGBA, any of the five row
// filters, IDAT split into several chunks, and a few deliberate header faults.

import { concatBytes } from "../lib/io/bytes.ts";
import { zlibSync } from "fflate";
import { crc32 } from "../lib/data/png.ts";

const enc = new TextEncoder();

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  out.set(enc.encode(type), 4);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** Apply PNG filter `f` to a row (the inverse of what the decoder undoes). */
function filterRow(f: number, row: Uint8Array, up: Uint8Array | null, bpp: number): Uint8Array {
  const out = new Uint8Array(row.length + 1);
  out[0] = f;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0, b = up ? up[i] : 0, c = up && i >= bpp ? up[i - bpp] : 0;
    const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
    const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
    out[i + 1] = row[i] - pred;
  }
  return out;
}

const COLOR: Record<number, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };

/** Encode 8-bit pixels; row y uses filter filters[y % filters.length]; IDAT split in `parts` chunks. */
export function encodePng(
  w: number,
  h: number,
  ch: number,
  px: Uint8Array,
  opts: { filters?: number[]; parts?: number; depth?: number; ihdrHeight?: number } = {},
): Uint8Array {
  const filters = opts.filters ?? [0];
  const stride = w * ch;
  const rows: Uint8Array[] = [];
  for (let y = 0; y < h; y++) {
    const up = y ? px.subarray((y - 1) * stride, y * stride) : null;
    rows.push(filterRow(filters[y % filters.length], px.subarray(y * stride, (y + 1) * stride), up, ch));
  }
  const z = zlibSync(concatBytes(rows));
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w);
  dv.setUint32(4, opts.ihdrHeight ?? h);
  ihdr.set([opts.depth ?? 8, COLOR[ch], 0, 0, 0], 8);
  const n = opts.parts ?? 1, step = Math.ceil(z.length / n);
  const idats = [];
  for (let p = 0; p < z.length; p += step) idats.push(chunk("IDAT", z.subarray(p, p + step)));
  return concatBytes([
    Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    ...idats,
    chunk("IEND", new Uint8Array(0)),
  ]);
}
