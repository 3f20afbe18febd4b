/**
 * Minimal safetensors reader/writer (https://github.com/huggingface/safetensors).
 *
 * Layout: 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}` (padded with spaces to
 * 8-byte alignment), then the raw little-endian tensor data; offsets are relative to the start of the
 * data section.
 */

import { writeFileAtomic } from "./atomic.ts";

export type SafetensorsDType = "F32" | "F64" | "I32" | "I64" | "U8";

export type SafetensorsData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsData;
}

export interface SafetensorsFile {
  tensors: Record<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = { F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 };

// Header length cap (the reference implementation uses 100 MB).
const MAX_HEADER_BYTES = 100_000_000;

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

function expectedConstructor(dtype: SafetensorsDType): string {
  switch (dtype) {
    case "F32":
      return "Float32Array";
    case "F64":
      return "Float64Array";
    case "I32":
      return "Int32Array";
    case "I64":
      return "BigInt64Array";
    case "U8":
      return "Uint8Array";
  }
}

function numel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`safetensors: tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
  }
  return shape as number[];
}

/** Serialises tensors (and optional string metadata) to safetensors bytes. Tensors are written in name order. */
export function encodeSafetensors(
  tensors: Record<string, SafetensorsTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  if (!isLittleEndian()) throw new Error("safetensors: big-endian hosts are not supported");
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new Error(`safetensors: metadata value for "${k}" must be a string`);
    }
    header["__metadata__"] = metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === "__metadata__") throw new Error('safetensors: "__metadata__" is not a valid tensor name');
    const t = tensors[name];
    if (!(t.dtype in BYTES_PER_ELEMENT)) throw new Error(`safetensors: unsupported dtype ${t.dtype}`);
    const shape = checkShape(name, t.shape);
    if (t.data.constructor.name !== expectedConstructor(t.dtype)) {
      throw new Error(
        `safetensors: tensor "${name}" has dtype ${t.dtype} but data is a ${t.data.constructor.name}`,
      );
    }
    if (t.data.length !== numel(shape)) {
      throw new Error(
        `safetensors: tensor "${name}" has ${t.data.length} elements, shape ${JSON.stringify(shape)} needs ${
          numel(shape)
        }`,
      );
    }
    const nbytes = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let headerBytes = enc.encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad > 0) {
    json += " ".repeat(pad);
    headerBytes = enc.encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temporary file in the same directory, then rename). */
export function writeSafetensors(
  path: string,
  tensors: Record<string, SafetensorsTensor>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * The header of a safetensors file from its first bytes (`head`: at least the 8-byte length and the JSON) and
 * the file's total size; every entry checked (dtype, shape, offsets within the data, no overlaps).
 */
function decodeHeader(
  head: Uint8Array,
  fileSize: number,
): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  if (!isLittleEndian()) throw new Error("safetensors: big-endian hosts are not supported");
  if (fileSize < 8 || head.length < 8) throw new Error(`safetensors: file too short (${fileSize} bytes)`);
  const n64 = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw new Error(`safetensors: header length ${n64} is too large`);
  const n = Number(n64);
  if (8 + n > fileSize || 8 + n > head.length) {
    throw new Error(`safetensors: header length ${n} exceeds file size ${fileSize}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(head.subarray(8, 8 + n)));
  } catch (e) {
    throw new Error(`safetensors: invalid JSON header: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error("safetensors: header is not a JSON object");
  }
  const dataStart = 8 + n;
  const dataLen = fileSize - dataStart;
  const entries: HeaderEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
        throw new Error("safetensors: __metadata__ must be an object");
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") throw new Error(`safetensors: metadata value for "${k}" is not a string`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (entry === null || typeof entry !== "object") {
      throw new Error(`safetensors: entry for tensor "${name}" is not an object`);
    }
    const { dtype, shape, data_offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== "string" || !(dtype in BYTES_PER_ELEMENT)) {
      throw new Error(`safetensors: tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)}`);
    }
    const dt = dtype as SafetensorsDType;
    const sh = checkShape(name, shape);
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
      !data_offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new Error(
        `safetensors: tensor "${name}" has invalid data_offsets ${JSON.stringify(data_offsets)}`,
      );
    }
    const [begin, end] = data_offsets as number[];
    if (end < begin || end > dataLen) {
      throw new Error(
        `safetensors: tensor "${name}" data_offsets [${begin}, ${end}] out of range (data is ${dataLen} bytes)`,
      );
    }
    const bpe = BYTES_PER_ELEMENT[dt];
    if (end - begin !== numel(sh) * bpe) {
      throw new Error(
        `safetensors: tensor "${name}" has ${end - begin} bytes, shape ${JSON.stringify(sh)} ${dt} needs ${
          numel(sh) * bpe
        }`,
      );
    }
    entries.push({ name, dtype: dt, shape: sh, begin, end });
  }
  const ranges = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw new Error(`safetensors: tensors "${ranges[i - 1].name}" and "${ranges[i].name}" overlap`);
    }
  }
  return { entries, metadata, dataStart };
}

/** Parses safetensors bytes, returning tensors and metadata. Tensor data is copied (aligned, independent). */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsFile {
  const { entries, metadata, dataStart } = decodeHeader(bytes, bytes.length);
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const { name, dtype, shape, begin, end } of entries) {
    // Copy into a fresh buffer so the typed array is aligned and independent of `bytes` (explicitly: a
    // node Buffer's slice() is a view, not a copy).
    const copyBytes = new Uint8Array(end - begin);
    copyBytes.set(bytes.subarray(dataStart + begin, dataStart + end));
    const copy = copyBytes.buffer;
    let data: SafetensorsData;
    switch (dtype) {
      case "F32":
        data = new Float32Array(copy);
        break;
      case "F64":
        data = new Float64Array(copy);
        break;
      case "I32":
        data = new Int32Array(copy);
        break;
      case "I64":
        data = new BigInt64Array(copy);
        break;
      case "U8":
        data = new Uint8Array(copy);
        break;
    }
    tensors[name] = { dtype, shape, data };
  }
  return { tensors, metadata };
}

/**
 * Why the file at `path` is not a safetensors file (reading its header only), or undefined when it is one:
 * what may be replaced by new weights without losing anything else.
 */
export function safetensorsProblem(path: string): string | undefined {
  try {
    using f = Deno.openSync(path);
    const size = f.statSync().size;
    const len = new Uint8Array(8);
    const got = f.readSync(len) ?? 0;
    if (got < 8) return `${size} bytes`;
    const n = new DataView(len.buffer).getBigUint64(0, true);
    const head = new Uint8Array(8 + Number(n > BigInt(MAX_HEADER_BYTES) || 8n + n > size ? 0n : n));
    head.set(len);
    for (let o = 8, r; o < head.length && (r = f.readSync(head.subarray(o))); o += r);
    decodeHeader(head, size);
    return undefined;
  } catch (e) {
    return (e as Error).message.replace(/^safetensors: /, "");
  }
}

/** Parses safetensors bytes and returns the tensors (see `decodeSafetensors` for the metadata too). */
export function readSafetensors(bytes: Uint8Array): Record<string, SafetensorsTensor> {
  return decodeSafetensors(bytes).tensors;
}

/** Reads and parses a safetensors file from disk. */
export function loadSafetensors(path: string): SafetensorsFile {
  return decodeSafetensors(Deno.readFileSync(path));
}

/** Returns the tensor `name` as a Float32Array (converting F64), with a clear error if missing. */
export function getF32(tensors: Record<string, SafetensorsTensor>, name: string): Float32Array {
  const t = tensors[name];
  if (t === undefined) throw new Error(`safetensors: missing tensor "${name}"`);
  if (t.data instanceof Float32Array) return t.data;
  if (t.data instanceof Float64Array) return Float32Array.from(t.data);
  throw new Error(`safetensors: tensor "${name}" is ${t.dtype}, expected F32 or F64`);
}
