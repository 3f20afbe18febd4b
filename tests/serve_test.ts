// `deno task serve`: only requests that name the server's own loopback host and port are answered (a DNS
// rebinding page, whose requests carry its own name as Host, reads nothing and starts no bundle); a bad
// percent-escape is a 400 with one line; bad flags are one line and exit 2 before anything listens; the page
// calls `?experiment=__proto__` an unknown experiment.

import assert from "node:assert/strict";
import { join } from "node:path";
import { allowedHost, bundle, experimentFile, experimentFiles, serve } from "../lib/cli/serve.ts";
import { accuracyChart, QUICK_RUN, statusLine } from "../web/run.ts";
import { lineChartLayout } from "../lib/report/charts.ts";
import { closeBrowser, launch, shouldRun } from "./chromium.ts";
import { runDeno, writeDataset } from "./synthetic.ts";
import { testRng } from "./util.ts";

/** One GET over a plain TCP connection, with exactly the Host header given (none: null; HTTP/1.0). */
async function rawGet(port: number, path: string, host: string | null) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = host === null ? `GET ${path} HTTP/1.0\r\n` : `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  await conn.write(new TextEncoder().encode(`${head}Connection: close\r\n\r\n`));
  const reply = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  return { status: Number(reply.split(" ")[1]), body: reply.slice(reply.indexOf("\r\n\r\n") + 4) };
}

Deno.test("serve: answers its own loopback Host only; a bad escape is a 400 in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-serve-test-" });
  await writeDataset(dir, 20, testRng(3));
  const { server } = serve({ port: 0, data: dir, verify: false, quiet: true });
  const port = server.addr.port;
  try {
    for (const path of ["/data/info.json", "/data/test_images.bin", "/fingerprint.json", "/app.js", "/"]) {
      for (const host of [`rebind.example:${port}`, `127.0.0.1:${port + 1}`, "127.0.0.1", null]) {
        const r = await rawGet(port, path, host);
        assert.equal(r.status, 403, `${path} with Host ${host}: ${r.body}`);
        assert.doesNotMatch(r.body, new RegExp(dir.replaceAll("/", "\\/")));
      }
    }
    const own = await rawGet(port, "/data/info.json", `127.0.0.1:${port}`);
    assert.equal(own.status, 200, own.body);
    assert.match(own.body, /"train":100/);
    assert.equal((await rawGet(port, "/kernels/index.json", `localhost:${port}`)).status, 200);
    const page = await fetch(`http://127.0.0.1:${port}/fingerprint.json`);
    assert.equal(page.status, 200);
    assert.ok("files" in await page.json());
    for (const path of ["/%", "/%E0%A4%A", "/src/%ZZ"]) {
      const r = await rawGet(port, path, `127.0.0.1:${port}`);
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.equal(r.body, "bad request: the path is not valid percent-encoding\n");
    }
    assert.ok(
      allowedHost("localhost:80", 80) && allowedHost("localhost", 80) && !allowedHost("localhost", 81),
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve: bad flags are one line and exit 2 before anything listens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "airbench-serve-test-" });
  try {
    const file = join(dir, "a-file");
    await Deno.writeTextFile(file, "");
    const cases: [string[], RegExp][] = [
      [["--port", ""], /^error: --port "": expected a port number 0\.\.65535/],
      [["--port", "-1"], /^error: --port "-1": expected a port number 0\.\.65535/],
      [["--port", "80x"], /^error: --port "80x": expected a port number/],
      [["--data", join(dir, "none")], /^error: --data .*none: CIFAR-10: cannot read .*none \(NotFound\)/],
      [["--data", file, "--verify", "false"], /^error: --data .*a-file: CIFAR-10: /],
      [["--write", file], /^error: --write .*a-file: is a file, not a folder/],
      [["--write", join(file, "sub")], /^error: --write .*sub: cannot write there/],
    ];
    for (const [args, message] of cases) {
      const r = await runDeno(["run", "-A", "lib/cli/serve.ts", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}${r.stdout}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stdout, /airbench page:/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "page: ?experiment=__proto__ is an unknown experiment (nothing starts)",
  ignore: !shouldRun("serve_test page"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "airbench-serve-test-" });
    await writeDataset(dir, 20, testRng(4));
    const { url, server } = serve({ port: 0, data: dir, verify: false, quiet: true });
    const b = await launch();
    try {
      const page = await b.browser.newPage();
      await page.goto(`${url}?experiment=__proto__&autostart=1`);
      // The data arrives (autostart would start now), and the page still says why it does not train.
      await page.waitForFunction(`/^data: (?!asking)/.test(document.getElementById("data").textContent)`, {
        timeout: 120_000,
        polling: 200,
      });
      const got = await page.evaluate(`({
        status: window.airbenchLog?.status,
        error: window.airbenchLog?.error,
        shown: document.getElementById("error").textContent,
        selected: document.getElementById("experiment").value,
        widths: document.querySelector("input[name=widths]").value,
        testN: document.querySelector("input[name=test_n]").value,
        note: document.getElementById("quickNote").textContent,
      })`) as { status: string; error: string; shown: string; selected: string; [k: string]: string };
      assert.equal(got.status, "failed");
      assert.match(got.error, /^unknown experiment "__proto__" in the URL; expected one of main\.ts, /);
      assert.ok(got.shown.startsWith(got.error), got.shown);
      assert.equal(got.selected, "main.ts");
      // The form's defaults are the quick settings (a run that learns in minutes on a CPU), said next to it.
      assert.equal(got.widths, QUICK_RUN.widths);
      assert.equal(got.testN, QUICK_RUN.test_n);
      assert.match(got.note, /^quick settings: about \d+% /);
    } finally {
      await closeBrowser(b);
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("serve: any experiment file in the project (experiments/, or named); others are one line, exit 2", async () => {
  const files = experimentFiles();
  assert.equal(files[0], "main.ts");
  assert.ok(files.includes("experiments/airbench94.ts"), files.join(", "));
  assert.ok(files.every((f) => f === "main.ts" || f.startsWith("experiments/")));
  const mine = "tests/fixtures/my_experiment.ts";
  assert.equal(experimentFile(mine), mine);
  assert.deepEqual(experimentFiles([mine]).slice(-1), [mine]);
  assert.throws(() => experimentFile("tests/fixtures/nothing.ts"), /no such file/);
  assert.throws(() => experimentFile("lib/train/session.ts"), /exports no `experiment`/);
  assert.throws(() => experimentFile("deno.json"), /not a \.ts file/);
  const outside = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(outside, "export const experiment = {};\n");
    assert.throws(() => experimentFile(outside), /outside the project/);
    const r = await runDeno(["run", "-A", "lib/cli/serve.ts", "--port", "0", outside]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^error: .*: outside the project/);
  } finally {
    await Deno.remove(outside);
  }
  // The page's bundle holds the named file; the server hands out its text (and not that of other files).
  const js = await bundle(experimentFiles([mine]));
  assert.match(js, /my experiment \(main\.ts's, under my name\)/);
  const dir = await Deno.makeTempDir({ prefix: "airbench-serve-test-" });
  await writeDataset(dir, 20, testRng(5));
  const { server } = serve({ port: 0, data: dir, verify: false, quiet: true, experiments: [mine] });
  const port = server.addr.port;
  try {
    const got = await rawGet(port, `/src/${mine}`, `127.0.0.1:${port}`);
    assert.equal(got.status, 200);
    assert.equal(
      got.body,
      await Deno.readTextFile(join(import.meta.dirname!, "fixtures", "my_experiment.ts")),
    );
    assert.equal((await rawGet(port, "/src/experiments/airbench94.ts", `127.0.0.1:${port}`)).status, 200);
    for (const path of ["/src/lib/train/session.ts", "/src/deno.json", "/src/../lib/cli/serve.ts"]) {
      assert.equal((await rawGet(port, path, `127.0.0.1:${port}`)).status, 404, path);
    }
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("page status: the Run's words until a step is timed (no 'ETA 0 s'), then rate and ETA", () => {
  const p = { run: 0, step: 0, total: 100, trainSeconds: 0, what: "run 0: compiling the kernels" };
  assert.equal(statusLine(p, 64, 1), "run 0: compiling the kernels");
  const first = { ...p, what: "run 0 epoch 0: first step of 100 (timing it for the estimate)" };
  assert.equal(statusLine(first, 64, 1), first.what);
  const later = { ...p, step: 10, trainSeconds: 5, what: "run 0 epoch 0 step 10/100  128.0 img/s" };
  assert.equal(statusLine(later, 64, 2), "run 0 · step 10/100 · 128.0 img/s · ETA 1.6 min (training)"); // (90 + 100) steps x 0.5 s
});

Deno.test("page accuracy chart: epoch 0 at x = 0 as in the table; the y axis spans 0..100%", () => {
  const log = {
    config: { testN: 100, testOf: 200 },
    runs: [{
      run: 0,
      seed: 0,
      epochs: [{ epoch: 0, val_acc: 0.3, train_acc: 0.1 }, { epoch: 1, val_acc: 0.5, train_acc: 0.2 }],
    }],
  };
  const o = accuracyChart(log);
  assert.deepEqual(o.series[0].points, [[0, 0.3], [1, 0.5]]);
  assert.match(o.title, /\(test 100 of 200\)/);
  const L = lineChartLayout(o);
  assert.equal(L.y.min, 0);
  assert.equal(L.y.max, 1);
  const [, yLow] = L.px(0, 0.1); // the train-batch point: above the chart's lower edge
  assert.ok(yLow < L.plot.y + L.plot.h - 1, `${yLow} vs the edge ${L.plot.y + L.plot.h}`);
});
