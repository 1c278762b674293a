"""The systems the benchmark times, each fitted in a child process of its own.

Usage (run_benchmark.py does this; by hand only to debug one fit):

    python benchmarks/peers.py SYSTEM DATA_DIR

prints one JSON line: the fit time, the peak memory and the estimates.  SYSTEM is one of
``skhlm``, ``linreg``, ``statsmodels``, ``merf``.  DATA_DIR holds X.npy, y.npy and g.npy
(see run_benchmark.py); lme4 is fitted by lme4_fit.R instead.

Time: the fit call alone (``time.perf_counter``), after a warm-up fit on tiny data in the
same process, so imports and lazy initialisation are not timed.  Memory: the peak
resident set size of the process during the fit minus its resident set size just before
(Linux: the peak, VmHWM, is reset through /proc/self/clear_refs after the data are
loaded; elsewhere ``ru_maxrss`` is used and small fits may read 0).  That is what the
fit needed beyond its input as the operating system saw it, numpy, BLAS and pandas
allocations included (tracemalloc would miss some of them).
"""

import json
import logging
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# MERF's EM runs a fixed number of iterations (its default; it has no convergence test).
MERF_ITERATIONS = 20


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError(field)


def reset_peak_rss():
    """Reset the peak RSS to the current RSS; return (current RSS MB, whether reset)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmRSS"), True
    except OSError:
        return peak_rss_mb(), False


def peak_rss_mb():
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def fit_skhlm(X, y, g):
    from skhlm import RandomInterceptRegressor

    model = RandomInterceptRegressor(method="reml").fit(X, y, groups=g)
    return lambda: {
        "intercept": model.intercept_,
        "coef": model.coef_.tolist(),
        "s2u": model.variance_components_["group"],
        "s2e": model.variance_components_["residual"],
        "loglik": model.log_likelihood_,
        "n_iter": model.n_iter_,
        "converged": bool(model.converged_),
    }


def fit_linreg(X, y, g):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(X, y)
    return lambda: {"intercept": float(model.intercept_), "coef": model.coef_.tolist()}


def fit_statsmodels(X, y, g):
    import statsmodels.api as sm

    result = sm.MixedLM(y, sm.add_constant(X, prepend=True), groups=g).fit(reml=True)
    return lambda: {
        "intercept": float(result.fe_params[0]),
        "coef": np.asarray(result.fe_params[1:]).tolist(),
        "s2u": float(np.asarray(result.cov_re)[0, 0]),
        "s2e": float(result.scale),
        "loglik": float(result.llf),
        "converged": bool(result.converged),
    }


def fit_merf(X, y, g):
    import pandas as pd
    from merf import MERF
    from sklearn.linear_model import LinearRegression

    logging.getLogger("merf").setLevel(logging.WARNING)
    model = MERF(fixed_effects_model=LinearRegression(), max_iterations=MERF_ITERATIONS)
    model.fit(X, np.ones((X.shape[0], 1)), pd.Series(g), y)
    fe = model.trained_fe_model
    return lambda: {
        "intercept": float(fe.intercept_),
        "coef": fe.coef_.tolist(),
        "s2u": float(np.asarray(model.D_hat_history[-1])[0, 0]),
        "s2e": float(model.sigma2_hat_history[-1]),
        "n_iter": MERF_ITERATIONS,
    }


FITS = {
    "skhlm": fit_skhlm,
    "linreg": fit_linreg,
    "statsmodels": fit_statsmodels,
    "merf": fit_merf,
}


def version(system):
    """The version of the package that was imported (not of one installed elsewhere)."""
    name = {"skhlm": "skhlm", "linreg": "sklearn", "statsmodels": "statsmodels", "merf": "merf"}[system]
    module = sys.modules.get(name) or __import__(name)
    found = getattr(module, "__version__", None)
    if found is None:
        import importlib.metadata as md

        found = md.version(name)
    return f"{'scikit-learn' if name == 'sklearn' else name} {found}"


def warm_up(fit):
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    X = rng.normal(size=(200, 2))
    y = X @ [1.0, -1.0] + rng.normal(size=20)[g] + rng.normal(size=200)
    fit(X, y, g)()


def main(system, data_dir):
    fit = FITS[system]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warm_up(fit)
        data_dir = Path(data_dir)
        X = np.load(data_dir / "X.npy")
        y = np.load(data_dir / "y.npy")
        g = np.load(data_dir / "g.npy")
        rss_loaded, reset = reset_peak_rss()
        caught.clear()
        start = time.perf_counter()
        estimates = fit(X, y, g)
        elapsed = time.perf_counter() - start
        rss_peak = peak_rss_mb()
        record = estimates()
    record.update(
        time=elapsed,
        rss_loaded_mb=rss_loaded,
        rss_peak_mb=rss_peak,
        memory_method="VmHWM reset before the fit" if reset else "ru_maxrss",
        version=version(system),
        messages=sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught}),
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
