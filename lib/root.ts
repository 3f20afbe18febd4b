// Where the project lies: the folder holding deno.json, main.ts, kernels/, lib/ and data/. Empty when the
// library is loaded from a web server (a page), which has no file system.
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The project's root folder (the parent of lib/); empty in a page. */
export const ROOT = import.meta.url.startsWith("file:")
  ? join(fileURLToPath(new URL(".", import.meta.url)), "..")
  : "";
