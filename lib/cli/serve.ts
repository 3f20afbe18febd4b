// `deno task serve [--port N] [--data PATH] [--verify false] [FILE.ts ...]`: the training page on
// http://127.0.0.1:PORT/ (this machine only: every request must name 127.0.0.1:PORT or localhost:PORT as its
// Host, so a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) can read nothing here and
// start nothing). It serves web/index.html, the library bundled for the browser (web/app.ts, built with `deno
// bundle` on each request so an edit shows on reload), the kernels (kernels/*.wgsl, registered in the page
// with Gpu.defineSource: one copy of each kernel), the experiment files (main.ts, experiments/*.ts and the
// files named on the command line, inside the project: bundled into the page, their text the log's `code`),
// the fingerprint of lib/ and kernels/, and CIFAR-10 loaded exactly as main.ts loads it (lib/data/cifar.ts's
// loadCifar10: the verified cache, else the official archive; --data PATH with --verify false for data of
// your own, e.g. the tests' synthetic set).
//
// `deno task serve --write DIR` writes the same page as static files instead (index.html, app.js, the node
// shim, kernels/): served from anywhere, the page asks for cifar-10-binary.tar.gz (dropped or picked).

import { dirname, isAbsolute, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type Cifar10 } from "../data/cifar_batches.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { joinNegativeValues } from "../io/flags.ts";
import { checkWritable, fingerprint } from "../io/runlog.ts";
import { ROOT } from "../root.ts";

const WEB = join(ROOT, "web");
const KERNELS = join(ROOT, "kernels");
/** The experiment files every page offers; experiments/ adds its own (experimentFiles). */
export const EXPERIMENTS = ["main.ts"];
/** What makes a .ts file an experiment the page can train: it exports `experiment` (as main.ts does). */
const EXPORTS_EXPERIMENT = /^export const experiment\b/m;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".wgsl": "text/plain; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".bin": "application/octet-stream",
};

export interface ServeOptions {
  port?: number; // 0: any free port
  /** --data PATH (the archive or a folder of the six .bin files); default: the cache, as main.ts. */
  data?: string;
  /** false: no SHA-256 checks and no cache (your own data, e.g. a synthetic set); needs `data`. */
  verify?: boolean;
  quiet?: boolean;
  /** The data, loaded already (serve's start-up check of --data); else loaded on the first request. */
  loaded?: Cifar10;
  /** Experiment files named on the command line (project-relative, checked by experimentFile). */
  experiments?: string[];
}

/**
 * A file named on the command line as an experiment for the page: its path relative to the project root, or
 * an Error saying why not (not a .ts file, not there, outside the project, or no `export const experiment`).
 */
export function experimentFile(arg: string): string {
  let real: string;
  try {
    real = Deno.realPathSync(arg);
  } catch {
    throw new Error(`${arg}: no such file (name an experiment file, e.g. a copy of main.ts)`);
  }
  const rel = relative(Deno.realPathSync(ROOT), real).split("\\").join("/");
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new Error(`${arg}: outside the project (${ROOT}); the page serves experiment files inside it only`);
  }
  if (!rel.endsWith(".ts") || !Deno.statSync(real).isFile) throw new Error(`${arg}: not a .ts file`);
  if (!EXPORTS_EXPERIMENT.test(Deno.readTextFileSync(real))) {
    throw new Error(
      `${arg}: exports no \`experiment\` (copy main.ts and keep its \`export const experiment\`)`,
    );
  }
  return rel;
}

/** The experiments a page offers: main.ts, experiments/*.ts exporting `experiment`, then `extra` (checked). */
export function experimentFiles(extra: string[] = []): string[] {
  const dir = join(ROOT, "experiments");
  const found = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".ts"))
    .map((e) => `experiments/${e.name}`)
    .filter((f) => EXPORTS_EXPERIMENT.test(Deno.readTextFileSync(join(ROOT, f))))
    .sort();
  return [...new Set([...EXPERIMENTS, ...found, ...extra])];
}

/**
 * `deno bundle --platform browser` (the project's deno.json applies) of the project file `entry.path` or of
 * the generated module `entry.source`: the text of the bundle. `what` names it in the error.
 */
async function denoBundle(entry: { path: string } | { source: string }, what: string): Promise<string> {
  const tmp = await Deno.makeTempDir({ prefix: "airbench-bundle-" });
  const out = join(tmp, "out.js");
  try {
    const file = "path" in entry ? join(ROOT, entry.path) : join(tmp, "entry.ts");
    if ("source" in entry) await Deno.writeTextFile(file, entry.source);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "browser", "-o", out, file],
      cwd: ROOT, // the project's deno.json (its imports) applies
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`deno bundle of ${what} failed:\n${new TextDecoder().decode(r.stderr)}`);
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * Bundle web/app.ts with the experiment files `experiments` (paths in the project) for the browser: a
 * generated entry imports each file's `experiment` and starts the page with them; node: built-ins stay
 * external (the page maps them to the node shim). Built on each request, so an edit (or a new file in
 * experiments/) shows on reload.
 */
