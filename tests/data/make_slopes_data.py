"""Build the data sets that lme4 fits with random slopes (tests/data/slopes/*.csv).

Run from the repository root:

    python tests/data/make_slopes_data.py
    Rscript tests/data/slopes/fit_slopes.R     # needs R with lme4, lmerTest, jsonlite

Every data set has a response ``y``, a group label ``g`` (strings that R and Python
sort alike) and predictors.  ``MODELS`` lists the fits: the fixed-effect terms, the
random slopes and the covariance (``unstructured`` is lme4's ``(1 + x | g)``,
``diagonal`` its ``(1 + x || g)``); the R script reads them from models.csv.
sleepstudy is written by the R script itself, from lme4.  The CSVs are rounded to 10
significant digits: the rounded values *are* the data, for both R and Python.
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "slopes"

# (data set, model name, fixed terms, random slopes (space separated), covariance)
MODELS = [
    ("sleepstudy", "days", "Days", "Days", "unstructured"),
    ("sleepstudy", "days_diag", "Days", "Days", "diagonal"),
    ("three", "q3", "x1 + x2 + x3", "x1 x2", "unstructured"),
    ("three", "q3_diag", "x1 + x2 + x3", "x1 x2", "diagonal"),
    ("perfect", "corr_one", "x1", "x1", "unstructured"),
    ("tiny_slope", "small_var", "x1 + x2", "x1", "unstructured"),
    ("level2", "cross", "x1 + w1", "x1", "unstructured"),
    ("many_small", "pairs", "x1 + x2", "x1", "unstructured"),
    ("scaled", "badly_scaled", "x1 + x2", "x1", "unstructured"),
    ("singular", "no_slope_variance", "x1", "x1", "unstructured"),
    ("no_intercept", "zero", "0 + x1 + x2", "x1", "unstructured"),
]


def _labels(n_groups):
    return np.array([f"g{k:05d}" for k in range(n_groups)])


def simulate(rng, sizes, sigma, s2e, beta, columns):
    """y = X beta + Z b_g + e, Z = [1, the first q-1 columns of X]; ``columns(n, codes)``
    returns the (n, p) predictors."""
    codes = np.repeat(np.arange(len(sizes)), sizes)
    X = columns(codes.size, codes)
    q = sigma.shape[0]
    b = rng.multivariate_normal(np.zeros(q), sigma, size=len(sizes))
    Z = np.column_stack([np.ones(codes.size), X[:, : q - 1]])
    y = 10.0 + X @ beta + np.einsum("ij,ij->i", Z, b[codes]) + rng.normal(0, np.sqrt(s2e), codes.size)
    frame = pd.DataFrame(X, columns=[f"x{k + 1}" for k in range(X.shape[1])])
    frame.insert(0, "y", y)
    frame.insert(1, "g", _labels(len(sizes))[codes])
    return frame


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261201)
    data = {}
    # q = 3: intercept and two correlated slopes.
    sigma3 = np.array([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 0.5]])
    data["three"] = simulate(rng, rng.integers(5, 30, 80), sigma3, 1.0, np.array([1.0, -0.5, 0.3]),
                             lambda n, c: rng.normal(size=(n, 3)))
    # Slope and intercept perfectly correlated in the truth: the fit is singular.
    sigma1 = np.array([[1.0, 0.5], [0.5, 0.25]])
    data["perfect"] = simulate(rng, rng.integers(4, 12, 30), sigma1, 2.0, np.array([0.7]),
                               lambda n, c: rng.normal(size=(n, 1)))
    # A slope variance near 0 (the truth is 1e-3 of the intercept's).
    sigma2 = np.array([[1.0, 0.0], [0.0, 1e-3]])
    data["tiny_slope"] = simulate(rng, rng.integers(5, 20, 60), sigma2, 1.0, np.array([1.0, 0.5]),
                                  lambda n, c: rng.normal(size=(n, 2)))
    # A level-2 predictor w1 (constant within the group) beside a random level-1 slope.
    w = rng.normal(size=50)
    level2 = simulate(rng, rng.integers(5, 25, 50), np.array([[1.0, 0.3], [0.3, 0.5]]), 1.0,
                      np.array([1.0, 0.8]), lambda n, c: np.column_stack([rng.normal(size=n), w[c]]))
    data["level2"] = level2.rename(columns={"x2": "w1"})
    # A few thousand groups of 2 to 4 rows.
    data["many_small"] = simulate(rng, rng.integers(2, 5, 3000), np.array([[1.0, -0.2], [-0.2, 0.4]]), 1.0,
                                  np.array([0.5, -1.0]), lambda n, c: rng.normal(size=(n, 2)))
    # Badly scaled columns: a slope column around 1e4 with spread 1e3, another at 1e-3.
    scaled = simulate(rng, rng.integers(5, 20, 60), np.array([[1.0, 0.2], [0.2, 0.3]]), 1.0,
                      np.array([1.0, 0.5]), lambda n, c: rng.normal(size=(n, 2)))
    scaled["x1"] = 1e4 + 1e3 * scaled["x1"]
    scaled["x2"] = 1e-3 * scaled["x2"]
    data["scaled"] = scaled
    # No slope variance in the truth, 15 small groups: lme4 fits a singular model
    # (its slope's relative standard deviation at 2e-8), REML and ML.
    rng3 = np.random.default_rng(3)
    data["singular"] = simulate(rng3, rng3.integers(4, 10, 15), np.array([[1.0, 0.0], [0.0, 0.0]]), 1.0,
                                np.array([0.5]), lambda n, c: rng3.normal(size=(n, 1)))
    # No fixed intercept (y ~ 0 + x1 + x2 + (1 + x1 | g)): the random intercept
    # carries y's level (10).
    rng4 = np.random.default_rng(4)
    data["no_intercept"] = simulate(rng4, rng4.integers(5, 15, 40), np.array([[1.0, 0.3], [0.3, 0.5]]), 1.0,
                                    np.array([1.0, -0.5]), lambda n, c: rng4.normal(size=(n, 2)))
    for name, frame in data.items():
        frame.to_csv(OUT / f"{name}.csv", index=False, float_format="%.10g")
    pd.DataFrame(MODELS, columns=["data", "model", "terms", "slopes", "covariance"]).to_csv(
        OUT / "models.csv", index=False
    )


if __name__ == "__main__":
    main()
