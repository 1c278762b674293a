"""Random slopes, lme4's (1 + x | g): LinearMixedRegressor against LinearRegression
(one pass over the data, the floor), lme4 (when R is installed) and statsmodels'
MixedLM, on the same data, with the estimates side by side.

    python benchmarks/slopes.py            # ~5 min here (lme4 and statsmodels dominate)
    python benchmarks/slopes.py --sizes 1e5
    python benchmarks/slopes.py --sizes --big   # skhlm alone: n = 1e7, 1e6 groups, q = 3

Data: y = X beta + b0_g + b1_g x0 + e, p = 10 features, one random slope (x0), the
groups' effects correlated (Sigma = [[1, .3], [.3, .5]]), s2e = 1; n = 1e5 rows in
1e3 groups and 1e6 in 1e4.  Also lme4's sleepstudy (180 rows).  skhlm and
LinearRegression are timed interleaved (median of ``--reps``); lme4 (default
settings, REML) and statsmodels (REML, its default optimizers) once each, in child
processes, after a warm-up on small data.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from skhlm import LinearMixedRegressor  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mixed_effects import markdown  # noqa: E402

SIGMA = np.array([[1.0, 0.3], [0.3, 0.5]])


def make_data(n, n_groups, p=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    g = rng.integers(0, n_groups, n).astype(np.int32)
    b = rng.multivariate_normal([0, 0], SIGMA, size=n_groups)
    y = 1.0 + X @ np.linspace(1, -1, p) + b[g, 0] + b[g, 1] * X[:, 0] + rng.normal(size=n)
    return X, y, g


def timed(fit):
    start = time.perf_counter()
    out = fit()
    return time.perf_counter() - start, out


def lme4(X, y, g, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        X.astype(np.float64).tofile(Path(tmp) / "X.bin")
        y.astype(np.float64).tofile(Path(tmp) / "y.bin")
        (g + 1).astype(np.int32).tofile(Path(tmp) / "g.bin")
        (Path(tmp) / "dims.txt").write_text(f"{X.shape[0]} {X.shape[1]}\n")
        try:
            out = subprocess.run(["Rscript", str(HERE / "lme4_slopes_fit.R"), tmp], capture_output=True,
                                 text=True, timeout=timeout, check=True)
        except (OSError, subprocess.SubprocessError) as error:
            return {"error": type(error).__name__}
        return json.loads(out.stdout.strip().splitlines()[-1])


STATSMODELS = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
import statsmodels.formula.api as smf
d = pd.read_pickle(sys.argv[1])
terms = " + ".join(c for c in d.columns if c.startswith("x"))
warnings.simplefilter("ignore")
smf.mixedlm("y ~ x0", d.iloc[:2000], groups=d["g"].iloc[:2000], re_formula="~x0").fit()
start = time.perf_counter()
r = smf.mixedlm("y ~ " + terms, d, groups=d["g"], re_formula="~x0").fit()
seconds = time.perf_counter() - start
cov = np.asarray(r.cov_re)
print(json.dumps({"seconds": seconds, "sigma": cov.tolist(), "s2e": float(r.scale),
                  "coef_x0": float(r.fe_params["x0"]), "logLik": float(r.llf), "converged": bool(r.converged)}))
"""


