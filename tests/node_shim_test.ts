// The page's node: built-ins (web/node_shim.js, bundled by lib/cli/serve.ts from pathe, @noble/hashes and
// @pkgjs/parseargs) against Deno's node:path, node:url, node:crypto and node:util, for what the library uses:
// the bundle the page loads exports every name the page's app bundle imports from node:, path helpers on
// "/" paths, SHA-256 of random bytes in random chunks (the page's data checks, the log's weights_sha256), and
// the strict parseArgs of lib/io/flags.ts (values, and the same first line of each error).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as path from "node:path";
import * as url from "node:url";
import * as util from "node:util";
import { bundle, bundleNodeShim } from "../lib/cli/serve.ts";
import { freshSeed, testRng } from "./util.ts";

/** The shim as the page loads it: lib/cli/serve.ts's bundle, imported from a temporary file. */
async function pageShim(): Promise<typeof import("../web/node_shim.js")> {
  const dir = await Deno.makeTempDir({ prefix: "airbench-shim-" });
  try {
    const file = `${dir}/node_shim.js`;
    await Deno.writeTextFile(file, await bundleNodeShim());
    return await import(url.pathToFileURL(file).href);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
const shim = await pageShim();

Deno.test("node_shim: exports every name the page's bundle imports from node:path, node:url, node:crypto, node:util", async () => {
  const app = await bundle();
  const names = new Set<string>();
  for (const m of app.matchAll(/^import \{([^}]*)\} from "node:(\w+)";$/gm)) {
    assert.ok(
      ["path", "url", "crypto", "util"].includes(m[2]),
      `the page imports node:${m[2]}, not in the shim`,
    );
    for (const n of m[1].split(",")) names.add(n.trim().split(/\s+as\s+/)[0]);
  }
  assert.ok(names.has("createHash") && names.has("parseArgs") && names.has("join"), [...names].join(", "));
  for (const n of names) assert.equal(typeof (shim as Record<string, unknown>)[n], "function", n);
});

Deno.test("node_shim: path and URL helpers match node:path and node:url", () => {
  const paths = ["/a/b/c.ts", "/a/b/", "/", "a/./b/../c", "../x/y", "/a//b/../../..", "", ".", "/x/y.tar.gz"];
  for (const p of paths) {
    assert.equal(shim.basename(p), path.basename(p), `basename ${p}`);
    assert.equal(shim.basename(p, ".ts"), path.basename(p, ".ts"), `basename ${p} .ts`);
    assert.equal(shim.dirname(p), path.dirname(p), `dirname ${p}`);
    assert.equal(shim.isAbsolute(p), path.isAbsolute(p), `isAbsolute ${p}`);
    for (const q of paths) {
      assert.equal(shim.join(p, q), path.join(p, q), `join ${p} ${q}`);
      if (p.startsWith("/")) {
        assert.equal(shim.resolve(p, q), path.resolve(p, q), `resolve ${p} ${q}`);
        if (q.startsWith("/")) assert.equal(shim.relative(p, q), path.relative(p, q), `relative ${p} ${q}`);
      }
    }
  }
  assert.equal(shim.sep, path.sep);
  for (const p of ["/a/b c/d%e.ts", "/x/ü/y#z?.bin", "/t\tn\nr\r", "/"]) {
    assert.equal(shim.pathToFileURL(p).href, url.pathToFileURL(p).href, p);
    assert.equal(shim.fileURLToPath(url.pathToFileURL(p).href), url.fileURLToPath(url.pathToFileURL(p)), p);
  }
  assert.throws(() => shim.fileURLToPath("http://x/y"), TypeError);
});

Deno.test("node_shim: createHash('sha256') matches node:crypto for any length and chunking", () => {
  const rand = testRng(freshSeed("node_shim sha256"));
  // Lengths around the 64-byte block and the 56-byte padding boundary, and a few larger ones.
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4099]) {
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const h = shim.createHash("sha256");
    for (let i = 0; i < n;) {
      const take = 1 + Math.floor(rand() * 80);
      h.update(bytes.subarray(i, i + take));
      i += take;
    }
    assert.equal(h.digest("hex"), createHash("sha256").update(bytes).digest("hex"), `${n} bytes`);
  }
  const text = "kernel.wgsl\nfn main() {} // ü\n";
  assert.equal(
    shim.createHash("sha256").update(text).digest("hex"),
    createHash("sha256").update(text).digest("hex"),
  );
  assert.throws(() => shim.createHash("md5"), /only sha256/);
});

Deno.test("node_shim: parseArgs matches node:util's for strict string and boolean options", () => {
  const options = {
    epochs: { type: "string" },
    widths: { type: "string" },
    "save-weights": { type: "string" },
    help: { type: "boolean" },
  } as const;
  const cases = [
    [],
    ["--epochs", "3", "--widths=16,32,32", "--help"],
    ["--epochs", "3", "--epochs", "4"],
    ["--save-weights", "/tmp/w.safetensors"],
    ["--epochs"],
    ["--nope", "1"],
    ["stray"],
    ["--help=yes"],
    ["--epochs", "--help"],
  ];
  for (const args of cases) {
    const run = (p: typeof util.parseArgs) => {
      try {
        const { values, positionals } = p({ args, options, allowPositionals: false, strict: true });
        return { values: { ...values }, positionals };
      } catch (e) {
        return { error: (e as Error).message.split("\n")[0], code: (e as { code?: string }).code };
      }
    };
    assert.deepEqual(run(shim.parseArgs as typeof util.parseArgs), run(util.parseArgs), args.join(" "));
  }
});
