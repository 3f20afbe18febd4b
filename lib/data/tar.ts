// Minimal streaming tar (ustar / GNU) reader, plus a tiny writer for tests.
// Only regular files are reported; directories, links and pax metadata are skipped.

import { concatBytes } from "../io/bytes.ts";

export interface TarEntry {
  name: string;
  size: number;
  data: Uint8Array;
}

const BLOCK = 512;
const dec = new TextDecoder();

function cstr(b: Uint8Array): string {
  const end = b.indexOf(0);
  return dec.decode(end < 0 ? b : b.subarray(0, end));
}

/**
 * Header bytes as printable ASCII in double quotes, anything else (and `"`, `\\`) as \xNN: a corrupt or
 * foreign header must not put control characters or invalid UTF-8 on the user's terminal.
 */
export function escapeBytes(b: Uint8Array): string {
  let s = "";
  for (const c of b) {
    s += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c
      ? String.fromCharCode(c)
      : "\\x" + c.toString(16).padStart(2, "0");
  }
  return `"${s}"`;
}

/** A member name for an error message, with control characters escaped as \xNN. */
function printable(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
}

/** Numeric header field: octal text, or GNU base-256 (high bit set) for sizes >= 8 GiB. */
function num(b: Uint8Array, field: string): number {
  if (b[0] & 0x80) {
    let v = b[0] & 0x7f;
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i];
    return v;
  }
  const end = b.indexOf(0);
  const s = cstr(b).trim();
  if (!/^[0-7]*$/.test(s)) {
    const raw = escapeBytes(end < 0 ? b : b.subarray(0, end));
    throw new Error(`tar header: ${field} field ${raw} is not octal (not a tar archive, or corrupt)`);
  }
  return s ? parseInt(s, 8) : 0;
}

function checksumOk(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === num(h.subarray(148, 156), "checksum");
}

/** Whether a 512-byte block is a tar header (valid checksum) or an end-of-archive block. */
export function isTarHeader(block: Uint8Array): boolean {
  if (block.length < BLOCK) return false;
  const h = block.subarray(0, BLOCK);
  if (h.every((b) => b === 0)) return true;
  try {
    return checksumOk(h);
  } catch {
    return false;
  }
}

/**
 * Push-based tar parser: feed it chunks as they come (e.g. from a Gunzip stream) and it calls
 * `onEntry` for each complete regular file. `want` can skip members we don't need, so their
 * bytes are never buffered.
 */
export class TarReader {
  #head = new Uint8Array(BLOCK);
  #headLen = 0;
  #entry: { name: string; size: number; data: Uint8Array | null; got: number; kind: string } | null = null;
  #skip = 0; // padding bytes still to drop after a member's data
  #longName: string | null = null; // from a GNU 'L' or pax 'x' record, applies to the next member
  #done = false;
  #onEntry: (e: TarEntry) => void;
  #want: (name: string, size: number) => boolean;

  constructor(onEntry: (e: TarEntry) => void, want: (name: string, size: number) => boolean = () => true) {
    this.#onEntry = onEntry;
    this.#want = want;
  }

  push(chunk: Uint8Array): void {
    let p = 0;
    while (p < chunk.length && !this.#done) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - p);
        this.#skip -= n;
        p += n;
      } else if (this.#entry) {
        const e = this.#entry;
        const n = Math.min(e.size - e.got, chunk.length - p);
        e.data?.set(chunk.subarray(p, p + n), e.got);
        e.got += n;
        p += n;
        if (e.got === e.size) this.#finishEntry();
      } else {
        const n = Math.min(BLOCK - this.#headLen, chunk.length - p);
        this.#head.set(chunk.subarray(p, p + n), this.#headLen);
        this.#headLen += n;
        p += n;
        if (this.#headLen === BLOCK) {
          this.#headLen = 0;
          this.#header(this.#head);
        }
      }
    }
  }

  /** Call at end of input: throws if the archive stops inside a header or a member. */
  end(): void {
    if (this.#entry) {
      const e = this.#entry;
      throw new Error(`tar truncated inside member ${printable(e.name)} (${e.got} of ${e.size} bytes)`);
    }
    if (this.#headLen > 0) throw new Error("tar truncated inside a header block");
  }

  #header(h: Uint8Array): void {
    if (h.every((b) => b === 0)) {
      this.#done = true; // end-of-archive marker; whatever follows is padding
      return;
    }
    if (!checksumOk(h)) throw new Error("tar header checksum mismatch (not a tar archive, or corrupt)");
    const kind = String.fromCharCode(h[156] || 48); // NUL means regular file in old tars
    const size = num(h.subarray(124, 136), "size");
    const prefix = dec.decode(h.subarray(257, 262)) === "ustar" ? cstr(h.subarray(345, 500)) : "";
    let name = cstr(h.subarray(0, 100));
    if (prefix) name = `${prefix}/${name}`;
    if (this.#longName !== null) [name, this.#longName] = [this.#longName, null];
    const meta = kind === "L" || kind === "x"; // we need these records' contents ourselves
    const keep = meta || ((kind === "0" || kind === "7") && this.#want(name, size));
    this.#entry = { name, size, data: keep ? new Uint8Array(size) : null, got: 0, kind };
    if (size === 0) this.#finishEntry();
  }

  #finishEntry(): void {
    const e = this.#entry!;
    this.#entry = null;
    this.#skip = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (!e.data) return;
    if (e.kind === "L") this.#longName = cstr(e.data);
    else if (e.kind === "x") {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(dec.decode(e.data));
      if (m) this.#longName = m[1];
    } else this.#onEntry({ name: e.name, size: e.size, data: e.data });
  }
}

/** Read every regular file of an in-memory tar. */
export function readTar(bytes: Uint8Array, want?: (name: string, size: number) => boolean): TarEntry[] {
  const out: TarEntry[] = [];
  const r = new TarReader((e) => out.push(e), want);
  r.push(bytes);
  r.end();
  return out;
}

/** Build a ustar archive (names < 100 bytes). Used by tests to make synthetic archives. */
export function writeTar(files: { name: string; data: Uint8Array }[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const f of files) {
    const h = new Uint8Array(BLOCK);
    const field = (off: number, s: string) => h.set(enc.encode(s), off);
    field(0, f.name);
    field(100, "0000644\0");
    field(108, "0000000\0");
    field(116, "0000000\0");
    field(124, f.data.length.toString(8).padStart(11, "0") + "\0");
    field(136, "00000000000\0");
    field(156, "0");
    field(257, "ustar\0" + "00");
    h.fill(32, 148, 156);
    const sum = h.reduce((a, b) => a + b, 0);
    field(148, sum.toString(8).padStart(6, "0") + "\0 ");
    parts.push(h, f.data, new Uint8Array((BLOCK - (f.data.length % BLOCK)) % BLOCK));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return concatBytes(parts);
}
