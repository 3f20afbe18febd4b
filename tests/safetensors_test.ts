import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  readSafetensors,
  type SafetensorsTensor,
  writeSafetensors,
} from "../lib/io/safetensors.ts";

function sampleTensors(): Record<string, SafetensorsTensor> {
  const f32 = new Float32Array(2 * 3 * 5);
  for (let i = 0; i < f32.length; i++) f32[i] = Math.fround(Math.sin(i) * 1e3);
  return {
    "b.f32": { dtype: "F32", shape: [2, 3, 5], data: f32 },
    "a.f64": { dtype: "F64", shape: [3], data: new Float64Array([Math.PI, -0, 1e-300]) },
    "i32": { dtype: "I32", shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
    "i64": { dtype: "I64", shape: [2], data: new BigInt64Array([-5n, 1n << 62n]) },
    "u8": { dtype: "U8", shape: [3], data: new Uint8Array([0, 7, 255]) }, // odd size: later tensors unaligned
    "scalar": { dtype: "F32", shape: [], data: new Float32Array([42]) },
    "empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    "z.after_u8": { dtype: "F64", shape: [1, 2], data: new Float64Array([1.5, -2.25]) },
  };
}

Deno.test("safetensors: encode/decode round trip keeps dtypes, shapes, values and metadata", () => {
  const tensors = sampleTensors();
  const metadata = { lr: "0.05", note: 'héllo "quoted"' };
  const bytes = encodeSafetensors(tensors, metadata);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0, "header padded to 8 bytes");
  const { tensors: back, metadata: meta } = decodeSafetensors(bytes);
  assert.deepEqual(meta, metadata);
  assert.deepEqual(Object.keys(back).sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    assert.equal(back[name].dtype, t.dtype, name);
    assert.deepEqual(back[name].shape, t.shape, name);
    assert.equal(back[name].data.constructor, t.data.constructor, name);
    assert.deepEqual(
      Array.from(back[name].data as ArrayLike<unknown>),
      Array.from(t.data as ArrayLike<unknown>),
    );
    assert.equal(back[name].data.byteOffset, 0, "copied into its own aligned buffer");
  }
  assert.ok(Object.is((back["a.f64"].data as Float64Array)[1], -0), "negative zero preserved");
  // readSafetensors returns the same tensors.
  assert.deepEqual(Object.keys(readSafetensors(bytes)).sort(), Object.keys(tensors).sort());
  // Decoding from an unaligned view of the bytes works too.
  const shifted = new Uint8Array(bytes.length + 3);
  shifted.set(bytes, 3);
  const back2 = readSafetensors(shifted.subarray(3));
  assert.deepEqual(Array.from(back2["z.after_u8"].data as Float64Array), [1.5, -2.25]);
});

Deno.test("safetensors: writeSafetensors writes atomically and loadSafetensors reads it back", () => {
  const dir = mkdtempSync(join(tmpdir(), "st-test-"));
  try {
    const path = join(dir, "x.safetensors");
    writeSafetensors(path, sampleTensors(), { k: "v" });
    assert.deepEqual(readdirSync(dir), ["x.safetensors"], "no temporary file left behind");
    const { tensors, metadata } = loadSafetensors(path);
    assert.deepEqual(metadata, { k: "v" });
    assert.deepEqual(Array.from(tensors["i32"].data as Int32Array), [0, -1, 2147483647, -2147483648]);
    // Overwrite in place.
    writeSafetensors(path, { only: { dtype: "U8", shape: [1], data: new Uint8Array([9]) } });
    assert.deepEqual(Object.keys(loadSafetensors(path).tensors), ["only"]);
    assert.deepEqual(loadSafetensors(path).metadata, {});
    // A node Buffer (whose slice() is a view into a shared pool) decodes correctly too.
    writeSafetensors(path, sampleTensors());
    const fromBuffer = readSafetensors(readFileSync(path));
    assert.equal(fromBuffer["b.f32"].data.length, 30);
    assert.equal(fromBuffer["b.f32"].data.buffer.byteLength, 120);
    assert.deepEqual(Array.from(fromBuffer["u8"].data as Uint8Array), [0, 7, 255]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

Deno.test("safetensors: encode rejects inconsistent tensors", () => {
  assert.throws(
    () => encodeSafetensors({ a: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }),
    /3 elements/,
  );
  assert.throws(
    () => encodeSafetensors({ a: { dtype: "F64", shape: [2], data: new Float32Array(2) } }),
    /dtype F64 but data is a Float32Array/,
  );
});

function withHeader(json: string, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): Uint8Array {
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lenOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

Deno.test("safetensors: malformed files give clear errors", () => {
  assert.throws(() => readSafetensors(new Uint8Array(5)), /too short/);
  assert.throws(() => readSafetensors(withHeader("{}", new Uint8Array(0), 1000n)), /exceeds file size/);
  assert.throws(() => readSafetensors(withHeader("{}", new Uint8Array(0), 1n << 60n)), /too large/);
  assert.throws(() => readSafetensors(withHeader("{not json")), /invalid JSON header/);
  assert.throws(() => readSafetensors(withHeader("[1,2]")), /not a JSON object/);
  assert.throws(
    () =>
      readSafetensors(
        withHeader('{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', new Uint8Array(2)),
      ),
    /unsupported dtype/,
  );
  assert.throws(
    () =>
      readSafetensors(
        withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(4)),
      ),
    /out of range/,
  );
  assert.throws(
    () =>
      readSafetensors(
        withHeader('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Uint8Array(8)),
      ),
    /needs 12/,
  );
  assert.throws(
    () =>
      readSafetensors(
        withHeader('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', new Uint8Array(4)),
      ),
    /invalid shape/,
  );
  assert.throws(
    () =>
      readSafetensors(
        withHeader(
          '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
          new Uint8Array(8),
        ),
      ),
    /overlap/,
  );
  assert.throws(() => readSafetensors(withHeader('{"__metadata__":{"a":1}}')), /not a string/);
  // A truncated real file.
  const good = encodeSafetensors(sampleTensors());
  assert.throws(() => readSafetensors(good.subarray(0, good.length - 1)), /out of range/);
});

Deno.test("safetensors: reads the Python-written fixtures", () => {
  const path = new URL("./fixtures/net_small.safetensors", import.meta.url);
  if (!existsSync(path)) return;
  const { tensors, metadata } = loadSafetensors(path.pathname);
  assert.equal(tensors["input"].dtype, "F32");
  assert.deepEqual(tensors["input"].shape, [10, 3, 32, 32]);
  assert.equal(tensors["labels"].dtype, "I32");
  assert.ok("lr" in metadata);
});
