// The HTML report: chart geometry (the drawn points are the data), escaping, the page built from two fixture
// logs, and the command line's errors. No browser here: the SVG is checked as text.

import assert from "node:assert/strict";
import {
  dotChart,
  dotChartLayout,
  type DotChartOptions,
  escapeXml,
  finiteExtent,
  lineChart,
  lineChartLayout,
  type LineChartOptions,
  MAX_DRAWN_DOTS,
  MAX_DRAWN_POINTS,
  MAX_DRAWN_SERIES,
  niceAxis,
  percentFormat,
  thinPoints,
} from "../lib/report/charts.ts";
import {
  argvFlags,
  checkTrainingLog,
  configDiff,
  contextFields,
  describeLogs,
  displayNames,
  flattenConfig,
  lineDiff,
  MAX_CONFIG_DEPTH,
  type NamedLog,
  reportHtml,
  testNote,
  type TrainingLog,
} from "../lib/report/html.ts";
import { porcelainFiles } from "../lib/io/runlog.ts";

const assertStringIncludes = (s: string, part: string) =>
  assert.ok(s.includes(part), `expected to find ${JSON.stringify(part)}`);
const assertAlmostEquals = (a: number, b: number, tol: number) =>
  assert.ok(Math.abs(a - b) <= tol, `${a} is not within ${tol} of ${b}`);

const FIXTURES = new URL("./fixtures/logs/", import.meta.url);
const REPORT = new URL("../lib/cli/report.ts", import.meta.url);
const fixturePath = (name: string) => new URL(name, FIXTURES).pathname;
const readFixture = (name: string): TrainingLog => JSON.parse(Deno.readTextFileSync(fixturePath(name)));

/** The coordinates of every path with class "series", in order: one list of [x, y] per path. */
function seriesPaths(svg: string): [number, number][][] {
  return [...svg.matchAll(/<path class="series" d="([^"]*)"/g)].map((m) =>
    [...m[1].matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map((p) =>
      [Number(p[1]), Number(p[2])] as [number, number]
    )
  );
}

