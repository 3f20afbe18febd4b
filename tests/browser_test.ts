// The training page in a real browser: lib/cli/serve.ts (in this process, a free port on 127.0.0.1) with a
// small synthetic dataset (tests/synthetic.ts, verification off) and an experiment file named as on the
// command line (tests/fixtures/my_experiment.ts), headless Chromium opens the page with that file, a tiny
// configuration and a test subset (test_n) in the URL and autostart, and the test waits for
// window.airbenchLog.status to be "done" (no timing: an overall limit only). It checks the net learned above
// chance, the log has main.ts's keys, the subset is said next to the accuracies, the status never showed a
// rate before a timed step, the page logged no console errors, and saves a screenshot in a temporary folder
// (printed).

import assert from "node:assert/strict";
import type { Browser, Page } from "puppeteer-core";
import { closeBrowser, launch, shouldRun } from "./chromium.ts";
import { join } from "node:path";
import { serve } from "../lib/cli/serve.ts";
import { writeDataset } from "./synthetic.ts";
import { Rng } from "../lib/data/rng.ts";

// The keys of lib/train/session.ts's ExperimentLog as main.ts writes them.
const LOG_KEYS = [
  "experiment",
  "argv",
  "code",
  "fingerprint",
  "config",
  "adapter",
  "precision",
  "conv_variant",
  "tune",
  "conv_variants",
  "network",
  "status",
  "runs",
  "mean",
  "std",
];
const LIMIT_MS = 15 * 60_000; // generous: SwiftShader on two shared cores

/** window.airbenchLog once the run ended. */
type PageLog = Record<string, unknown> & {
  status: string;
  error?: string;
  runs: { epochs: Record<string, number>[]; tta_val_acc: number; weights_sha256?: string }[];
  config: { trainN: number; testN: number; testOf: number; net: { widths: number[] } };
  code: string;
  argv: string[];
};

/** What the page shows once the run ended, and every text its status line showed. */
interface PageView {
  caption: string;
  confusionNote: string;
  accTitle: string;
  statuses: string[];
  lossPaths: number;
  accPaths: number;
  lossD: string;
  cells: number;
  images: number;
  downloads: (string | null)[];
}

/**
 * Open the training page on the experiment file with a tiny configuration and autostart; wait (no timing: an
 * overall limit only) for the run to end. The page, its console errors, and its log.
 */
async function trainOnPage(browser: Browser, url: string, mine: string) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 1700 });
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  // Every text the status line shows, from the start (the first step must not read "step 0/... ETA 0 s").
  await page.evaluateOnNewDocument(`window.statuses = [];
    document.addEventListener("DOMContentLoaded", () => {
      const el = document.getElementById("status");
      new MutationObserver(() => window.statuses.push(el.textContent))
        .observe(el, { childList: true, characterData: true, subtree: true });
    });`);
  const q = `experiment=${mine}&widths=8,16,16&train_n=1000&test_n=150&epochs=3&batch_size=100&tta=0` +
    "&seed=1&autostart=1";
  await page.goto(`${url}?${q}`);
  await page.waitForFunction(
    `["done", "failed"].includes(window.airbenchLog?.status ?? "")`,
    { timeout: LIMIT_MS, polling: 500 },
  );
  const log = await page.evaluate("window.airbenchLog") as PageLog;
  return { page, errors, log };
}

/** For a look afterwards: a screenshot and the log in a temporary folder (printed), never the user's logs/. */
async function saveScreenshot(page: Page, log: PageLog) {
  await page.waitForSelector("#grid canvas", { timeout: 60_000 });
  const out = await Deno.makeTempDir({ prefix: "airbench-browser-test-" });
  await page.screenshot({ path: join(out, "browser-test.png") as `${string}.png`, fullPage: true });
  await Deno.writeTextFile(join(out, "browser-test.json"), JSON.stringify(log, null, 1));
  console.log(`page screenshot and log: ${out}`);
}

