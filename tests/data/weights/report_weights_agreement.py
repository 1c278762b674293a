"""Print skhlm's worst disagreement with lme4 on every weighted reference fit.

Run from the repository root:  python tests/data/weights/report_weights_agreement.py
Columns: logLik(skhlm) - logLik(lme4); fixed effects |diff| / SE; variances (s2e and
the diagonal of Sigma), relative; BLUPs |diff| / conditional SD; SEs, relative;
Satterthwaite df, relative.  lme4's zero-weight fits are left out: lme4 keeps the
zero-weight rows (logLik -Inf), skhlm drops them (tests/test_weights.py).
"""

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2]))
from test_weights import FITS, fitted  # noqa: E402

AGREEING = sorted(k for k in FITS if not k.startswith("zero_weight/"))


def main():
    warnings.simplefilter("ignore")
    print("| fit | dlogLik | beta/SE | var rel | BLUP/condSD | SE rel | df rel |")
    print("|---|---|---|---|---|---|---|")
    for key in AGREEING:
        model, ref = fitted(key), FITS[key]
        beta = np.r_[model.intercept_, model.coef_]
        se = np.asarray(ref["satterthwaite"]["std_error"])
        table = model.summary().fixed_effects
        ours = np.r_[np.diag(np.atleast_2d(model.variance_components_["group"])), model.variance_components_["residual"]]
        theirs = np.r_[np.diag(np.asarray(ref["sigma"])), ref["s2e"]]
        n = len(ref["levels"])
        effects = np.asarray(model.random_effects_).reshape(n, -1)
        cond_sd = np.sqrt(np.diagonal(np.asarray(ref["condVar"]).reshape(n, effects.shape[1], -1), axis1=1, axis2=2))
        cells = [
            model.log_likelihood_ - ref["logLik"],
            np.max(np.abs(beta - ref["fixef"]) / se),
            np.max(np.abs(ours / theirs - 1)),
            np.max(np.abs(effects - np.asarray(ref["ranef"]).reshape(effects.shape)) / cond_sd),
            np.max(np.abs(table["std_error"].to_numpy() / se - 1)),
            np.max(np.abs(table["df"].to_numpy() / np.asarray(ref["satterthwaite"]["df"]) - 1)),
        ]
        print(f"| {key} | " + " | ".join(f"{c:.1e}" for c in cells) + " |")


if __name__ == "__main__":
    main()
