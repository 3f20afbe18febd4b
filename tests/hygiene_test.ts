// Tests write into temporary folders only: no test file names the project's own logs/ or data/ folder as a
// place to write (`deno task report logs/*.json` would pick such files up as the user's runs).

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../lib/root.ts";

/** Lines of `text` that join the project root with logs/ or data/ (a write there, or a read to replace). */
export function projectFolderUses(text: string): string[] {
  return text.split("\n").filter((l) => /join\(\s*ROOT\s*,\s*["'](logs|data)["']/.test(l));
}

Deno.test("no test writes into the project's logs/ or data/", () => {
  const offenders: string[] = [];
  for (const e of Deno.readDirSync(join(ROOT, "tests"))) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    for (const l of projectFolderUses(Deno.readTextFileSync(join(ROOT, "tests", e.name)))) {
      offenders.push(`tests/${e.name}: ${l.trim()}`);
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("the check sees a write into logs/", () => {
  const line = `await Deno.writeTextFile(join(${"ROOT"}, "logs", "x.json"), "{}");`;
  assert.equal(projectFolderUses(`a\n${line}\nb`).length, 1);
  assert.equal(projectFolderUses('join(dir, "logs")').length, 0);
});