/** Tags balanced, every `&` an entity, no `<` inside attribute values: the string parses as XML. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const body = xml.replace(/^<!doctype html>/i, "").replace(/<style>[^<]*<\/style>/, "<style></style>");
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self || ["meta", "br", "wbr", "input", "img", "link"].includes(name.toLowerCase())) continue;
    if (close) assert.deepEqual(stack.pop(), name, `</${name}> closes <${stack[stack.length]}>`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], "unclosed tags");
  const stray = body.replace(/<\/?[a-zA-Z][\w-]*(?:\s+[\w:-]+="[^"<]*")*\s*\/?>/g, "");
  assert(!/[<>]/.test(stray.replace(/^<!doctype html>/i, "")), "a raw < or > outside a tag");
  assert(!/&(?!(amp|lt|gt|quot|#39);)/.test(body), "a raw & that is not an entity");
}

const known: LineChartOptions = {
  title: "accuracy",
  xLabel: "epoch",
  yLabel: "val_acc",
  series: [
    { name: "a", color: "#123456", points: [[0, 0.5], [1, 0.75], [2, 0.9], [3, 0.925]] },
    { name: "b", color: "#654321", points: [[0, 0.42], [1, 0.61], [3, 0.88]] },
  ],
  width: 500,
  height: 300,
  xInteger: true,
};

Deno.test("niceAxis: round ticks that cover the data", () => {
  assert.deepEqual(niceAxis(0.42, 0.925).ticks, [0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceAxis(0.7712, 0.9391).ticks, [0.75, 0.8, 0.85, 0.9, 0.95]);
  assert.deepEqual(niceAxis(0, 10, 6, true).ticks, [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceAxis(0, 3, 6, true).ticks, [0, 1, 2, 3]);
  const one = niceAxis(5, 5);
  assert(one.min < 5 && one.max > 5, "a single value gets a range around it");
  const wide = niceAxis(-3.2, 1234);
  assert(wide.min <= -3.2 && wide.max >= 1234 && wide.ticks.length <= 8);
  assert.deepEqual(niceAxis(NaN, Infinity).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
});

Deno.test("lineChart: each series is one path whose points are the data mapped onto the axes", () => {
  const svg = lineChart(known);
  const L = lineChartLayout(known);
  const paths = seriesPaths(svg);
  assert.deepEqual(paths.length, 2);
  known.series.forEach((s, i) => {
    assert.deepEqual(paths[i].length, s.points.length);
    s.points.forEach(([x, y], k) => {
      const [px, py] = L.px(x, y);
      assertAlmostEquals(paths[i][k][0], px, 0.006);
      assertAlmostEquals(paths[i][k][1], py, 0.006);
      // inside the plot rectangle
      assert(px >= L.plot.x - 1e-9 && px <= L.plot.x + L.plot.w + 1e-9);
      assert(py >= L.plot.y - 1e-9 && py <= L.plot.y + L.plot.h + 1e-9);
    });
  });
  // Independent of the layout: x is affine and increasing, y affine and decreasing (SVG's y points down).
  const a = paths[0];
  const sx = (a[1][0] - a[0][0]) / 1, sy = (a[1][1] - a[0][1]) / 0.25;
  assert(sx > 0 && sy < 0);
  assertAlmostEquals(a[3][0] - a[0][0], 3 * sx, 0.02);
  assertAlmostEquals(a[2][1] - a[0][1], 0.4 * sy, 0.02);
  assertAlmostEquals(paths[1][2][0], a[3][0], 0.01); // same x, same pixel, across series
  // The axes contain the data, and their end ticks are labelled.
  assert(L.y.min <= 0.42 && L.y.max >= 0.925 && L.x.min <= 0 && L.x.max >= 3);
  assertStringIncludes(svg, `>${L.y.ticks[0].toFixed(1)}</text>`);
  assertStringIncludes(svg, `>${L.y.ticks[L.y.ticks.length - 1].toFixed(1)}</text>`);
  for (const t of L.x.ticks) assertStringIncludes(svg, `>${t}</text>`);
  for (const label of ["accuracy", "epoch", "val_acc"]) assertStringIncludes(svg, `>${label}</text>`);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]* viewBox="0 0 500 300"/);
  assertWellFormed(svg);
});

Deno.test("lineChart: a non-finite value breaks the line; no data draws empty axes", () => {
  const svg = lineChart({
    ...known,
    series: [{ name: "g", color: "red", points: [[0, 1], [1, NaN], [2, 3], [3, 4]] }],
  });
  const d = svg.match(/<path class="series" d="([^"]*)"/)![1];
  assert.deepEqual(d.match(/M/g)!.length, 2);
  assert.deepEqual(d.match(/L/g)!.length, 1);
  const empty = lineChart({ ...known, series: [] });
  assertStringIncludes(empty, ">no data</text>");
  assertWellFormed(empty);
});

Deno.test("charts escape <&>\"' in every text they draw", () => {
  const evil = `a<b>&"c'`;
  const svg = lineChart({
    ...known,
    title: evil,
    xLabel: evil,
    yLabel: evil,
    series: [{ name: evil, color: "#000", points: [[0, 1]], title: evil }],
  });
  assert(!svg.includes("a<b"), "raw text in the SVG");
  assertStringIncludes(svg, "a&lt;b&gt;&amp;&quot;c&#39;");
  assertWellFormed(svg);
  const dots = dotChart({
    title: evil,
    xLabel: evil,
    groups: [{ name: evil, color: "#000", values: [1, 2], labels: [evil, evil] }],
  });
  assert(!dots.includes("a<b"));
  assertWellFormed(dots);
  assert.deepEqual(escapeXml(`<&>"'`), "&lt;&amp;&gt;&quot;&#39;");
});

Deno.test("dotChart: a dot per value at its place on the axis, mean ± std over them", () => {
  const o: DotChartOptions = {
    title: "tta",
    xLabel: "accuracy (%)",
    groups: [
      { name: "one", color: "#111", values: [0.94, 0.942, 0.945] },
      { name: "two", color: "#222", values: [0.93, NaN, 0.931] },
      { name: "none", color: "#333", values: [] },
    ],
    format: percentFormat,
  };
  const svg = dotChart(o);
  const L = dotChartLayout(o);
  const dots = [...svg.matchAll(/<circle class="dot" data-value="([^"]+)" cx="([^"]+)" cy="([^"]+)"/g)];
  assert.deepEqual(dots.length, 5);
  for (const [, v, cx, cy] of dots) {
    assertAlmostEquals(Number(cx), L.px(Number(v)), 0.006);
    assert(Number(cy) > L.plot.y && Number(cy) < L.plot.y + L.plot.h);
  }
  // Row order: the first group's dots are above the second's.
  const ys = dots.map((d) => Number(d[3]));
  assert(Math.max(...ys.slice(0, 3)) < Math.min(...ys.slice(3)));
  const sum = [...svg.matchAll(/data-mean="([^"]+)" data-std="([^"]+)"/g)];
  assert.deepEqual(sum.length, 2);
  assertAlmostEquals(Number(sum[0][1]), 0.9423333333, 1e-9);
  assertAlmostEquals(Number(sum[0][2]), 0.0025166115, 1e-9); // sample std
  const lo = 0.9423333333 - 0.0025166115, hi = 0.9423333333 + 0.0025166115;
  assert(L.x.min <= Math.min(0.93, lo) && L.x.max >= Math.max(0.945, hi));
  assertStringIncludes(svg, ">no values</text>");
  assertStringIncludes(svg, ">one</text>");
  assertWellFormed(svg);
});

// Logs far larger than a real one: 150k runs or chart points (`Math.min(...xs)` overflowed the call stack
// at about 100k) and a config nested 20,000 deep (flattenConfig recursed once per level).
const HUGE = 150_000;

Deno.test("thinPoints: first, last, each stretch's lowest and highest point and a break at a gap", () => {
  const pts = Array.from({ length: 10_000 }, (_, i) => [i, Math.sin(i / 50)] as [number, number]);
  pts[4321] = [4321, 7]; // a spike
  pts[7000] = [7000, NaN]; // a gap
  const thin = thinPoints(pts, 300);
  assert(thin.length <= 300, `${thin.length} points`);
  assert.deepEqual(thin[0], pts[0]);
  assert.deepEqual(thin[thin.length - 1], pts[pts.length - 1]);
  assert(thin.includes(pts[4321]), "the spike is drawn");
  assert(thin.some(([, y]) => Number.isNaN(y)), "the line breaks at the gap");
  assert(thin.every((p, k) => k === 0 || thin[k - 1][0] < p[0]), "in order, each point once");
  const y = finiteExtent(pts.map((p) => p[1]))!, ty = finiteExtent(thin.map((p) => p[1]))!;
  assert.deepEqual(ty, y); // the drawn line reaches the data's lowest and highest value
  const short = pts.slice(0, 300);
  assert(thinPoints(short, 300) === short, "a short series is drawn as it is");
});

Deno.test("lineChart of 150k points (the page's live loss curve): thinned for drawing, axes from every point", () => {
  const points = Array.from(
    { length: HUGE },
    (_, i) =>
      [i, 2.3 * Math.exp(-i / 20_000) + 0.01 * Math.sin(i)] as [
        number,
        number,
      ],
  );
  points[123_456] = [123_456, 9]; // a loss spike late in training
  const o: LineChartOptions = {
    title: "Training loss per step (batch mean)",
    xLabel: "step",
    yLabel: "loss",
    series: [{ name: "run 0", color: "#4e79a7", points, strokeWidth: 1.2 }],
    markers: false,
  };
  const svg = lineChart(o);
  const L = lineChartLayout(o);
  const [path] = seriesPaths(svg);
  assert(
    path.length <= MAX_DRAWN_POINTS && path.length > MAX_DRAWN_POINTS / 2,
    `${path.length} points drawn`,
  );
  assert(L.x.min <= 0 && L.x.max >= HUGE - 1 && L.y.max >= 9);
  const spike = L.px(123_456, 9);
  assert(
    path.some(([x, y]) => Math.abs(x - spike[0]) < 0.006 && Math.abs(y - spike[1]) < 0.006),
    "spike drawn",
  );
  assertWellFormed(svg);
  // 150k one-point series (one per run): an even spread of them is drawn, and the chart says so.
  const many = lineChart({
    ...o,
    series: points.map(([x, y], i) => ({ name: "log", color: "#000", points: [[x, y]], title: `run ${i}` })),
  });
  assert.deepEqual(seriesPaths(many).length, MAX_DRAWN_SERIES);
  assertStringIncludes(many, `>${MAX_DRAWN_SERIES} of ${HUGE} curves drawn</text>`);
  assertStringIncludes(many, `>run ${HUGE - 1}</title>`);
});

Deno.test("dotChart of 150k values: a spread of them drawn, the mean and std of all", () => {
  const values = Array.from({ length: HUGE }, (_, i) => 0.9 + (i % 1000) / 1e5);
  const svg = dotChart({ title: "tta", xLabel: "x", groups: [{ name: "g", color: "#111", values }] });
  const dots = [...svg.matchAll(/<circle class="dot" data-value="([^"]+)"/g)].map((m) => Number(m[1]));
  assert(dots.length <= MAX_DRAWN_DOTS && dots.length > MAX_DRAWN_DOTS / 2, `${dots.length} dots`);
  assert.deepEqual(finiteExtent(dots), finiteExtent(values));
  const [, mean] = svg.match(/data-mean="([^"]+)"/)!;
  assertAlmostEquals(Number(mean), 0.9 + 499.5 / 1e5, 1e-12);
  assertStringIncludes(svg, `(n=${HUGE}, ${MAX_DRAWN_DOTS} drawn)</text>`);
});

Deno.test("report of a config nested 20,000 deep and of a log of 150k runs", () => {
  let deep: Record<string, unknown> = { leaf: 1 };
  for (let i = 0; i < 20_000; i++) deep = { k: deep };
  const flat = flattenConfig({ deep, lr: 3 });
  assert.deepEqual(Object.keys(flat), [`deep${".k".repeat(MAX_CONFIG_DEPTH - 1)}`, "lr"]);
  assert.match(Object.values(flat)[0], /^\{"k":\{"k":/);
  const twoLogs = reportHtml([{ name: "deep", log: { config: { deep }, runs: [] } }, {
    name: "flat",
    log: { config: {}, runs: [] },
  }]);
  assertWellFormed(twoLogs);
  assertStringIncludes(twoLogs, `<td class="key">deep${".k".repeat(MAX_CONFIG_DEPTH - 1)}</td>`);
  const runs = Array.from({ length: HUGE }, (_, i) => ({
    run: i,
    seed: i,
    epochs: [{ epoch: 0, train_loss: 2 - i / HUGE, val_acc: 0.5 + i / HUGE / 4 }],
    tta_val_acc: 0.5 + i / HUGE / 4,
    total_time_seconds: 1 + i / HUGE,
  }));
  const html = reportHtml([{ name: "huge", log: { config: { a: 1 }, runs } }]);
  assert.deepEqual(html.match(/<tr><td class="num">/g)!.length, HUGE); // every run in the table
  assertStringIncludes(html, `<td class="num">${HUGE - 1}</td><td class="num">${HUGE - 1}</td>`);
});

Deno.test("checkTrainingLog names what is missing", () => {
  assert.deepEqual(checkTrainingLog(readFixture("lr10.json")), null);
  assert.deepEqual(checkTrainingLog({ config: {}, runs: [] }), null);
  assert.match(checkTrainingLog([1, 2])!, /an array, not an object/);
  assert.match(checkTrainingLog(readFixture("not_a_log.json"))!, /no "runs" array/);
  assert.match(checkTrainingLog({ runs: [] })!, /no "config" object/);
  assert.match(checkTrainingLog({ config: {}, runs: [3] })!, /runs\[0\] is not an object/);
  assert.match(checkTrainingLog({ config: {}, runs: [{ epochs: [{}, null] }] })!, /runs\[0\]\.epochs\[1\]/);
});

Deno.test("flattenConfig, configDiff and displayNames", () => {
  assert.deepEqual(flattenConfig({ a: { b: { c: 1 } }, w: [1, 2], s: "x", e: {}, n: null }), {
    "a.b.c": "1",
    w: "[1,2]",
    s: "x",
    e: "{}",
    n: "null",
  });
  const mk = (config: Record<string, unknown>): NamedLog => ({ name: "x", log: { config, runs: [] } });
  const d = configDiff([mk({ a: { b: 1, c: 2 }, k: 1 }), mk({ a: { b: 1, c: 3 }, z: true })]);
  assert.deepEqual(d.rows, [
    { key: "a.c", values: ["2", "3"] },
    { key: "k", values: ["1", undefined] },
    { key: "z", values: [undefined, "true"] },
  ]);
  assert.deepEqual(d.equal, 1);
  assert.deepEqual(displayNames(["logs/a.json", "old/logs/a.json", "b.json"]), ["logs/a", "old/logs/a", "b"]);
  assert.deepEqual(displayNames(["x/a.json", "x/a.json"]), ["x/a (1)", "x/a (2)"]);
});

Deno.test("report of two logs: both names, the differing config keys only, one curve per run", () => {
  const logs: NamedLog[] = [
    { name: "lr10", source: "tests/fixtures/logs/lr10.json", log: readFixture("lr10.json") },
    { name: "lr5-f16", source: "tests/fixtures/logs/lr5-f16.json", log: readFixture("lr5-f16.json") },
  ];
  const html = reportHtml(logs, { generated: "2026-11-28 07:00:00 UTC" });
  assertWellFormed(html);
  for (const n of ["lr10", "lr5-f16"]) assertStringIncludes(html, `>${n}</b>`);
  // Config differences: the keys that differ, each with both values, and none of the equal ones.
  const rows = [...html.matchAll(/<tr class="diff"><td class="key">([^<]+)<\/td>(.*?)<\/tr>/g)];
  assert.deepEqual(rows.map((r) => r[1]), ["opt.lr", "net.widths", "seed"]);
  assertStringIncludes(rows[0][2], `<td class="val">10</td><td class="val">5</td>`);
  for (const same of ["opt.momentum", "aug.flip", "net.tta_level", "trainN"]) {
    assert(!html.includes(`<td class="key">${same}</td>`), `${same} is equal in both logs`);
  }
  // Fields outside the config that differ (precision f32 vs f16) are listed apart.
  assertStringIncludes(
    html,
    `<tr class="context"><td class="key">precision</td><td class="val">f32</td><td class="val">f16</td>`,
  );
  // One path per run in each of the two line charts (every fixture run has epochs).
  const charts = [...html.matchAll(/<svg [^>]*class="chart line-chart"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
  assert.deepEqual(charts.length, 2);
  const runs = logs.reduce((n, l) => n + l.log.runs.length, 0);
  for (const c of charts) assert.deepEqual(seriesPaths(c).length, runs);
  // The failed run has two epochs: its curve has two points.
  assert.deepEqual(seriesPaths(charts[0]).map((p) => p.length), [4, 4, 4, 4, 4, 4, 2, 4]);
  // The TTA chart: the 4 + 3 finished runs as dots; the failed run's error is shown.
  const tta = html.match(/<svg [^>]*class="chart dot-chart"[\s\S]*?<\/svg>/)![0];
  assert.deepEqual(tta.match(/class="dot"/g)!.length, 7);
  assertStringIncludes(html, "loss became NaN at step 271");
  // Self-contained: no scripts, no external resources.
  assert(!/<script|<link|@import|url\(|src=|href=/i.test(html));
  assert.deepEqual(
    [...html.matchAll(/https?:\/\/[^"]+/g)].map((m) => m[0]).filter((u) =>
      u !== "http://www.w3.org/2000/svg"
    ),
    [],
  );
});

Deno.test("report of one log and of logs without runs or optional keys", () => {
  const html = reportHtml([{ name: "only", log: readFixture("lr10.json") }]);
  assertStringIncludes(html, "<h2>Config</h2>");
  assertStringIncludes(html, `<td class="key">opt.momentum</td>`);
  const bare = reportHtml([{ name: "bare", log: { config: { a: 1 }, runs: [] } }, {
    name: "partial",
    log: { config: { a: 2 }, runs: [{ epochs: [{ val_acc: null, train_loss: 2 }] }] },
  }]);
  assertWellFormed(bare);
  assertStringIncludes(bare, ">no values</text>");
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-config", REPORT.pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("lib/cli/report.ts: a bad log is one line naming the file, exit 2, nothing written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const broken = `${dir}/broken.json`;
    Deno.writeTextFileSync(broken, `{"runs": [`);
    const good = fixturePath("lr10.json");
    const cases: [string, RegExp][] = [
      [`${dir}/missing.json`, /missing\.json: no such file/],
      [broken, /broken\.json: not JSON/],
      [fixturePath("not_a_log.json"), /not_a_log\.json: not a training log: no "runs" array/],
      [dir, /is a folder/],
    ];
    for (const [bad, want] of cases) {
      const out = `${dir}/out/report.html`;
      const r = await cli([good, bad, "--out", out]);
      assert.deepEqual(r.code, 2, r.stderr);
      assert.deepEqual(r.stdout, "");
      const lines = r.stderr.trimEnd().split("\n");
      assert.deepEqual(lines.length, 1, r.stderr);
      assert.match(lines[0], want);
      assert.match(lines[0], /^error: /);
      let exists = true;
      try {
        Deno.statSync(`${dir}/out`);
      } catch {
        exists = false;
      }
      assert(!exists, "nothing may be written on an error");
    }
    const none = await cli([]);
    assert.deepEqual(none.code, 2);
    assert.match(none.stderr, /no logs given/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lib/cli/report.ts: writes the page atomically and prints its path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/sub/r.html`;
    const r = await cli([fixturePath("lr10.json"), fixturePath("lr5-f16.json"), "--out", out]);
    assert.deepEqual(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim(), out);
    const html = Deno.readTextFileSync(out);
    assert.match(html, /^<!doctype html>/);
    assert.deepEqual(html.match(/<svg /g)!.length, 4);
    assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name), ["r.html"]); // no temp file left
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("names lead with the experiment file, the flags that differ and a test subset", () => {
  assert.deepEqual(argvFlags(["--lr", "6", "--tta=0", "--quiet", "--widths", "8,16"]), [
    "--lr 6",
    "--tta=0",
    "--quiet",
    "--widths 8,16",
  ]);
  const a: TrainingLog = {
    experiment: "main.ts",
    argv: ["--epochs", "2", "--lr", "3"],
    config: {},
    runs: [],
  };
  const b: TrainingLog = {
    experiment: "my_experiment.ts",
    argv: ["--epochs", "2", "--lr", "6", "--test-n", "1000"],
    config: { testN: 1000, testOf: 10000 },
    runs: [],
  };
  assert.deepEqual(describeLogs([a, b], ["logs/t1", "logs/t2"]), [
    "main.ts --lr 3 · logs/t1",
    "my_experiment.ts --lr 6 --test-n 1000 (test 1000 of 10000) · logs/t2",
  ]);
  assert.deepEqual(describeLogs([a], ["t1"]), ["main.ts --epochs 2 --lr 3 · t1"]);
  assert.deepEqual(testNote({ testN: 10000, testOf: 10000 }), "");
  assert.deepEqual(testNote(undefined), "");
});

Deno.test("a code difference is a unified diff of the changed lines", () => {
  const base = ["a", "b", "c", "d", "e", "f", "g", "h"].join("\n");
  const changed = ["a", "b", "c", "D", "e", "f", "g", "h", "i"].join("\n");
  assert.deepEqual(lineDiff(base, base), "");
  assert.deepEqual(
    lineDiff(base, changed, 1),
    ["@@ -3,3 +3,3 @@", " c", "-d", "+D", " e", "@@ -8,1 +8,2 @@", " h", "+i"].join("\n"),
  );
  const mk = (name: string, code: string): NamedLog => ({ name, log: { config: {}, runs: [], code } });
  const html = reportHtml([mk("one", base), mk("two", changed)], { generated: "t" });
  assertStringIncludes(html, "Code differences");
  assertStringIncludes(html, "-d\n+D");
});

Deno.test("fingerprint.dirty_files: git's porcelain lines, shown in the report's context rows", () => {
  assert.deepEqual(porcelainFiles("M lib/train/session.ts\n M kernels/a.wgsl\n?? my_experiment.ts\n"), [
    "M lib/train/session.ts",
    "M kernels/a.wgsl",
    "?? my_experiment.ts",
  ]);
  const log: TrainingLog = {
    config: {},
    runs: [],
    fingerprint: {
      commit: "abc",
      dirty: true,
      dirty_files: ["M lib/train/session.ts", "?? my_experiment.ts"],
    },
  };
  assert.deepEqual(
    contextFields(log)["fingerprint.dirty_files"],
    "M lib/train/session.ts, ?? my_experiment.ts",
  );
});
