// deno task bench's flags: --report-args takes flags as its value (with or without "="), and a bad flag is one
// line naming it, exit 2, before any GPU work.

import assert from "node:assert/strict";
import { parseBenchArgs } from "../lib/bench.ts";
import { runDeno } from "./synthetic.ts";

Deno.test("bench flags: --report-args holds flags; bad flags throw one line naming them", () => {
  for (
    const form of [["--report-args", "--epochs 4 --widths 8,8"], ["--report-args=--epochs 4 --widths 8,8"]]
  ) {
    const a = parseBenchArgs(["--report", ...form, "--batch-size", "64"])!;
    assert.deepEqual(a.reportArgs, ["--epochs", "4", "--widths", "8,8"]);
    assert.ok(a.report && a.full, "--report implies --full");
    assert.equal(a.batch, 64);
  }
  assert.throws(
    () => parseBenchArgs(["--variant", "x"]),
    /^Error: --variant x: expected register or workgroup$/,
  );
  assert.throws(
    () => parseBenchArgs(["--bogus"]),
    (e: Error) => /'--bogus'/.test(e.message) && !e.message.includes("\n"),
  );
  assert.equal(parseBenchArgs(["--help"]), undefined);
});

Deno.test("deno task bench with a bad flag: one line, exit 2", async () => {
  const r = await runDeno(["run", "-A", "lib/bench.ts", "--tune", "sometimes"]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /^error: --tune sometimes: expected auto, off or force \(deno task bench --help/);
});
