"""Invariance and equivariance of the fit, checked by hypothesis on random data."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_multilevel_regression

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**31 - 1)
methods = st.sampled_from(["reml", "ml"])


def problem(seed):
    X, y, groups = make_multilevel_regression(
        n_groups=25, group_size=(3, 15), n_level1=2, n_level2=1, icc=0.4,
        intercept=2.0, random_state=seed,
    )
    return X.to_numpy(), y.to_numpy(), groups.to_numpy()


def fit(X, y, groups, method):
    return RandomInterceptRegressor(method=method).fit(X, y, groups=groups)


def close(a, b, rtol=1e-7, atol=1e-8):
    """Relative agreement, with an absolute floor for values near 0: EM stops when no
    parameter moves by more than tol=1e-10 (in units of sd(y), about 1 here) per
    update, which leaves each within ~1e-9 of the optimum."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@SETTINGS
@given(seed=seeds, method=methods, order_seed=seeds)
def test_permuting_rows(seed, method, order_seed):
    X, y, groups = problem(seed)
    order = np.random.default_rng(order_seed).permutation(len(y))
    a, b = fit(X, y, groups, method), fit(X[order], y[order], groups[order], method)
    close(a.coef_, b.coef_)
    close(a.intercept_, b.intercept_)
    close(list(a.variance_components_.values()), list(b.variance_components_.values()))
    close(a.random_effects_, b.random_effects_)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-10)


@SETTINGS
@given(seed=seeds, method=methods, relabel_seed=seeds, kind=st.sampled_from(["str", "float", "categorical"]))
def test_relabeling_groups(seed, method, relabel_seed, kind):
    X, y, groups = problem(seed)
    new_names = np.random.default_rng(relabel_seed).permutation(100)[: groups.max() + 1]
    relabeled = {
        "str": lambda g: np.array([f"unit {v}" for v in new_names[g]], dtype=object),
        "float": lambda g: new_names[g] / 4.0,
        "categorical": lambda g: pd.Categorical(new_names[g]),
    }[kind](groups)
    a, b = fit(X, y, groups, method), fit(X, y, relabeled, method)
    close(a.coef_, b.coef_)
    close(a.variance_components_["group"], b.variance_components_["group"])
    # The BLUPs follow their groups: the same u_j under the new label.
    mapping = dict(zip(np.asarray(relabeled), groups))
    order = [mapping[label] for label in b.groups_]
    close(b.random_effects_, a.random_effects_[order])
    close(a.predict(X, groups=groups), b.predict(X, groups=relabeled))


@SETTINGS
@given(seed=seeds, method=methods, scale=st.floats(-1e3, 1e3).filter(lambda a: abs(a) > 1e-3),
       shift=st.floats(-1e6, 1e6))
def test_affine_response(seed, method, scale, shift):
    X, y, groups = problem(seed)
    a, b = fit(X, y, groups, method), fit(X, scale * y + shift, groups, method)
    close(b.coef_, scale * a.coef_, rtol=1e-6)
    close(b.intercept_, scale * a.intercept_ + shift, rtol=1e-6, atol=1e-6 * abs(shift) + 1e-9)
    for key in ("group", "residual"):
        close(b.variance_components_[key], scale**2 * a.variance_components_[key], rtol=1e-6)
    close(b.icc_, a.icc_, rtol=1e-6)
    n, p = len(y), X.shape[1] + 1
    dof = n if method == "ml" else n - p  # the density of y scales by 1/|a| per dimension
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_ - dof * np.log(abs(scale)), rel=1e-9, abs=1e-7)


@SETTINGS
@given(seed=seeds, method=methods, column=st.integers(0, 2),
       factor=st.floats(1e-4, 1e4) | st.floats(-1e4, -1e-4))
def test_scaling_a_column(seed, method, column, factor):
    X, y, groups = problem(seed)
    scaled = X.copy()
    scaled[:, column] *= factor
    a, b = fit(X, y, groups, method), fit(scaled, y, groups, method)
    expected = a.coef_.copy()
    expected[column] /= factor
    close(b.coef_, expected, rtol=1e-6, atol=0)
    close(b.intercept_, a.intercept_, rtol=1e-7)
    close(b.variance_components_["group"], a.variance_components_["group"], rtol=1e-6)
    close(b.predict(scaled, groups=groups), a.predict(X, groups=groups), rtol=1e-8)


@SETTINGS
@given(seed=seeds, method=methods, column=st.integers(0, 2), shift=st.floats(-1e5, 1e5))
def test_shifting_a_column_moves_only_the_intercept(seed, method, column, shift):
    X, y, groups = problem(seed)
    shifted = X.copy()
    shifted[:, column] += shift
    a, b = fit(X, y, groups, method), fit(shifted, y, groups, method)
    close(b.coef_, a.coef_, rtol=1e-6)
    close(b.intercept_, a.intercept_ - shift * a.coef_[column], rtol=1e-6, atol=1e-6)
    close(list(b.variance_components_.values()), list(a.variance_components_.values()), rtol=1e-7)
    close(b.random_effects_, a.random_effects_, rtol=1e-6, atol=1e-9)
