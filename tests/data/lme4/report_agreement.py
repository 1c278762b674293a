"""Print skhlm's worst disagreement with lme4 on every reference fit.

Run from the repository root:  python tests/data/lme4/report_agreement.py
Columns: fixed effects |diff| / SE, variance components relative error (against lme4
with tight tolerances, and with its default ones), logLik(skhlm) - logLik(lme4),
BLUPs |diff| / conditional SD, and EM iterations.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parents[2]))
from lme4_reference import design, fit_keys  # noqa: E402

from skhlm import RandomInterceptRegressor  # noqa: E402


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def main():
    rows = []
    for key in fit_keys():
        X, y, groups, ref = design(key)
        m = RandomInterceptRegressor(method=key.split("/")[-1]).fit(X, y, groups=groups)
        beta = np.concatenate([[m.intercept_], m.coef_])
        se = np.sqrt(np.diag(ref["vcov"]))
        vc = m.variance_components_
        default = ref["default"]
        cond_sd = np.sqrt(ref["condVar"])
        blup = np.abs(m.random_effects_ - ref["ranef"])
        rows.append(
            {
                "fit": key,
                "beta/SE": np.max(np.abs(beta - list(ref["fixef"].values())) / se),
                "VC rel": max(rel(vc["group"], ref["s2u"]), rel(vc["residual"], ref["s2e"])),
                "VC rel (lme4 default)": max(
                    rel(vc["group"], default["s2u"]), rel(vc["residual"], default["s2e"])
                ),
                "dlogLik": m.log_likelihood_ - ref["logLik"],
                "dlogLik (default)": m.log_likelihood_ - default["logLik"],
                "BLUP/condSD": np.max(np.where(cond_sd > 0, blup / np.where(cond_sd > 0, cond_sd, 1), blup)),
                "EM iter": m.n_iter_,
            }
        )
    table = pd.DataFrame(rows).set_index("fit")
    with pd.option_context("display.width", 200, "display.float_format", "{:.1e}".format):
        print(table.to_string())


if __name__ == "__main__":
    main()
