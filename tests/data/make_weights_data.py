"""Build the data sets that lme4 fits with precision weights (tests/data/weights/*.csv).

Run from the repository root:

    python tests/data/make_weights_data.py
    Rscript tests/data/weights/fit_weights.R     # needs R with lme4, lmerTest, jsonlite

lme4's ``weights=`` are precision weights: Var(e_i) = s2e / w_i.  Every data set has a
response ``y``, a group label ``g`` (strings that R and Python sort alike), predictors
``x1`` (and ``x2``) and the weight ``w``; y is simulated with Var(e_i) = s2e / w_i.

* ``ri_weights``: random intercept, 60 groups of 3-30 rows, log-normal weights
  stretched so that max(w) / min(w) = 50.
* ``scaled_weights``: ri_weights with every weight multiplied by 1000.
* ``ri_integer``: random intercept, integer weights 1-5; ``ri_integer_expanded`` has
  each of its rows repeated w times with weight 1 (frequency weights written out), to
  show that precision weights are not frequency weights.
* ``slopes_weights``: (1 + x1 | g), 40 groups; ``slopes_diag_weights`` is the same
  data (an identical file), fitted with (1 + x1 || g).
* ``zero_weight``: random intercept, about 10% of the rows with weight 0;
  ``zero_weight_dropped`` is the same data without those rows.

``MODELS`` lists the fits; the R script reads them from models.csv.  The CSVs are
rounded to 10 significant digits: the rounded values *are* the data, for R and Python.
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "weights"

# (data set, model name, fixed terms, random slopes (space separated, "" for none), covariance)
MODELS = [
    ("ri_weights", "ri", "x1 + x2", "", "intercept"),
    ("scaled_weights", "ri", "x1 + x2", "", "intercept"),
    ("ri_integer", "ri", "x1", "", "intercept"),
    ("ri_integer_expanded", "ri", "x1", "", "intercept"),
    ("slopes_weights", "slopes", "x1 + x2", "x1", "unstructured"),
    ("slopes_diag_weights", "slopes_diag", "x1 + x2", "x1", "diagonal"),
    ("zero_weight", "ri", "x1", "", "intercept"),
    ("zero_weight_dropped", "ri", "x1", "", "intercept"),
]


def _labels(n_groups):
    return np.array([f"g{k:05d}" for k in range(n_groups)])


def simulate(rng, sizes, sigma, s2e, beta, weights):
    """y = 10 + X beta + Z b_g + e, Var(e_i) = s2e / w_i, Z = [1, the first q-1 columns
    of X]; X is standard normal; ``weights(n)`` returns the n weights."""
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = codes.size
    X = rng.normal(size=(n, beta.size))
    w = weights(n)
    q = sigma.shape[0]
    b = rng.multivariate_normal(np.zeros(q), sigma, size=len(sizes))
    Z = np.column_stack([np.ones(n), X[:, : q - 1]])
    e = rng.normal(size=n) * np.sqrt(s2e / np.where(w > 0, w, 1.0))
    y = 10.0 + X @ beta + np.einsum("ij,ij->i", Z, b[codes]) + e
    frame = pd.DataFrame(X, columns=[f"x{k + 1}" for k in range(X.shape[1])])
    frame.insert(0, "y", y)
    frame.insert(1, "g", _labels(len(sizes))[codes])
    frame["w"] = w
    return frame


def spread_weights(rng, ratio):
    """Log-normal weights, their logs stretched onto [-log(ratio)/2, log(ratio)/2]."""
    def draw(n):
        z = rng.normal(size=n)
        z = (z - z.min()) / (z.max() - z.min())
        return np.exp((z - 0.5) * np.log(ratio))
    return draw


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261214)
    data = {}
    data["ri_weights"] = simulate(rng, rng.integers(3, 31, 60), np.array([[1.5]]), 2.0,
                                  np.array([1.0, -0.5]), spread_weights(rng, 50.0))
    scaled = data["ri_weights"].copy()
    scaled["w"] = 1000.0 * scaled["w"]
    data["scaled_weights"] = scaled
    data["ri_integer"] = simulate(rng, rng.integers(3, 16, 40), np.array([[1.0]]), 1.5,
                                  np.array([0.8]), lambda n: rng.integers(1, 6, n).astype(float))
    ri = data["ri_integer"]
    expanded = ri.loc[ri.index.repeat(ri["w"].astype(int))].reset_index(drop=True)
    expanded["w"] = 1.0
    data["ri_integer_expanded"] = expanded
    data["slopes_weights"] = simulate(rng, rng.integers(5, 26, 40), np.array([[1.0, 0.3], [0.3, 0.5]]), 1.0,
                                      np.array([1.0, 0.5]), spread_weights(rng, 30.0))
    data["slopes_diag_weights"] = data["slopes_weights"].copy()

    def with_zeros(n):
        w = spread_weights(rng, 20.0)(n)
        w[rng.random(n) < 0.1] = 0.0
        return w
    zero = simulate(rng, rng.integers(4, 20, 30), np.array([[1.0]]), 1.0, np.array([0.7]), with_zeros)
    data["zero_weight"] = zero
    data["zero_weight_dropped"] = zero[zero["w"] > 0].reset_index(drop=True)
    for name, frame in data.items():
        frame.to_csv(OUT / f"{name}.csv", index=False, float_format="%.10g")
    pd.DataFrame(MODELS, columns=["data", "model", "terms", "slopes", "covariance"]).to_csv(
        OUT / "models.csv", index=False
    )


if __name__ == "__main__":
    main()
