"""Print skhlm's worst disagreement with lme4 on every random-slopes reference fit,
with skhlm's iterations and time beside lme4's.

Run from the repository root:  python tests/data/slopes/report_slopes_agreement.py
Columns: fixed effects |diff| / SE; variances, relative; correlations, absolute;
logLik(skhlm) - logLik(lme4); BLUPs |diff| / conditional SD; SEs, relative;
Satterthwaite df, relative; profile-interval bounds, relative (where lme4 profiled);
skhlm's iterations (EM cycles + quasi-Newton steps), its fit time (median of 5, ms)
and lme4's (lmer with tight tolerances, as fit_slopes.R timed it, ms).  Singular fits
compare the logLik only; the badly scaled data compare with lme4 on rescaled
columns (tests/test_slopes.py says why).
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).parents[2]))
from test_slopes import KEYS, REFERENCE, correlation, fit_case, read  # noqa: E402


def worst(a, b, relative):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = np.abs(a - b)
    return float(np.max(diff / np.abs(b) if relative else diff)) if a.size else np.nan


def row(key):
    model, ref = fit_case(key)
    times = []
    X, y, groups = model._report_data
    for _ in range(5):
        start = time.perf_counter()
        clone(model).fit(X, y, groups=groups)
        times.append(time.perf_counter() - start)
    ref = dict(ref)
    rescaled = "rescaled" in ref
    if rescaled:  # lme4 on the raw columns stops short (and calls that singular)
        best = dict(ref["rescaled"])
        if key.endswith("reml"):
            d = read("scaled")
            best["logLik"] -= np.log(d["x1"].std(ddof=1) * d["x2"].std(ddof=1))
        ref.update(best, isSingular=model.singular_)
        ref.pop("satterthwaite", None)  # the raw fit's: not of this optimum
    out = {"fit": key, "dlogLik": model.log_likelihood_ - ref["logLik"], "iter": model.n_iter_}
    if not ref["isSingular"] and "ranef" in ref:
        beta = np.concatenate([[model.intercept_], model.coef_]) if model.fit_intercept else model.coef_
        fit = model._result
        se = np.sqrt(np.diag(fit.units.coef_covariance_to_user(fit.result.coef_cov)))
        ref_se = np.asarray(ref["satterthwaite"]["std_error"]) if "satterthwaite" in ref else se
        sigma, ref_sigma = model.variance_components_["group"], np.asarray(ref["sigma"])
        cond_sd = np.sqrt(np.diagonal(np.asarray(ref["condVar"]), axis1=1, axis2=2))
        upper = np.triu_indices(sigma.shape[0], 1)
        out.update({
            "beta/SE": float(np.max(np.abs(beta - np.asarray(ref["fixef"])) / ref_se)),
            "var rel": worst(np.append(np.diag(sigma), model.variance_components_["residual"]),
                             np.append(np.diag(ref_sigma), ref["s2e"]), True),
            "corr abs": worst(correlation(sigma)[upper], correlation(ref_sigma)[upper], False),
            "BLUP/condSD": float(np.max(np.abs(model.random_effects_ - np.asarray(ref["ranef"])) / cond_sd)),
            "SE rel": worst(se, ref_se, True) if "satterthwaite" in ref else np.nan,
        })
        if "satterthwaite" in ref:
            summary = model.summary()
            out["df rel"] = worst(summary.fixed_effects["df"], ref["satterthwaite"]["df"], True)
            profile = ref.get("confint_profile")
            if profile:
                ci = summary.confint
                ours = np.concatenate([ci.loc[name].to_numpy() for name in ci.index])
                theirs = np.concatenate([profile[name] for name in ci.index])
                finite = (theirs != 0) & (np.abs(theirs) != 1)
                out["profile rel"] = worst(ours[finite], theirs[finite], True)
    out["skhlm ms"] = 1e3 * float(np.median(times))
    out["lme4 ms"] = 1e3 * REFERENCE["fits"][key]["seconds"]
    return out


def main():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = pd.DataFrame([row(key) for key in KEYS]).set_index("fit")
    with pd.option_context("display.width", 250, "display.float_format", "{:.1e}".format):
        print(table.to_string())


if __name__ == "__main__":
    main()
