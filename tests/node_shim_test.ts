// The page's stand-ins for node: built-ins (web/node_shim.js): its SHA-256 (the page's data checks and the
// log's weights_sha256) against Deno's node:crypto, on fresh random bytes split into random chunks.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createHash as pageHash } from "../web/node_shim.js";
import { freshSeed, testRng } from "./util.ts";

Deno.test("node_shim: createHash('sha256') matches node:crypto for any length and chunking", () => {
  const rand = testRng(freshSeed("node_shim sha256"));
  // Lengths around the 64-byte block and the 56-byte padding boundary, and a few larger ones.
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4099]) {
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const h = pageHash("sha256");
    for (let i = 0; i < n;) {
      const take = 1 + Math.floor(rand() * 80);
      h.update(bytes.subarray(i, i + take));
      i += take;
    }
    assert.equal(h.digest("hex"), createHash("sha256").update(bytes).digest("hex"), `${n} bytes`);
  }
  assert.throws(() => pageHash("md5"), /only sha256/);
});