def statsmodels(X, y, g, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.DataFrame(X, columns=[f"x{k}" for k in range(X.shape[1])]).assign(y=y, g=g)
        frame.to_pickle(Path(tmp) / "d.pkl")
        try:
            out = subprocess.run([sys.executable, "-c", STATSMODELS, str(Path(tmp) / "d.pkl")],
                                 capture_output=True, text=True, timeout=timeout, check=True)
        except (OSError, subprocess.SubprocessError) as error:
            return {"error": type(error).__name__}
        return json.loads(out.stdout.strip().splitlines()[-1])


def run(n, n_groups, reps, timeout):
    X, y, g = make_data(n, n_groups)
    LinearMixedRegressor(random_slopes=[0]).fit(X[:2000], y[:2000], groups=g[:2000])  # warm-up
    lr_times, sk_times = [], []
    for _ in range(reps):
        lr_times.append(timed(lambda: LinearRegression().fit(X, y))[0])
        seconds, model = timed(lambda: LinearMixedRegressor(random_slopes=[0]).fit(X, y, groups=g))
        sk_times.append(seconds)
    lr, sk = float(np.median(lr_times)), float(np.median(sk_times))
    rows = [
        {"system": "LinearRegression", "seconds": lr},
        {"system": "skhlm LinearMixedRegressor", "seconds": sk,
         "sigma": model.variance_components_["group"].round(4).tolist(),
         "s2e": round(model.variance_components_["residual"], 4), "coef_x0": round(float(model.coef_[0]), 5),
         "logLik": round(model.log_likelihood_, 3)},
    ]
    for name, peer in (("lme4 (1 + x0 | g)", lme4), ("statsmodels MixedLM", statsmodels)):
        out = peer(X, y, g, timeout)
        if "error" in out:
            rows.append({"system": name, "note": out["error"]})
        else:
            out["sigma"] = np.round(out["sigma"], 4).tolist()
            rows.append({"system": name, **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}})
        print(f"  n={n:g}: {name} done", flush=True)
    for row in rows:
        if "sigma" in row:
            row["sigma"] = str(np.round(row["sigma"], 4).tolist())
    table = pd.DataFrame(rows)
    table["/ LinearRegression"] = table["seconds"] / lr
    table["/ skhlm"] = table["seconds"] / sk
    return table


def peak_beyond_input(fit):
    """Run ``fit()``; return its time and the peak resident memory it added (Linux:
    the peak is reset after the data are in memory), in MB."""
    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    seconds, out = timed(fit)
    return seconds, status("VmHWM") - base, out


def big(n=10_000_000, n_groups=1_000_000, p=10):
    """n = 1e7 rows, 1e6 groups, two random slopes (q = 3): skhlm's time and memory."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, p))
    g = rng.integers(0, n_groups, n).astype(np.int32)
    S = np.array([[1.0, 0.3, 0.1], [0.3, 0.5, 0.0], [0.1, 0.0, 0.3]])
    b = rng.multivariate_normal(np.zeros(3), S, size=n_groups)
    y = X @ np.linspace(1, -1, p) + b[g, 0] + b[g, 1] * X[:, 0] + b[g, 2] * X[:, 1] + rng.normal(size=n)
    seconds, memory, model = peak_beyond_input(lambda: LinearMixedRegressor(random_slopes=[0, 1]).fit(X, y, groups=g))
    print(f"\n### n = {n}, p = {p}, {n_groups} groups, q = 3 (two random slopes)\n"
          f"skhlm: {seconds:.1f} s, peak memory beyond the input {memory:.0f} MB (X is {X.nbytes / 2**20:.0f} MB); "
          f"Sigma {np.round(model.variance_components_['group'], 3).tolist()} (truth {S.tolist()})")


def sleepstudy(reps):
    d = pd.read_csv(HERE.parent / "tests" / "data" / "slopes" / "sleepstudy.csv")
    X, y, g = d[["Days"]].to_numpy(), d["y"].to_numpy(), d["g"].to_numpy()
    model = LinearMixedRegressor(random_slopes=[0])
    model.fit(X, y, groups=g)
    times = [timed(lambda: model.fit(X, y, groups=g))[0] for _ in range(reps)]
    lr = [timed(lambda: LinearRegression().fit(X, y))[0] for _ in range(reps)]
    return float(np.median(times)), float(np.median(lr)), model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--big", action="store_true", help="also n = 1e7, 1e6 groups, q = 3 (skhlm alone)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    seconds, lr, model = sleepstudy(101)
    print(f"### sleepstudy (180 rows, 18 subjects): skhlm {1000 * seconds:.1f} ms "
          f"({seconds / lr:.1f}x LinearRegression's {1000 * lr:.2f} ms); logLik {model.log_likelihood_:.4f}")
    for n in args.sizes:
        table = run(int(n), int(n) // 100, args.reps, args.timeout)
        print(f"\n### n = {int(n)}, p = 10, {int(n) // 100} groups, one random slope")
        print(markdown(table))
    if args.big:
        big()


if __name__ == "__main__":
    main()
