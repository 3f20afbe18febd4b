// End-to-end helpers: small generated datasets in the CIFAR-10 binary layout, and running a Deno program of
// the project (an experiment file, a task) as a user would, in the project's root.

import assert from "node:assert/strict";
import { join } from "node:path";
import { RECORD_BYTES } from "../lib/data/cifar_batches.ts";
import { ROOT } from "../lib/root.ts";
import { testRng } from "./util.ts";

/** `deno ARGS` in the project root; stdout and stderr collected. */
export async function runDeno(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** Images whose class is visible to a small convnet: a class colour, a class stripe direction, and noise. */
export function makeBatch(n: number, rand: () => number): Uint8Array {
  const out = new Uint8Array(n * RECORD_BYTES);
  for (let i = 0; i < n; i++) {
    const label = Math.floor(rand() * 10);
    const o = i * RECORD_BYTES;
    out[o] = label;
    for (let c = 0; c < 3; c++) {
      const base = 60 + 40 * ((label + c * 3) % 5);
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const stripe = ((label < 5 ? x : y) >> 2) % 2 ? 50 : -50;
          const v = base + stripe + (rand() - 0.5) * 80;
          out[o + 1 + c * 1024 + y * 32 + x] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
  }
  return out;
}

/** Five training batches of `perBatch` images and a test batch of as many, written into `dir`. */
export async function writeDataset(dir: string, perBatch: number, rand: () => number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (let b = 1; b <= 5; b++) {
    await Deno.writeFile(join(dir, `data_batch_${b}.bin`), makeBatch(perBatch, rand));
  }
  await Deno.writeFile(join(dir, "test_batch.bin"), makeBatch(perBatch, rand));
}

/**
 * Train an experiment file end to end on a synthetic set (widths 8,8,8, 200 images a batch, 1.5 epochs of
 * batch 50: 30 steps, TTA off, seed 3) in `dir`; returns its one log and the path of its weights.
 */
export async function trainTinyEndToEnd(
  file: string,
  dir: string,
  // deno-lint-ignore no-explicit-any
): Promise<{ log: any; weights: string }> {
  const data = join(dir, "data"), weights = join(dir, "w.safetensors"), logDir = join(dir, "logs");
  await writeDataset(data, 200, testRng(99));
  const r = await runDeno([
    "run",
    "-A",
    file,
    ...["--data", data, "--verify", "false", "--runs", "1", "--widths", "8,8,8", "--epochs", "1.5"],
    ...["--batch-size", "50", "--tta", "0", "--seed", "3", "--quiet", "--log-dir", logDir],
    ...["--save-weights", weights],
  ]);
  assert.equal(r.code, 0, `${file} failed:\n${r.stderr}\n${r.stdout}`);
  const files = [...Deno.readDirSync(logDir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assert.equal(files.length, 1, `${file}: ${files.length} logs, expected 1`);
  return { log: JSON.parse(Deno.readTextFileSync(join(logDir, files[0]))), weights };
}