export function bundle(experiments: string[] = experimentFiles()): Promise<string> {
  const url = (p: string) => JSON.stringify(pathToFileURL(join(ROOT, p)).href);
  const lines = [
    `import { startPage } from ${url("web/app.ts")};`,
    ...experiments.map((f, i) => `import { experiment as e${i} } from ${url(f)};`),
    `startPage({ ${experiments.map((f, i) => `${JSON.stringify(f)}: e${i}`).join(", ")} });`,
  ];
  return denoBundle({ source: lines.join("\n") + "\n" }, `web/app.ts with ${experiments.join(", ")}`);
}

/** web/node_shim.js and the npm packages it takes node:path, node:crypto and node:util from, for the page. */
export function bundleNodeShim(): Promise<string> {
  return denoBundle({ path: "web/node_shim.js" }, "web/node_shim.js");
}

/** Every .wgsl file under kernels/, by its path there ("conv.wgsl", "shared/grid.wgsl"). */
export function kernelNames(sub = ""): string[] {
  return [...Deno.readDirSync(join(KERNELS, sub))].flatMap((e) => {
    const name = sub ? `${sub}/${e.name}` : e.name;
    if (e.isDirectory) return kernelNames(name);
    return e.isFile && e.name.endsWith(".wgsl") ? [name] : [];
  }).sort();
}

function loadData(o: ServeOptions): Promise<Cifar10> {
  if (o.verify === false) {
    if (!o.data) throw new Error("--verify false needs --data PATH (your own data)");
    return loadCifar10({ path: o.data, quiet: o.quiet, expectedSha: null, cache: false, officialUrl: null });
  }
  return loadCifar10({ path: o.data, quiet: o.quiet });
}

const bytes = (b: Uint8Array, type = "application/octet-stream") =>
  new Response(b as Uint8Array<ArrayBuffer>, {
    headers: { "content-type": type, "cache-control": "no-store" },
  });
const json = (x: unknown, status = 200) =>
  new Response(JSON.stringify(x), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });

const text = (body: string, status: number) =>
  new Response(`${body}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8" } });

/** The Host names a page of this server sends: the loopback names with the port served. */
export function allowedHost(host: string | null, port: number): boolean {
  const names = ["127.0.0.1", "localhost"];
  return host !== null && names.some((n) => host === `${n}:${port}` || (port === 80 && host === n));
}

/**
 * The request handler for the server on `port()` (exported for tests). Data is loaded on first request (or
 * given as `o.loaded`) and kept.
 */
export function handler(o: ServeOptions, port: () => number): (req: Request) => Promise<Response> {
  let data: Promise<Cifar10> | undefined = o.loaded && Promise.resolve(o.loaded);
  const getData = () => data ??= loadData(o);
  return async (req) => {
    if (!allowedHost(req.headers.get("host"), port())) {
      return text(`forbidden: this server answers only http://127.0.0.1:${port()}/ and localhost`, 403);
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url).pathname);
    } catch {
      return text("bad request: the path is not valid percent-encoding", 400);
    }
    try {
      if (path === "/" || path === "/index.html") {
        return bytes(await Deno.readFile(join(WEB, "index.html")), TYPES[".html"]);
      }
      if (path === "/app.js") {
        return bytes(new TextEncoder().encode(await bundle(experimentFiles(o.experiments))), TYPES[".js"]);
      }
      if (path === "/node_shim.js") {
        return bytes(new TextEncoder().encode(await bundleNodeShim()), TYPES[".js"]);
      }
      if (path === "/kernels/index.json") return json(kernelNames());
      const kernel = path.match(/^\/kernels\/((?:[\w-]+\/)*[\w.-]+\.wgsl)$/);
      if (kernel && kernelNames().includes(kernel[1])) {
        return bytes(await Deno.readFile(join(KERNELS, kernel[1])), TYPES[".wgsl"]);
      }
      const src = path.match(/^\/src\/(.+)$/);
      if (src && experimentFiles(o.experiments).includes(src[1])) {
        return bytes(await Deno.readFile(join(ROOT, src[1])), TYPES[".ts"]);
      }
      if (path === "/fingerprint.json") return json(fingerprint());
      if (path === "/data/info.json") {
        try {
          const d = await getData();
          return json({ source: d.source, verified: o.verify !== false, train: d.train.n, test: d.test.n });
        } catch (e) {
          data = undefined; // try again on the next request
          return json({ error: (e as Error).message }, 503);
        }
      }
      const part = path.match(/^\/data\/(train|test)_(images|labels)\.bin$/);
      if (part) {
        const d = await getData();
        const split = part[1] === "train" ? d.train : d.test;
        return bytes(part[2] === "images" ? split.images : split.labels);
      }
      return text("not found", 404);
    } catch (e) {
      return text((e as Error).message, 500);
    }
  };
}

