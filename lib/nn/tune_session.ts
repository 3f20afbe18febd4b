// The conv kernel variants of a session's network, chosen once before its runs (lib/nn/tune.ts chooses): in
// Deno from the tuning cache, by tuning now, from the defaults, or as a run log recorded them (--variants);
// in a page the defaults (no cache, no timing).

import { type ConvTiles, tilesFor } from "./conv.ts";
import type { Gpu } from "../gpu/gpu.ts";
import type { Precision } from "../gpu/kernels.ts";
import type { Graph } from "./module.ts";
import {
  cpuDefaultOf,
  fallbackOf,
  gpuTimeFn,
  kernelsHash,
  tuneKey,
  type TuneMode,
  tuneNetwork,
  Tuner,
  type VariantRecord,
  variantsFromRecord,
} from "./tune.ts";

/**
 * The conv kernel variant of every layer and pass (lib/nn/tune.ts): cached, tuned now (GPUs, or --tune
 * force), or the defaults; or, with `pinned` (--variants LOG), the ones a run log recorded. The training
 * batch's shapes are tuned; the evaluation nets use the same per-layer choices.
 */
export async function tuneSession(
  gpu: Gpu,
  graph: Graph,
  batch: number,
  precision: Precision,
  mode: TuneMode,
  quiet = false,
  pinned?: VariantRecord,
): Promise<{ tiles: ConvTiles; record: VariantRecord }> {
  const tiles = tilesFor(gpu.adapter);
  const limits = gpu.device.limits as unknown as Record<string, number>;
  if (pinned) return variantsFromRecord(pinned, tiles, graph, batch, precision, limits);
  const tuner = new Tuner({
    key: tuneKey(gpu.adapter, kernelsHash()),
    mode,
    isCpu: gpu.adapter.isCpu,
    time: gpuTimeFn(gpu, { tiles }),
    limits,
    // CPU adapters without a cached choice: the measured defaults (Winograd), except --tune off (direct)
    fallback: gpu.adapter.isCpu && mode !== "off" ? cpuDefaultOf(tiles) : fallbackOf(tiles),
    say: quiet ? undefined : (l) => console.error(l),
    warn: (l) => console.error(`warning: ${l}`),
  });
  if (tuner.tunes && !quiet) console.error(`tuning conv kernels (--tune ${mode}); cache ${tuner.path}`);
  return await tuneNetwork(tuner, tiles, graph, batch, precision);
}

/** The kernel variants of a page: the defaults (no tuning cache in a page; --tune off). */
export function pageVariants(gpu: Gpu, graph: Graph, batch: number, precision: Precision) {
  const a = gpu.adapter;
  const base = tilesFor(a);
  const tuner = new Tuner({
    key: tuneKey(a, "", "browser"), // never stored: no cache in a page
    mode: "off",
    isCpu: a.isCpu,
    time: () => Promise.reject(new Error("no tuning in a page")),
    limits: gpu.device.limits as unknown as Record<string, number>,
    fallback: fallbackOf(base),
    path: "(page)",
  });
  return tuneNetwork(tuner, base, graph, batch, precision);
}
