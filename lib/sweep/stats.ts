// Statistics of a sweep (lib/cli/sweep.ts): per configuration the mean with its Student-t 95% confidence
// interval, against a baseline Welch's difference, interval and two-sided p-value, and the runs per
// configuration that a two-sample t-test needs to resolve a difference (power analysis with the exact
// noncentral t distribution). Student's t comes from stdlib's distribution packages (tested against SciPy
// there and in tests/stats_test.ts); the noncentral t CDF is a quadrature over the chi distribution
// (tests/stats_test.ts checks it against SciPy).

import gammaln from "@stdlib/math-base-special-gammaln";
import normalCdf from "@stdlib/stats-base-dists-normal-cdf";
import tCdf from "@stdlib/stats-base-dists-t-cdf";
import tQuantile from "@stdlib/stats-base-dists-t-quantile";
import { meanStd } from "../report/console.ts";

export { tCdf, tQuantile };

/** n, mean, sample std and the 95% confidence interval of the mean (Student t, n - 1 degrees of freedom). */
export interface Described {
  n: number;
  mean: number;
  std: number;
  /** [low, high]; NaN with fewer than 2 values. */
  ci95: [number, number];
}

export function describe(xs: readonly number[], level = 0.95): Described {
  const n = xs.length;
  if (n === 0) return { n, mean: NaN, std: NaN, ci95: [NaN, NaN] };
  const { mean, std } = meanStd([...xs]);
  if (n < 2) return { n, mean, std: NaN, ci95: [NaN, NaN] };
  const half = tQuantile(1 - (1 - level) / 2, n - 1) * std / Math.sqrt(n);
  return { n, mean, std, ci95: [mean - half, mean + half] };
}

/** Welch's two-sample comparison of means: a - b, its 95% interval, t, the Welch-Satterthwaite df, two-sided p. */
export interface Welch {
  diff: number;
  ci95: [number, number];
  t: number;
  df: number;
  p: number;
}

export function welch(a: readonly number[], b: readonly number[], level = 0.95): Welch {
  const A = describe(a), B = describe(b);
  const diff = A.mean - B.mean;
  const va = A.std ** 2 / A.n, vb = B.std ** 2 / B.n;
  const se = Math.sqrt(va + vb);
  if (!(se > 0)) return { diff, ci95: [NaN, NaN], t: NaN, df: NaN, p: NaN }; // n < 2 or no spread at all
  const df = (va + vb) ** 2 / (va ** 2 / (A.n - 1) + vb ** 2 / (B.n - 1));
  const t = diff / se;
  const half = tQuantile(1 - (1 - level) / 2, df) * se;
  return { diff, ci95: [diff - half, diff + half], t, df, p: 2 * tCdf(-Math.abs(t), df) };
}

/** Pooled standard deviation of two samples (the common std of a two-sample t-test). */
export function pooledStd(a: readonly number[], b: readonly number[]): number {
  const A = describe(a), B = describe(b);
  if (A.n < 2 || B.n < 2) return NaN;
  return Math.sqrt(((A.n - 1) * A.std ** 2 + (B.n - 1) * B.std ** 2) / (A.n + B.n - 2));
}

/**
 * CDF of the noncentral t distribution with `df` degrees of freedom and noncentrality `nc`:
 * P(T <= t) = E[Phi(t W / sqrt(df) - nc)] with W chi-distributed (df), integrated by Simpson's rule over
 * W's bulk (its density is smooth in W; outside mean +- 14 it is below 1e-40).
 */
export function nctCdf(t: number, df: number, nc: number): number {
  const lo = Math.max(0, Math.sqrt(df) - 14), hi = Math.sqrt(df) + 14;
  const steps = 4000, h = (hi - lo) / steps;
  const logNorm = (df / 2 - 1) * Math.LN2 + gammaln(df / 2);
  const f = (w: number) => {
    if (w <= 0) return 0; // df >= 1 here: the chi density vanishes at 0 (or is 1/sqrt(pi/2) * 0 for df = 1)
    const density = Math.exp((df - 1) * Math.log(w) - w * w / 2 - logNorm);
    return density * normalCdf(t * w / Math.sqrt(df) - nc, 0, 1);
  };
  let sum = f(lo) + f(hi);
  for (let i = 1; i < steps; i++) sum += (i % 2 ? 4 : 2) * f(lo + i * h);
  return Math.min(1, Math.max(0, sum * h / 3));
}

/**
 * Power of the two-sided two-sample t-test with `n` runs per group (equal variances, df = 2n - 2) to detect a
 * true difference `delta` when the common standard deviation is `std`, at level `alpha`.
 */
export function tTestPower(n: number, delta: number, std: number, alpha = 0.05): number {
  const df = 2 * n - 2;
  const nc = Math.abs(delta) / (std * Math.sqrt(2 / n));
  const crit = tQuantile(1 - alpha / 2, df);
  return 1 - nctCdf(crit, df, nc) + nctCdf(-crit, df, nc);
}

/**
 * The fewest runs per group (>= 2) for which that test reaches `power` (Infinity when delta is 0 or the std
 * is not finite; capped at `max`, returning Infinity past it).
 */
export function runsForPower(
  delta: number,
  std: number,
  { power = 0.8, alpha = 0.05, max = 1_000_000 } = {},
): number {
  if (!(Math.abs(delta) > 0) || !(std > 0) || !Number.isFinite(delta) || !Number.isFinite(std)) {
    return delta !== 0 && std === 0 ? 2 : Infinity;
  }
  const enough = (n: number) => tTestPower(n, delta, std, alpha) >= power;
  let hi = 2;
  while (!enough(hi)) {
    if (hi >= max) return Infinity;
    hi = Math.min(max, hi * 2);
  }
  let lo = Math.max(2, hi / 2); // power grows with n: bisect between lo (maybe not enough) and hi (enough)
  if (enough(lo)) return lo;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (enough(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** How runsForPower's figure is computed, for tables and reports. */
export const POWER_NOTE =
  "runs per configuration for 80% power at alpha 0.05 (two-sided two-sample t-test, " +
  "common std = the pooled observed std, exact noncentral t)";
