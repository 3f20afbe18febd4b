// deno task bench's flags: --report-args takes flags as its value (with or without "="), and a bad flag is
// one line naming it, exit 2, before any GPU work (the same converters and checks as main.ts,
// lib/io/flags.ts).

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseBenchArgs } from "../lib/cli/bench.ts";
import { UsageError } from "../lib/io/flags.ts";
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
  const a = parseBenchArgs(["--tiles", "8,2,2", "--repeats", "3", "--widths", "8,16,16"])!;
  assert.deepEqual([a.tiles, a.repeats, a.widths], [[8, 2, 2], 3, [8, 16, 16]]);
  const bad: [string[], RegExp][] = [
    [["--variant", "x"], /^--variant "x": expected one of register, tiled$/],
    [["--batch-size", "abc"], /^--batch-size "abc": expected a positive integer$/],
    [["--batch-size", "0"], /^--batch-size "0": expected a positive integer$/],
    [["--batch-size", "-5"], /^--batch-size "-5": expected a positive integer$/],
    [["--tiles", "0,0,0,0"], /^--tiles "0": expected a positive integer$/],
    [["--tiles", "8,2"], /^--tiles "8,2": expected TM,TN4,TMV\[,TN4W\]$/],
    [["--repeats", "0"], /^--repeats "0": expected a positive integer$/],
    [["--widths", "3,5"], /^--widths "3,5": expected comma-separated multiples of 4/],
    [["--repeats", "2", "--repeats", "3"], /^--repeats given twice/],
    [["--bogus"], /'--bogus'/],
  ];
  for (const [args, why] of bad) {
    assert.throws(
      () => parseBenchArgs(args),
      (e: Error) => e instanceof UsageError && why.test(e.message) && !e.message.includes("\n"),
      args.join(" "),
    );
  }
  assert.equal(parseBenchArgs(["--help"]), undefined);
});

Deno.test("deno task bench with a bad flag, experiment, log folder or tiles: one line, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-bench-" });
  try {
    const logs = ["--log-dir", dir];
    const cases: [string[], RegExp][] = [
      [
        ["--tune", "sometimes"],
        /^error: --tune "sometimes": expected one of auto, off, force \(deno task bench/,
      ],
      [["--experiment", "/nonexistent.ts", ...logs], /^error: --experiment \/nonexistent\.ts: .*not found/i],
      [["--log-dir", "/etc/passwd"], /^error: --log-dir \/etc\/passwd: is a file, not a folder/],
      [["--widths", "8,8,8,8,8", ...logs], /^error: the network of --widths 8,8,8,8,8: /],
      [["--report", "--report-args", "--runs 3", ...logs], /^error: --report-args: --runs given twice/],
      // checked on the adapter, before any measuring
      [
        ["--tiles", "64,2,2", "--widths", "8,16,16", ...logs],
        /^error: --tiles 64,2,2: layer 0, forward: .*64x8 register block/,
      ],
      [
        ["--widths", "100000,100000", "--batch-size", "1", ...logs],
        /^error: --widths 100000,100000 at --batch-size 1: /,
      ],
    ];
    for (const [args, why] of cases) {
      const r = await runDeno(["run", "-A", "lib/cli/bench.ts", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.equal(r.stdout, "", "nothing measured");
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
  } finally {
    await Deno.remove(join(dir), { recursive: true });
  }
});