/** The page's log: main.ts's keys, the experiment file and configuration, a run that learned. */
async function assertPageLog(log: PageLog, mine: string) {
  assert.equal(log.status, "done", `the page's run failed: ${log.error}`);
  for (const k of LOG_KEYS) assert.ok(k in log, `the log has no "${k}"`);
  assert.equal(log.experiment, mine);
  assert.equal(
    log.code,
    await Deno.readTextFile(new URL("./fixtures/my_experiment.ts", import.meta.url)),
  );
  assert.equal(log.config.testN, 150);
  assert.equal(log.config.testOf, 200);
  assert.deepEqual(log.config.net.widths, [8, 16, 16]);
  assert.equal(log.config.trainN, 1000);
  assert.ok(log.argv.includes("--widths"), "argv holds main.ts's flags");
  const run = log.runs[0];
  assert.equal(run.epochs.length, 3);
  for (const e of run.epochs) {
    for (const k of ["epoch", "train_loss", "train_acc", "val_acc", "total_time_seconds"]) {
      assert.ok(Number.isFinite(e[k]), `epoch row ${k} = ${e[k]}`);
    }
  }
  // Ten classes: chance is 10%; the synthetic classes are easy.
  assert.ok(run.tta_val_acc > 0.3, `test accuracy ${run.tta_val_acc} is not above chance`);
  assert.match(String(run.weights_sha256), /^[0-9a-f]{64}$/, "the digest of the final weights");
}

/** The charts, confusion matrix, image grid and downloads drawn; the test subset said; no early rate. */
async function assertPageDrawn(page: Page) {
  const view = await page.evaluate(`({
    lossPaths: document.querySelectorAll("#lossChart path.series").length,
    accPaths: document.querySelectorAll("#accChart path.series").length,
    lossD: document.querySelector("#lossChart path.series")?.getAttribute("d") ?? "",
    cells: document.querySelectorAll("#confusion td").length,
    images: document.querySelectorAll("#grid canvas").length,
    downloads: [...document.querySelectorAll("#downloads a")].map((a) => a.getAttribute("download")),
    caption: document.querySelector("#table caption")?.textContent ?? "",
    confusionNote: document.getElementById("confusionNote").textContent,
    accTitle: document.querySelector("#accChart svg")?.getAttribute("aria-label") ?? "",
    statuses: window.statuses,
  })`) as PageView;
  assert.ok(view.lossPaths >= 1 && view.lossD.split(/[ML]/).length > 10, "live loss curve drawn");
  assert.ok(view.accPaths >= 1, "accuracy curve drawn");
  assert.equal(view.cells, 100, "10x10 confusion matrix");
  assert.ok(view.images > 0, "test image grid");
  assert.ok(view.downloads.some((d) => d?.endsWith(".json")), "JSON log download");
  assert.ok(view.downloads.some((d) => d?.endsWith(".safetensors")), "safetensors download");
  // A subset of the test set is said next to every accuracy.
  assert.match(view.caption, /test 150 of 200/);
  assert.match(view.confusionNote, /150 of 200 test images/);
  assert.match(view.accTitle, /test 150 of 200/);
  assert.ok(view.statuses.some((t) => /compiling/.test(t)), view.statuses.join(" | "));
  const early = view.statuses.filter((t) => /step 0\//.test(t));
  assert.deepEqual(early, [], "no rate or ETA before a step is timed");
}

Deno.test({
  name: "page: trains main.ts's net on synthetic data in headless Chromium",
  ignore: !shouldRun("browser_test"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "airbench-synth-" });
    const rng = new Rng(7);
    await writeDataset(dir, 200, () => rng.float()); // 1000 training and 200 test images
    // An experiment file of one's own, named as `deno task serve tests/fixtures/my_experiment.ts` names it.
    const mine = "tests/fixtures/my_experiment.ts";
    const { url, server } = serve({ port: 0, data: dir, verify: false, quiet: true, experiments: [mine] });
    const b = await launch();
    try {
      const { page, errors, log } = await trainOnPage(b.browser, url, mine);
      assert.equal(log.status, "done", `the page's run failed: ${log.error}`);
      await saveScreenshot(page, log);
      await assertPageLog(log, mine);
      await assertPageDrawn(page);
      assert.deepEqual(errors, [], "console errors");
    } finally {
      await closeBrowser(b);
      await server.shutdown();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
