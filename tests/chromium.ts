// Headless Chromium for the page tests: puppeteer-core driving Debian's /usr/bin/chromium (WebGPU on
// SwiftShader). Shared by tests/browser_test.ts and tests/report_browser_test.ts.

import puppeteer, { type Browser } from "puppeteer-core";

// ---- headless Chromium (puppeteer-core driving Debian's /usr/bin/chromium, WebGPU on SwiftShader); the test
// skips with one line when none is installed, unless CI=true (then Chromium must be there: .ci/run installs
// it)

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

export function findChromium(): string | null {
  const env = Deno.env.get("CHROMIUM");
  for (const p of env ? [env, ...CANDIDATES] : CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

/** Whether a page test runs: Chromium found, or CI (which must have it: the test then fails naming it). */
export function shouldRun(name: string): boolean {
  if (findChromium()) return true;
  if (Deno.env.get("CI") === "true") return true;
  console.log(`${name}: skipped (no chromium installed; apt-get install chromium)`);
  return false;
}

export async function launch(): Promise<{ browser: Browser; profile: string }> {
  const exe = findChromium();
  if (!exe) throw new Error("CI is set but no chromium is installed (apt-get install -y chromium)");
  const profile = await Deno.makeTempDir({ prefix: "airbench-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: exe,
    headless: true,
    // waitForFunction is one protocol call that lasts until its condition holds: no limit of its own (the
    // waits name theirs).
    protocolTimeout: 0,
    args: [
      "--headless=new",
      "--enable-unsafe-webgpu",
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      `--user-data-dir=${profile}`,
    ],
  });
  return { browser, profile };
}

export async function closeBrowser(b: { browser: Browser; profile: string }): Promise<void> {
  await b.browser.close().catch(() => {});
  await Deno.remove(b.profile, { recursive: true }).catch(() => {});
}
