// The few node: built-ins the library imports, for a browser page (web/index.html maps node:path, node:url,
// node:crypto and node:util here with an import map; lib/cli/serve.ts bundles this file for the browser, the
// app bundle keeps `node:` imports external). Each comes from a well-kept package with Node's semantics:
// node:path from pathe (POSIX paths), createHash("sha256") from @noble/hashes, parseArgs from
// @pkgjs/parseargs (the Node project's own polyfill of util.parseArgs). tests/node_shim_test.ts checks them
// against Deno's node: modules for what the library uses. Anything that needs a file system (Deno.*) is never
// reached from the page.

import "./node_global.js"; // first: defines `global`, which @pkgjs/parseargs reads when it loads
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { parseArgs } from "@pkgjs/parseargs";
import { resolve } from "pathe";

export { basename, dirname, isAbsolute, join, relative, resolve, sep } from "pathe";
export { parseArgs };

// ---- node:url: the WHATWG URL does the percent-coding
export function fileURLToPath(u) {
  const url = typeof u === "string" ? new URL(u) : u;
  if (url.protocol !== "file:") throw new TypeError(`not a file: URL: ${url.href}`);
  return decodeURIComponent(url.pathname);
}
export function pathToFileURL(p) {
  const url = new URL("file://");
  // Node's own pre-encoding (the URL setter would drop tabs and newlines); the setter encodes the rest.
  const pre = { "%": "%25", "\t": "%09", "\n": "%0A", "\r": "%0D" };
  url.pathname = resolve(p).replace(/[%\t\n\r]/g, (c) => pre[c]);
  return url;
}

// ---- node:crypto: createHash("sha256") only; update takes bytes or a UTF-8 string, digest() or
// digest("hex")
export function createHash(alg) {
  if (String(alg).toLowerCase() !== "sha256") throw new Error(`createHash(${alg}): only sha256 in a browser`);
  const h = sha256.create();
  const hash = {
    update(data) {
      h.update(typeof data === "string" ? new TextEncoder().encode(data) : data);
      return hash;
    },
    digest(enc) {
      const out = h.digest();
      return enc === "hex" ? bytesToHex(out) : out;
    },
  };
  return hash;
}
