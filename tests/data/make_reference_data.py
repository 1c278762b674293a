"""Build the synthetic data sets that lme4 is run on (tests/data/lme4/*.csv).

Run from the repository root:

    python tests/data/make_reference_data.py
    Rscript tests/data/lme4/fit_lme4.R        # needs R with lme4, lmerTest, jsonlite

Every data set has a response ``y``, a group label ``g`` (strings "g0001", ... so that
R and Python sort them alike) and predictors.  ``MODELS`` lists the formulas fitted to
each; the R script reads it from models.csv.  The CSVs are rounded to 10 significant
digits: the rounded values *are* the data, for both R and Python.
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "lme4"

# (data set, model name, fixed-effect terms after "y ~ "); every model adds (1 | g).
MODELS = [
    ("balanced", "full", "x1 + x2"),
    ("unbalanced", "full", "x1 + x2 + z1"),
    ("intercept_only", "null", "1"),
    ("icc_half", "full", "x1"),
    ("boundary", "full", "x1"),
    ("many_small", "full", "x1 + z1"),
    ("offset_scale", "full", "x1 + x2"),
    ("near_boundary", "full", "x1"),
    ("pisa", "rim0", "1"),
    ("pisa", "rim1", "desk + escs"),
    ("pisa", "rim2", "desk + escs + stratio"),
]


def _frame(sizes, rng, s2u, s2e, fixed):
    """Rows grouped by ``sizes``; ``fixed(codes, rng)`` returns (predictors, x'beta)."""
    n_groups = len(sizes)
    codes = np.repeat(np.arange(n_groups), sizes)
    predictors, mean = fixed(codes, rng)
    u = rng.normal(scale=np.sqrt(s2u), size=n_groups)
    y = mean + u[codes] + rng.normal(scale=np.sqrt(s2e), size=codes.size)
    frame = pd.DataFrame({"y": y, "g": [f"g{c + 1:04d}" for c in codes], **predictors})
    return frame


def balanced():
    rng = np.random.default_rng(101)

    def fixed(codes, rng):
        x1, x2 = rng.normal(size=(2, codes.size))
        return {"x1": x1, "x2": x2}, 10.0 + 2.0 * x1 - 1.0 * x2

    return _frame(np.full(30, 20), rng, s2u=3.0, s2e=7.0, fixed=fixed)


def unbalanced():
    rng = np.random.default_rng(102)
    sizes = rng.integers(2, 51, size=60)

    def fixed(codes, rng):
        g = codes.max() + 1
        x1 = 0.6 * rng.normal(size=g)[codes] + 0.8 * rng.normal(size=codes.size)
        x2 = rng.normal(size=codes.size)
        z1 = rng.normal(loc=5.0, scale=2.0, size=g)[codes]
        return {"x1": x1, "x2": x2, "z1": z1}, 1.0 + 0.5 * x1 + 1.5 * x2 - 0.3 * z1

    return _frame(sizes, rng, s2u=0.8, s2e=2.0, fixed=fixed)


def intercept_only():
    rng = np.random.default_rng(103)
    sizes = rng.integers(3, 31, size=40)
    return _frame(sizes, rng, s2u=25.0, s2e=100.0, fixed=lambda c, r: ({}, 50.0))


def icc_half():
    rng = np.random.default_rng(104)
    sizes = rng.integers(10, 41, size=25)

    def fixed(codes, rng):
        x1 = rng.normal(size=codes.size)
        return {"x1": x1}, -3.0 + 1.0 * x1

    return _frame(sizes, rng, s2u=4.0, s2e=4.0, fixed=fixed)


def boundary():
    """s2u = 0 and the group means of the noise shrunk, so both REML and ML put the
    optimum on the boundary (as lme4's Dyestuff2)."""
    rng = np.random.default_rng(105)
    sizes = np.full(30, 6)
    codes = np.repeat(np.arange(30), sizes)
    x1 = rng.normal(size=codes.size)
    e = rng.normal(size=codes.size)
    means = np.bincount(codes, weights=e) / sizes
    e = e - 0.5 * means[codes]
    y = 2.0 + 0.7 * x1 + e
    return pd.DataFrame({"y": y, "g": [f"g{c + 1:04d}" for c in codes], "x1": x1})


def many_small():
    rng = np.random.default_rng(106)
    sizes = rng.integers(1, 4, size=3000)

    def fixed(codes, rng):
        g = codes.max() + 1
        x1 = rng.normal(size=codes.size)
        z1 = rng.normal(size=g)[codes]
        return {"x1": x1, "z1": z1}, 0.5 + 1.0 * x1 + 0.5 * z1

    return _frame(sizes, rng, s2u=1.0, s2e=1.0, fixed=fixed)


def offset_scale():
    """A large offset in y and x1, and predictors on very different scales."""
    rng = np.random.default_rng(107)
    sizes = rng.integers(5, 26, size=40)

    def fixed(codes, rng):
        x1 = 1000.0 + rng.normal(size=codes.size)
        x2 = 1000.0 * rng.normal(size=codes.size)
        return {"x1": x1, "x2": x2}, 1e5 + 2.0 * (x1 - 1000.0) + 0.003 * x2

    return _frame(sizes, rng, s2u=2.0, s2e=1.0, fixed=fixed)


def near_boundary():
    """A small but interior s2u, where plain EM is slow."""
    rng = np.random.default_rng(108)
    sizes = np.full(80, 5)

    def fixed(codes, rng):
        x1 = rng.normal(size=codes.size)
        return {"x1": x1}, 1.0 + 0.5 * x1

    return _frame(sizes, rng, s2u=0.08, s2e=1.0, fixed=fixed)


def pisa():
    from skhlm.datasets import make_pisa_like

    frame = make_pisa_like(random_state=2018)
    return frame.rename(columns={"math": "y", "school": "g"})[
        ["y", "g", "desk", "escs", "stratio"]
    ]


def main():
    OUT.mkdir(exist_ok=True)
    builders = {
        "balanced": balanced,
        "unbalanced": unbalanced,
        "intercept_only": intercept_only,
        "icc_half": icc_half,
        "boundary": boundary,
        "many_small": many_small,
        "offset_scale": offset_scale,
        "near_boundary": near_boundary,
        "pisa": pisa,
    }
    for name, build in builders.items():
        build().to_csv(OUT / f"{name}.csv", index=False, float_format="%.10g")
    pd.DataFrame(MODELS, columns=["data", "model", "terms"]).to_csv(
        OUT / "models.csv", index=False
    )


if __name__ == "__main__":
    main()
