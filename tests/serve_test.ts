// `deno task serve`: only requests that name the server's own loopback host and port are answered (a DNS
// rebinding page, whose requests carry its own name as Host, reads nothing and starts no bundle); a bad
// percent-escape is a 400 with one line; bad flags are one line and exit 2 before anything listens; the page
// calls `?experiment=__proto__` an unknown experiment.

import assert from "node:assert/strict";
import { join } from "node:path";
import { allowedHost, serve } from "../serve.ts";
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
      const r = await runDeno(["run", "-A", "serve.ts", ...args]);
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
      })`) as { status: string; error: string; shown: string; selected: string };
      assert.equal(got.status, "failed");
      assert.match(got.error, /^unknown experiment "__proto__" in the URL; expected one of main\.ts, /);
      assert.ok(got.shown.startsWith(got.error), got.shown);
      assert.equal(got.selected, "main.ts");
    } finally {
      await closeBrowser(b);
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
