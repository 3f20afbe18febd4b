// The HTML report (lib/report/html.ts, what `deno task report` writes) rendered by a real browser: two
// fixture logs (tests/fixtures/logs/) make one page, headless Chromium opens it from a file, and the test
// checks that every chart has drawn data (series paths with points, dots with a size on screen) and the page
// raised no errors. The page and a screenshot go to a temporary folder (printed).

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { closeBrowser, launch, shouldRun } from "./chromium.ts";
import { type NamedLog, reportHtml, type TrainingLog } from "../lib/report/html.ts";
import { ROOT } from "../lib/root.ts";

const FIXTURES = ["lr10.json", "lr5-f16.json"];

Deno.test({
  name: "report: two logs' charts have data in headless Chromium",
  ignore: !shouldRun("report_browser_test"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const logs: NamedLog[] = FIXTURES.map((f) => ({
      name: f.replace(/\.json$/, ""),
      source: `tests/fixtures/logs/${f}`,
      log: JSON.parse(Deno.readTextFileSync(join(ROOT, "tests", "fixtures", "logs", f))) as TrainingLog,
    }));
    // A temporary folder, never the user's logs/ (which `deno task report logs/*.json` reads).
    const out = await Deno.makeTempDir({ prefix: "airbench-report-browser-test-" });
    const html = join(out, "report-browser-test.html");
    await Deno.writeTextFile(html, reportHtml(logs, { generated: "test" }));
    const b = await launch();
    try {
      const page = await b.browser.newPage();
      await page.setViewport({ width: 1200, height: 900 });
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(pathToFileURL(html).href, { waitUntil: "load" });
      // Per chart: its title, the points of each series path, and the dots with a non-empty box on screen.
      const charts = await page.evaluate(`[...document.querySelectorAll("svg")].map((svg) => ({
        title: svg.getAttribute("aria-label") ?? "",
        cls: svg.getAttribute("class") ?? "",
        series: [...svg.querySelectorAll("path.series")].map((p) => {
          const box = p.getBBox();
          return { points: (p.getAttribute("d") ?? "").split(/[ML]/).filter((s) => s.trim()).length,
                   w: box.width, h: box.height };
        }),
        dots: [...svg.querySelectorAll("circle")].filter((c) => {
          const r = c.getBoundingClientRect();
          return r.width > 0 && r.height > 0;
        }).length,
      }))`) as {
        title: string;
        cls: string;
        series: { points: number; w: number; h: number }[];
        dots: number;
      }[];
      await page.screenshot({
        path: join(out, "report-browser-test.png") as `${string}.png`,
        fullPage: true,
      });

      const lines = charts.filter((c) => c.cls.includes("line-chart"));
      assert.ok(lines.length >= 2, `line charts: ${JSON.stringify(charts.map((c) => c.cls))}`);
      for (const c of lines) {
        assert.ok(c.series.length >= 2, `${c.title}: a curve per log`);
        for (const s of c.series) {
          assert.ok(s.points >= 2 && s.w > 0, `${c.title}: a curve with points on screen`);
        }
      }
      const dots = charts.filter((c) => !c.cls.includes("line-chart"));
      assert.ok(dots.length >= 1 && dots.every((c) => c.dots >= 2), "the TTA / time charts show dots");
      assert.deepEqual(errors, [], "console errors");
      console.log(`report page and screenshot: ${out}`);
    } finally {
      await closeBrowser(b);
    }
  },
});
