"""Properties of LinearMixedRegressor's fit (hypothesis): invariance under row
permutation and group relabeling, y -> a y + b, and shifting a slope column."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skhlm import LinearMixedRegressor

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def data(seed):
    rng = np.random.default_rng(seed)
    G = 25
    sizes = rng.integers(4, 12, G)
    g = np.repeat(np.arange(G), sizes)
    n = g.size
    X = np.column_stack([rng.normal(2.0, 1.5, n), rng.normal(size=n)])
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.4]], size=G)
    y = 3 + X @ [1.0, -0.5] + b[g, 0] + b[g, 1] * X[:, 0] + rng.normal(size=n)
    return X, y, g


def fit(X, y, g, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LinearMixedRegressor(random_slopes=[0], method=method).fit(X, y, groups=g)


@SETTINGS
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["ml", "reml"]))
def test_row_order_and_group_labels_do_not_matter(seed, method):
    X, y, g = data(seed)
    base = fit(X, y, g, method)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(y.size)
    relabel = rng.permutation(1000)[: g.max() + 1] * 7 + 3  # new labels, another order
    other = fit(X[order], y[order], relabel[g[order]], method)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, abs=1e-7)
    np.testing.assert_allclose(other.variance_components_["group"], base.variance_components_["group"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(other.coef_, base.coef_, rtol=1e-7, atol=1e-9)
    # The same group's effects, whatever its label.
    first = g[0]
    seen = np.flatnonzero(base.groups_ == first)[0]
    moved = np.flatnonzero(other.groups_ == relabel[first])[0]
    np.testing.assert_allclose(other.random_effects_[moved], base.random_effects_[seen], rtol=1e-5, atol=1e-7)


@SETTINGS
@given(seed=st.integers(0, 10_000), a=st.floats(-50, 50).filter(lambda v: abs(v) > 1e-2),
       b=st.floats(-1e3, 1e3), method=st.sampled_from(["ml", "reml"]))
def test_y_rescaled_rescales_the_fit(seed, a, b, method):
    X, y, g = data(seed)
    base, other = fit(X, y, g, method), fit(X, a * y + b, g, method)
    n, p = y.size, 3
    m = n if method == "ml" else n - p
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_ - m * np.log(abs(a)), abs=1e-6)
    np.testing.assert_allclose(other.variance_components_["group"], a**2 * base.variance_components_["group"],
                               rtol=1e-5, atol=1e-8 * a**2)
    assert other.variance_components_["residual"] == pytest.approx(a**2 * base.variance_components_["residual"], rel=1e-6)
    np.testing.assert_allclose(other.coef_, a * base.coef_, rtol=1e-6, atol=1e-8 * abs(a))
    assert other.intercept_ == pytest.approx(a * base.intercept_ + b, rel=1e-6, abs=1e-6 * (abs(a) + abs(b)))


@SETTINGS
@given(seed=st.integers(0, 10_000), c=st.floats(-100, 100), method=st.sampled_from(["ml", "reml"]))
def test_shifting_a_slope_column_moves_sigma_to_t_sigma_t(seed, c, method):
    X, y, g = data(seed)
    base = fit(X, y, g, method)
    shifted = X.copy()
    shifted[:, 0] += c
    other = fit(shifted, y, g, method)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, abs=1e-6)
    # Z' = Z U with U = [[1, c], [0, 1]]: b' = U^-1 b, Sigma' = U^-1 Sigma U^-T.
    u_inv = np.array([[1.0, -c], [0.0, 1.0]])
    expected = u_inv @ base.variance_components_["group"] @ u_inv.T
    scale = np.abs(expected).max()
    np.testing.assert_allclose(other.variance_components_["group"], expected, rtol=1e-5, atol=1e-7 * scale)
    np.testing.assert_allclose(other.random_effects_, base.random_effects_ @ u_inv.T, rtol=1e-5,
                               atol=1e-6 * np.abs(base.random_effects_ @ u_inv.T).max())
