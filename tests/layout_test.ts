// lib/ is in floors (README "Layout of the code"): a folder imports only from its own floor's folders and the
// ones below. This reads every import of every file under lib/ and fails naming the upward or sideways arrow.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "../lib/root.ts";

/** Each folder of lib/ and the floor it stands on (0 the ground). */
const FLOORS: Record<string, number> = {
  gpu: 0,
  io: 0,
  report: 0,
  nn: 1,
  data: 1,
  train: 2,
  sweep: 3,
  cli: 4,
};
/** Folders any floor may use: the project root helper and the float64 references (tests only use those). */
const ANYWHERE = new Set(["root.ts"]);

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []
  );
}

/** The lib/ folder (or top-level file) a path under lib/ lies in. */
const folderOf = (path: string) => relative(join(ROOT, "lib"), path).split(/[\\/]/)[0];

/** Every `from "./x"` / `import("./x")` of `file`, resolved to a path. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    normalize(join(dirname(file), m[1]))
  );
}

/** The arrows that break the floors: a file importing a folder on a higher floor, or beside it on the same. */
function badArrows(): string[] {
  const bad: string[] = [];
  for (const file of tsFiles(join(ROOT, "lib"))) {
    const from = folderOf(file);
    if (!(from in FLOORS)) continue;
    for (const target of importsOf(file)) {
      const to = folderOf(target);
      if (to === from || ANYWHERE.has(to)) continue;
      if (!(to in FLOORS) || FLOORS[to] >= FLOORS[from]) {
        bad.push(`${relative(ROOT, file)} imports ${relative(ROOT, target)} (${from} -> ${to})`);
      }
    }
  }
  return bad;
}

Deno.test("lib/ floors: every folder imports only from the floors below it", () => {
  const folders = readdirSync(join(ROOT, "lib"), { withFileTypes: true }).filter((e) => e.isDirectory());
  for (const f of folders) {
    assert.ok(
      f.name in FLOORS || f.name === "reference",
      `lib/${f.name}/ has no floor in tests/layout_test.ts`,
    );
  }
  assert.deepEqual(badArrows(), []);
});

Deno.test("lib/ floors: the check sees an upward import", () => {
  // the arrow the check must refuse (gpu is the ground floor; train stands on it)
  const from = join(ROOT, "lib", "gpu", "x.ts"), to = join(ROOT, "lib", "train", "session.ts");
  assert.equal(folderOf(from), "gpu");
  assert.ok(FLOORS[folderOf(to)] >= FLOORS[folderOf(from)]);
  assert.deepEqual(
    [...`import { Session } from "../train/session.ts";`.matchAll(
      /(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g,
    )]
      .map((m) => normalize(join(dirname(from), m[1]))),
    [to],
  );
});

/** The files README's "Layout of the code" table names under each **lib/folder/** row. */
function readmeLayout(): Map<string, string[]> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.split("## Layout of the code")[1].split("\n## ")[0];
  const listed = new Map<string, string[]>();
  let folder: string | undefined;
  for (const row of section.split("\n").filter((l) => l.startsWith("| "))) {
    const first = row.split("|")[1].trim();
    const heading = /^\*\*lib\/([a-z_]+)\/\*\*$/.exec(first);
    if (heading) listed.set(folder = heading[1], []);
    else if (folder && /^`[a-z_]+\.ts`$/.test(first)) listed.get(folder)!.push(first.slice(1, -1));
    else folder = undefined;
  }
  return listed;
}

Deno.test("README's layout table names every file of every lib/ floor, and only those", () => {
  const listed = readmeLayout();
  assert.deepEqual([...listed.keys()].sort(), Object.keys(FLOORS).sort());
  for (const [folder, files] of listed) {
    const present = readdirSync(join(ROOT, "lib", folder)).filter((f) => f.endsWith(".ts")).sort();
    assert.deepEqual([...files].sort(), present, `README's rows under **lib/${folder}/**`);
  }
});
