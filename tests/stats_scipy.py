# The expected figures of tests/stats_test.ts, from SciPy (Debian bookworm's python3-scipy 1.10.1):
#   /usr/bin/python3 tests/stats_scipy.py
# The test holds them as fixed numbers; it does not need SciPy.
import warnings

import numpy as np
from scipy import stats

warnings.simplefilter("ignore")  # boost's nct reports "invalid value" internally on some tails; values are fine

a = [0.9401, 0.9395, 0.9410, 0.9388, 0.9402]
b = [0.9380, 0.9391, 0.9375, 0.9386, 0.9379, 0.9390]
for x in (a, b):
    m = np.mean(x)
    s = np.std(x, ddof=1)
    n = len(x)
    print("describe", n, repr(m), repr(s), stats.t.interval(0.95, n - 1, loc=m, scale=s / np.sqrt(n)))
r = stats.ttest_ind(a, b, equal_var=False)
print("welch t p", repr(r.statistic), repr(r.pvalue))
va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
d = np.mean(a) - np.mean(b)
se = np.sqrt(va + vb)
print("welch df ci", repr(df), d - stats.t.ppf(0.975, df) * se, d + stats.t.ppf(0.975, df) * se)
for t, df, nc in [(2.3, 10, 1.5), (-1.96, 4, 0.7), (2.0484, 28, 2.9), (1.9600, 3998, 5.0)]:
    print("nct cdf", t, df, nc, repr(stats.nct.cdf(t, df, nc)))


def power(n, delta, sd, alpha=0.05):
    df = 2 * n - 2
    nc = abs(delta) / (sd * np.sqrt(2 / n))
    c = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(c, df, nc) + stats.nct.cdf(-c, df, nc)


def runs(delta, sd):
    n = 2
    while power(n, delta, sd) < 0.8:
        n += 1
    return n


for n, delta, sd in [(3, 1.0, 0.5), (10, 1.0, 1.0), (25, 0.0005, 0.0014)]:
    print("power", n, delta, sd, repr(power(n, delta, sd)))
for delta, sd in [(1.0, 1.0), (0.5, 1.0), (0.0005, 0.0014), (0.001, 0.0014), (0.0002, 0.0014)]:
    n = runs(delta, sd)
    print("runs", delta, sd, n, "power at n-1, n:", power(n - 1, delta, sd), power(n, delta, sd))
for p, df in [(0.975, 4), (0.975, 7.37), (0.995, 2)]:
    print("tq", p, df, repr(stats.t.ppf(p, df)))
print("tcdf", repr(stats.t.cdf(-7.5, 3.2)), repr(stats.t.cdf(2.1, 4.3)))
