// lib/sweep/stats.ts against hand-computed values and SciPy's figures on fixed data. The SciPy numbers below
// were printed by `/usr/bin/python3 tests/stats_scipy.py` (Debian bookworm's python3-scipy 1.10.1); this test
// does not need SciPy.

import assert from "node:assert/strict";
import {
  describe,
  nctCdf,
  pooledStd,
  runsForPower,
  tCdf,
  tQuantile,
  tTestPower,
  welch,
} from "../lib/sweep/stats.ts";
import { summarize, tableRows } from "../lib/sweep/summary.ts";

function close(got: number, want: number, rel: number, what: string) {
  const err = Math.abs(got - want) / Math.max(Math.abs(want), 1e-300);
  assert.ok(err <= rel, `${what}: ${got} vs ${want} (relative error ${err.toExponential(2)} > ${rel})`);
}

const A = [0.9401, 0.9395, 0.9410, 0.9388, 0.9402];
const B = [0.9380, 0.9391, 0.9375, 0.9386, 0.9379, 0.9390];

Deno.test("by hand: [1,2,3] vs [4,5,6]: mean, std, CI, Welch's t, df and interval", () => {
  const a = describe([1, 2, 3]);
  assert.deepEqual([a.n, a.mean, a.std], [3, 2, 1]);
  // t(0.975, 2) = 4.302652729911275 (SciPy); half width = t * 1 / sqrt(3)
  close(a.ci95[0], 2 - 4.302652729911275 / Math.sqrt(3), 1e-9, "ci low");
  close(a.ci95[1], 2 + 4.302652729911275 / Math.sqrt(3), 1e-9, "ci high");
  const w = welch([1, 2, 3], [4, 5, 6]);
  // se = sqrt(1/3 + 1/3); t = -3 / se = -3 sqrt(3/2); df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
  close(w.t, -3 * Math.sqrt(1.5), 1e-14, "t");
  close(w.df, 4, 1e-14, "df");
  assert.equal(w.diff, -3);
  close(w.ci95[0], -3 - tQuantile(0.975, 4) * Math.sqrt(2 / 3), 1e-14, "diff ci low");
  close(w.p, 0.021311641128756727, 1e-10, "p (SciPy ttest_ind equal_var=False)");
  close(pooledStd([1, 2, 3], [4, 5, 6]), 1, 1e-14, "pooled std");
});

Deno.test("describe and welch match SciPy on fixed accuracies", () => {
  const a = describe(A), b = describe(B);
  close(a.mean, 0.9399200000000001, 1e-14, "mean a");
  close(a.std, 0.0008228000972289677, 1e-12, "std a");
  close(a.ci95[0], 0.9388983587415524, 1e-12, "ci a low");
  close(a.ci95[1], 0.9409416412584478, 1e-12, "ci a high");
  close(b.ci95[0], 0.9376706981132457, 1e-12, "ci b low");
  close(b.ci95[1], 0.9390293018867546, 1e-12, "ci b high");
  const w = welch(A, B);
  close(w.t, 3.4655781993728096, 1e-10, "t");
  close(w.p, 0.009244459703859157, 1e-9, "p");
  close(w.df, 7.577537906030474, 1e-10, "df");
  close(w.ci95[0], 0.0005150928511230984, 1e-8, "diff ci low");
  close(w.ci95[1], 0.0026249071488768224, 1e-8, "diff ci high");
});

// stdlib's quantile agrees with SciPy to about 1e-10 (relative) at fractional df, to 1e-15 at integer df.
Deno.test("Student t from stdlib matches SciPy's cdf and ppf", () => {
  close(tCdf(-7.5, 3.2), 0.0019581731949761395, 1e-12, "cdf(-7.5; 3.2)");
  close(tCdf(2.1, 4.3), 0.9505942976730631, 1e-14, "cdf(2.1; 4.3)");
  close(tQuantile(0.975, 4), 2.7764451051977987, 1e-14, "ppf(0.975; 4)");
  close(tQuantile(0.975, 7.37), 2.3407705845469318, 1e-9, "ppf(0.975; 7.37)");
  close(tQuantile(0.995, 2), 9.92484320091807, 1e-13, "ppf(0.995; 2)");
});

