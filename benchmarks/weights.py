"""Precision weights: what ``sample_weight`` costs over the unweighted fit.

    python benchmarks/weights.py                 # n = 1e6, about two minutes here
    python benchmarks/weights.py --n 1e5 --reps 7

Data: n rows, p = 10 features, groups drawn uniformly (their sizes vary), a random
intercept (s2u = 1) and, for LinearMixedRegressor, a random slope on x0; weights
uniform on (0.5, 2).  For each number of groups, the weighted and the unweighted fit of
each estimator and LinearRegression with and without the same weights (one pass over
the data, the floor) are timed interleaved: repetition r runs every fit once, in a
rotated order, before r + 1 starts; times are medians.  Weighted fits take the groups
one by one (their sizes, the sums of the weights, rarely tie), unweighted ones sum over
groups of the same size; the pass over the rows is weighted in both estimators.
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from skhlm import LinearMixedRegressor, RandomInterceptRegressor  # noqa: E402


def make_data(n, n_groups, p=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    g = rng.integers(0, n_groups, n)
    w = rng.uniform(0.5, 2.0, n)
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.5]
    y = 1.0 + X @ np.linspace(1, -1, p) + b[g, 0] + b[g, 1] * X[:, 0]
    y += rng.normal(size=n) / np.sqrt(w)
    return X, y, g, w


def fits(X, y, g, w):
    def ri(weights):
        return lambda: RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=weights)

    def slopes(weights):
        return lambda: LinearMixedRegressor(random_slopes=[0]).fit(X, y, groups=g, sample_weight=weights)

    def linreg(weights):
        return lambda: LinearRegression().fit(X, y, sample_weight=weights)

    return {
        "RandomInterceptRegressor": ri(None),
        "RandomInterceptRegressor, weighted": ri(w),
        "LinearMixedRegressor (x0 | g)": slopes(None),
        "LinearMixedRegressor (x0 | g), weighted": slopes(w),
        "LinearRegression": linreg(None),
        "LinearRegression, weighted": linreg(w),
    }


def run(n, n_groups, reps):
    X, y, g, w = make_data(n, n_groups)
    todo = fits(X, y, g, w)
    names = list(todo)
    times = {name: [] for name in names}
    for name in names:  # warm-up
        todo[name]()
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            todo[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--groups", type=float, nargs="+", default=[1e3, 1e4, 1e5])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    n = int(args.n)
    warnings.simplefilter("ignore")
    print(f"n = {n:.0e}, p = 10, medians of {args.reps} interleaved runs\n")
    print("| groups | fit | unweighted s | weighted s | weighted / unweighted | weighted / weighted LinearRegression |")
    print("|---|---|---|---|---|---|")
    for n_groups in args.groups:
        t = run(n, int(n_groups), args.reps)
        lr = t["LinearRegression, weighted"]
        for base in ["RandomInterceptRegressor", "LinearMixedRegressor (x0 | g)", "LinearRegression"]:
            plain, weighted = t[base], t[f"{base}, weighted"]
            print(
                f"| {int(n_groups):.0e} | {base} | {plain:.3f} | {weighted:.3f} | "
                f"{weighted / plain:.2f}x | {weighted / lr:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
