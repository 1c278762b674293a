"""Where the time of RandomInterceptRegressor.fit goes, stage by stage.

    python benchmarks/profile_fit.py                      # n = 1e6, p = 10, G = 1e4
    python benchmarks/profile_fit.py --n 1e7 --groups 1e5 --reps 3
    python benchmarks/profile_fit.py --groups 5e5 --reps 1 --sorted   # rows sorted by group

Wraps the functions that fit calls (validation, group coding, the one pass that builds
the sufficient statistics, EM, the input checks, the residual quantiles for the summary)
with timers, fits a few times, and prints the median time of each stage next to the
whole fit and to LinearRegression().fit on the same data.  Stages that a version of
skhlm does not have are left out; "other" is what no wrapped stage accounts for.
"""

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from run_benchmark import make_data  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import skhlm  # noqa: E402
from skhlm import _base, _intercept  # noqa: E402
from skhlm.data.accumulator import StatsAccumulator  # noqa: E402
from skhlm.engine import em  # noqa: E402

# (label, namespace, attribute): what to time, where fit looks it up.
STAGES = [
    ("input checks (_checks.*)", "_checks", ["numeric_columns", "finite_response", "finite"]),
    ("validate_data", _intercept, ["validate_data"]),
    ("encode_groups (codes by size)", _intercept, ["encode_groups"]),
    ("StatsAccumulator.add (the one pass)", StatsAccumulator, ["add"]),
    ("StatsAccumulator.finalize (size classes)", StatsAccumulator, ["finalize"]),
    ("identifiability checks", "_checks", ["identifiable", "redundant_columns", "group_count"]),
    ("EM (engine.em.fit)", em, ["fit"]),
    ("_publish (BLUPs, attributes)", _base.GroupedRegressorMixin, ["_publish"]),
    ("residual quantiles (summary)", _intercept, ["scaled_residual_quantiles"]),
]


def instrument(timings):
    """Wrap every stage function that exists with a timer adding to ``timings``."""
    for label, namespace, names in STAGES:
        if isinstance(namespace, str):
            namespace = getattr(_intercept, namespace, None)
            if namespace is None:
                continue
        for name in names:
            original = getattr(namespace, name, None)
            if original is None or getattr(original, "_timed", False):
                continue

            def timed(*args, __original=original, __label=label, **kwargs):
                start = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    timings[__label] += time.perf_counter() - start

            timed = functools.wraps(original)(timed)
            timed._timed = True
            setattr(namespace, name, timed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--p", type=int, default=10)
    parser.add_argument("--groups", type=float, default=1e4)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sorted", action="store_true", help="rows sorted by group (as in most files)")
    args = parser.parse_args(argv)
    n, groups = int(args.n), int(args.groups)
    X, y, g = make_data(n, args.p, groups)
    if args.sorted:
        order = np.argsort(g, kind="stable")
        X, y, g = np.ascontiguousarray(X[order]), y[order], g[order]
    print(f"n={n:,} p={args.p} groups={groups:,}; skhlm {skhlm.__version__} from {Path(skhlm.__file__).parent}")

    timings = defaultdict(float)
    instrument(timings)
    model = skhlm.RandomInterceptRegressor()
    model.fit(*make_data(2000, args.p, 50)[:2], groups=make_data(2000, args.p, 50)[2])  # warm-up
    per_stage = defaultdict(list)
    total, linreg = [], []
    for _ in range(args.reps):
        timings.clear()
        start = time.perf_counter()
        model.fit(X, y, groups=g)
        total.append(time.perf_counter() - start)
        for label, _, _ in STAGES:
            per_stage[label].append(timings.get(label, 0.0))
        start = time.perf_counter()
        LinearRegression().fit(X, y)
        linreg.append(time.perf_counter() - start)

    fit_time = statistics.median(total)
    print(f"\n{'stage':40s} {'median ms':>10s} {'share':>7s}")
    accounted = 0.0
    for label, _, _ in STAGES:
        t = statistics.median(per_stage[label])
        if t == 0.0:
            continue
        accounted += t
        print(f"{label:40s} {t * 1e3:10.1f} {t / fit_time:7.1%}")
    print(f"{'other':40s} {(fit_time - accounted) * 1e3:10.1f} {(fit_time - accounted) / fit_time:7.1%}")
    print(f"{'RandomInterceptRegressor().fit':40s} {fit_time * 1e3:10.1f}  (n_iter_={model.n_iter_})")
    lr = statistics.median(linreg)
    print(f"{'LinearRegression().fit':40s} {lr * 1e3:10.1f}  (skhlm / OLS = {fit_time / lr:.2f})")


if __name__ == "__main__":
    main()
