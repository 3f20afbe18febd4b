// Writing files so that readers never see a partial one (logs, weights, the dataset cache).

import { basename, dirname, join } from "node:path";

/** Write to a temp name in the same folder, then rename; on failure the temp file is removed. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${Deno.pid}.${crypto.randomUUID()}.tmp`);
  try {
    if (typeof data === "string") Deno.writeTextFileSync(tmp, data);
    else Deno.writeFileSync(tmp, data);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* the temp file was never created */ }
    throw e;
  }
}