/** Start the server on 127.0.0.1 (port 0: a free one). */
export function serve(o: ServeOptions): { url: string; server: Deno.HttpServer<Deno.NetAddr> } {
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: o.port ?? 8000, onListen: () => {} },
    handler(o, () => server.addr.port),
  );
  return { url: `http://127.0.0.1:${server.addr.port}/`, server };
}

/** The page as static files under `dir` (no data: the page asks for the archive). */
export async function writeStatic(dir: string, extra: string[] = []): Promise<void> {
  const experiments = experimentFiles(extra);
  await Deno.mkdir(join(dir, "kernels"), { recursive: true });
  await Deno.copyFile(join(WEB, "index.html"), join(dir, "index.html"));
  await Deno.writeTextFile(join(dir, "node_shim.js"), await bundleNodeShim());
  await Deno.writeTextFile(join(dir, "app.js"), await bundle(experiments));
  const names = kernelNames();
  for (const k of names) {
    await Deno.mkdir(dirname(join(dir, "kernels", k)), { recursive: true });
    await Deno.copyFile(join(KERNELS, k), join(dir, "kernels", k));
  }
  await Deno.writeTextFile(join(dir, "kernels", "index.json"), JSON.stringify(names));
  for (const e of experiments) {
    await Deno.mkdir(dirname(join(dir, "src", e)), { recursive: true });
    await Deno.copyFile(join(ROOT, e), join(dir, "src", e));
  }
  await Deno.writeTextFile(join(dir, "fingerprint.json"), JSON.stringify(fingerprint()));
}

const USAGE =
  "usage: deno task serve [--port N] [--data PATH] [--verify true|false] [--write DIR] [EXPERIMENT.ts ...]";
const OPTIONS = {
  port: { type: "string" },
  data: { type: "string" },
  verify: { type: "string" },
  write: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = { port?: string; data?: string; verify?: string; write?: string; help?: boolean };
type Parsed = { values: Values; positionals: string[] };

/** The checked serving options (before any work), or the one-line reason they are not valid. */
async function serveOptions(v: Values, experiments: string[]): Promise<ServeOptions | string> {
  const port = v.port === undefined ? 8000 : Number(v.port);
  if (v.port !== undefined && (!/^\d+$/.test(v.port) || port > 65535)) {
    return `--port ${JSON.stringify(v.port)}: expected a port number 0..65535 (0: any free port)`;
  }
  if (v.verify !== undefined && !["true", "false"].includes(v.verify)) {
    return `--verify ${JSON.stringify(v.verify)}: expected true or false`;
  }
  const verify = v.verify !== "false";
  if (!verify && !v.data) return "--verify false needs --data PATH (your own data)";
  const o: ServeOptions = { port, data: v.data, verify, experiments };
  if (v.data !== undefined) {
    try {
      o.loaded = await loadData(o); // checked and loaded now, not on the page's first request
    } catch (e) {
      return `--data ${v.data}: ${(e as Error).message.split("\n")[0]}`;
    }
  }
  return o;
}

async function main(args: string[]): Promise<number> {
  let p: Parsed;
  const experiments: string[] = [];
  try {
    p = parseArgs({
      args: joinNegativeValues(args, OPTIONS),
      options: OPTIONS,
      strict: true,
      allowPositionals: true,
    });
    for (const f of p.positionals) experiments.push(experimentFile(f));
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}; ${USAGE}`);
    return 2;
  }
  const v = p.values;
  if (v.help) {
    console.log(
      `${USAGE}\n\nThe training page on http://127.0.0.1:PORT/ (default 8000; 0 picks a free port). It trains ` +
        "main.ts, every experiments/*.ts that exports `experiment`, and the experiment files named (inside " +
        "the project, e.g. a copy of main.ts).",
    );
    return 0;
  }
  if (v.write !== undefined) {
    try {
      checkWritable("--write", v.write, "dir");
    } catch (e) {
      console.error(`error: ${(e as Error).message}`);
      return 2;
    }
    await writeStatic(v.write, experiments);
    console.log(`static page written to ${v.write}: serve that folder with any web server`);
    return 0;
  }
  const o = await serveOptions(v, experiments);
  if (typeof o === "string") {
    console.error(`error: ${o}`);
    return 2;
  }
  let url;
  try {
    ({ url } = serve(o));
  } catch (e) {
    console.error(`error: cannot listen on 127.0.0.1:${o.port} (${(e as Error).message}); try --port 0`);
    return 1;
  }
  console.log(`airbench page: ${url}  (this machine only; Ctrl-C stops it)`);
  console.log(`experiments: ${experimentFiles(experiments).join(", ")}`);
  await new Promise(() => {});
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