Deno.test("the noncentral t CDF and the t-test's power match SciPy (nct)", () => {
  close(nctCdf(2.3, 10, 1.5), 0.7456116069522125, 1e-9, "nct(2.3; 10, 1.5)");
  close(nctCdf(-1.96, 4, 0.7), 0.015530000519096606, 1e-8, "nct(-1.96; 4, 0.7)");
  close(nctCdf(2.0484, 28, 2.9), 0.20064219252460877, 1e-9, "nct(2.0484; 28, 2.9)");
  close(nctCdf(1.96, 3998, 5.0), 0.0011852793063595645, 1e-7, "nct(1.96; 3998, 5)");
  close(tTestPower(3, 1.0, 0.5), 0.46264081189130546, 1e-8, "power n=3");
  close(tTestPower(10, 1.0, 1.0), 0.562006646586178, 1e-8, "power n=10");
  close(tTestPower(25, 0.0005, 0.0014), 0.23569930933893365, 1e-8, "power n=25");
});

Deno.test("runs for 80% power at alpha 0.05: SciPy's smallest n", () => {
  const cases: [number, number, number][] = [
    [1.0, 1.0, 17],
    [0.5, 1.0, 64],
    [0.0005, 0.0014, 125], // 0.05 points at airbench94's spread of about 0.14 points
    [0.001, 0.0014, 32],
    [0.0002, 0.0014, 771],
  ];
  for (const [delta, std, n] of cases) {
    assert.equal(runsForPower(delta, std), n, `delta ${delta}, std ${std}`);
    assert.equal(runsForPower(-delta, std), n, "the sign of the difference does not matter");
  }
  assert.equal(runsForPower(0, 1), Infinity);
  assert.equal(runsForPower(0.1, NaN), Infinity);
  assert.equal(runsForPower(1e-9, 1, { max: 1000 }), Infinity);
});

Deno.test("too few values: NaN intervals and tests, never a made-up number", () => {
  assert.deepEqual(describe([]).n, 0);
  const one = describe([0.5]);
  assert.equal(one.mean, 0.5);
  assert.ok(Number.isNaN(one.std) && Number.isNaN(one.ci95[0]));
  const w = welch([0.5], [0.4, 0.6]);
  assert.ok(Number.isNaN(w.p) && Number.isNaN(w.ci95[0]));
  const flat = welch([1, 1], [1, 1]);
  assert.equal(flat.diff, 0);
  assert.ok(Number.isNaN(flat.p));
});

Deno.test("a sweep's summary: per configuration the stats above, against the baseline Welch and power", () => {
  const plan = {
    name: "t",
    spec: "/t.json",
    seeds: [0, 1, 2, 3, 4, 5],
    baseline: "c1",
    resolve: 0.0005,
    runs: [],
    configs: ["c0", "c1"].map((id) => ({ id, label: id, experiment: "main.ts", varied: {}, args: [] })),
  };
  const runs = [...A.map((v, i) => ["c0", i, v] as const), ...B.map((v, i) => ["c1", i, v] as const)].map((
    [config, seed, tta_val_acc],
    index,
  ) => ({ index, config, seed, status: "done" as const, tta_val_acc }));
  const s = summarize(plan, runs);
  const [c0, c1] = s.configs;
  assert.equal(c0.n, 5);
  assert.equal(c0.planned, 6);
  close(c0.ci95[0], 0.9388983587415524, 1e-12, "c0 ci");
  close(c0.vs_baseline!.p, 0.009244459703859157, 1e-9, "p against the baseline");
  assert.equal(c0.vs_baseline!.runs_for_power, runsForPower(c0.mean - c1.mean, pooledStd(A, B)));
  assert.equal(c1.vs_baseline, undefined);
  assert.equal(c1.runs_to_resolve, runsForPower(0.0005, c1.std));
  const { rows } = tableRows(s);
  assert.deepEqual(rows[0].slice(0, 8), [
    "c0 c0",
    "5/6",
    "93.99",
    "0.08",
    "[93.89, 94.09]",
    "+0.16",
    "[+0.05, +0.26]",
    "0.0092",
  ]);
  assert.equal(rows[1][0], "c1 c1 (baseline)");
});
