// How many optimizer steps a run takes: the one place the count is computed from the images, the batch size
// and the epochs (the loader's batches, the session's step table, the log, the checks before training, the
// page).

/** Number of full batches per epoch (the train loader drops the last partial batch). */
export function stepsPerEpoch(n: number, batchSize: number): number {
  if (!(Number.isSafeInteger(n) && n >= 0 && Number.isSafeInteger(batchSize) && batchSize >= 1)) {
    throw new Error(`stepsPerEpoch: bad arguments n=${n}, batchSize=${batchSize}`);
  }
  return Math.floor(n / batchSize);
}

/**
 * A run's optimizer steps: `n` training images in batches of `batchSize` (the last partial batch dropped) for
 * `epochs` epochs (fractional, as in 9.9: ceil).
 */
export function stepsPerRun(n: number, batchSize: number, epochs: number): number {
  return totalSteps(stepsPerEpoch(n, batchSize), epochs);
}

/** Total optimizer steps: ceil(stepsPerEpoch * epochs) (epochs may be fractional, as in 9.9). */
export function totalSteps(stepsPerEpoch: number, epochs: number): number {
  return Math.ceil(stepsPerEpoch * epochs);
}
