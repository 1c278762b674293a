"""Bad input, hard data, nothing lost, determinism: one named test per case.

The README's "What happens when..." table lists these cases.
"""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import simulate_multilevel
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LinearRegression

from skhlm import RandomInterceptRegressor
from skhlm.engine import criterion as obj
from skhlm.datasets import make_multilevel_regression


@pytest.fixture(scope="module")
def data():
    X, y, groups = make_multilevel_regression(
        n_groups=30, group_size=(5, 25), n_level1=2, n_level2=1, icc=0.3, random_state=3
    )
    return X, y, groups


def fit(X, y, groups, **params):
    return RandomInterceptRegressor(**params).fit(X, y, groups=groups)


def assert_same_fit(a, b, rtol=1e-9):
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=rtol, atol=1e-12)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=rtol)
    for key in ("group", "residual"):
        assert a.variance_components_[key] == pytest.approx(b.variance_components_[key], rel=rtol)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=rtol)


def assert_profiled_optimum(model, method="reml", rtol=1e-6):
    """The EM answer is where a 1-D optimizer puts the profiled criterion's minimum."""
    stats = model._result.stats
    lam = model.variance_components_["group"] / model.variance_components_["residual"]
    best = minimize_scalar(
        lambda t: obj.profiled_criterion(stats, np.exp(t), method),
        bracket=(np.log(lam) - 0.5, np.log(lam) + 0.5),
        tol=1e-12,
    )
    assert lam == pytest.approx(np.exp(best.x), rel=rtol)


# --- Bad input: a clear exception ------------------------------------------------


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf(data, where, value):
    X, y, groups = data
    X, y = X.copy(), y.copy()
    if where == "X":
        X.iloc[[2, 7], 1] = value
        match = r"X contains 2 NaN or infinite value\(s\), by column: \{'x2': 2\}.*impute"
    else:
        y.iloc[4] = value
        match = r"y contains 1 NaN or infinite value\(s\)"
    with pytest.raises(ValueError, match=match):
        fit(X, y, groups)


def test_nan_at_predict_names_the_column(data):
    X, y, groups = data
    model = fit(X, y, groups)
    X = X.copy()
    X.iloc[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"by column: \{'z1': 1\}"):
        model.predict(X)


def test_missing_group_labels(data):
    X, y, groups = data
    labels = groups.astype(object).copy()
    labels.iloc[[0, 1]] = np.nan
    with pytest.raises(ValueError, match="groups has 2 missing label.*out of"):
        fit(X, y, labels)


def test_groups_of_the_wrong_length(data):
    X, y, groups = data
    with pytest.raises(ValueError, match=f"groups has {len(y) - 1} labels but X has {len(y)} rows"):
        fit(X, y, groups[:-1])


def test_two_dimensional_groups(data):
    X, y, groups = data
    with pytest.raises(ValueError, match=r"groups must be 1-D.*shape \(\d+, 2\)"):
        fit(X, y, np.column_stack([groups, groups]))
    with pytest.raises(ValueError, match="DataFrame with 2 columns"):
        fit(X, y, pd.DataFrame({"a": groups, "b": groups}))


def test_empty_X(data):
    with pytest.raises(ValueError, match="0 sample"):
        RandomInterceptRegressor().fit(np.empty((0, 2)), np.empty(0), groups=np.empty(0))


def test_fewer_than_two_groups(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="1 distinct label.*at least 2 groups"):
        fit(X, y, np.full(len(y), "only"))


def test_as_many_groups_as_rows(data):
    X, y, _ = data
    with pytest.raises(ValueError, match=f"{len(y)} distinct labels for {len(y)} rows.*not identifiable"):
        fit(X, y, np.arange(len(y)))


def test_non_numeric_feature_column(data):
    X, y, groups = data
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['school'\].*group_column"):
        fit(X.assign(school="a"), y, groups)


def test_predict_with_other_features_than_fit(data):
    X, y, groups = data
    model = fit(X, y, groups)
    with pytest.raises(ValueError, match="X has 2 features, but RandomInterceptRegressor is expecting 3"), \
            pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X.to_numpy()[:, :2])
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X[["x2", "x1", "z1"]])


@pytest.mark.filterwarnings("ignore:Only 2 groups")
def test_too_few_rows_for_the_fixed_effects():
    X = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(ValueError, match="n_samples=4 for 4 fixed effects"):
        RandomInterceptRegressor().fit(X, np.arange(4.0), groups=[0, 0, 1, 1])


# --- Hard but valid data -----------------------------------------------------------


def test_boundary_fit_is_ols_in_one_iteration(data):
    X, _, groups = data
    rng = np.random.default_rng(1)
    e = rng.normal(size=len(groups))
    codes = groups.to_numpy()
    e -= 0.6 * (np.bincount(codes, weights=e) / np.bincount(codes))[codes]
    y = 1.0 + X @ [0.5, -1.0, 0.2] + e
    ols = LinearRegression().fit(X, y)
    for method in ["reml", "ml"]:
        model = fit(X, y, groups, method=method)
        assert model.singular_ and model.variance_components_["group"] == 0.0 and model.n_iter_ == 1
        np.testing.assert_allclose(model.coef_, ols.coef_, rtol=1e-10)


def test_constant_response_is_refused(data):
    X, y, groups = data
    with pytest.raises(ValueError, match="y is constant"):
        fit(X, np.full(len(y), 3.0), groups)


def test_response_constant_within_every_group_is_refused(data):
    X, y, groups = data
    per_group = np.random.default_rng(0).normal(size=groups.max() + 1)
    with pytest.raises(ValueError, match="does not vary within groups.*s2e is 0"):
        fit(X, per_group[groups], groups)
    with pytest.raises(ValueError, match="does not vary within groups"):
        fit(X, 2.0 * X["x1"] + per_group[groups], groups)  # exact within X
    # X's level-1 columns times any coefficients, plus a constant per group: exact.
    with pytest.raises(ValueError, match="does not vary within groups"):
        fit(X, X @ [0.7, -1.3, 2.0] + per_group[groups], groups)


def test_exact_fit_without_groups_is_ols_with_zero_variance(data):
    X, _, _ = data
    y = 1.0 + 2.0 * X["x1"]
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    np.testing.assert_allclose(model.coef_, [2.0, 0.0, 0.0], atol=1e-12)
    assert model.variance_components_["residual"] == pytest.approx(0.0, abs=1e-12)
    assert model.icc_ == 0.0 and not np.isnan(model.log_likelihood_)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_duplicated_and_collinear_columns_are_dropped(data, method):
    X, y, groups = data
    wide = X.assign(x1_again=X["x1"], z1_plus=X["z1"] * 2 + 1, const=7.0)
    with pytest.warns(UserWarning, match=r"\['x1_again', 'z1_plus', 'const'\].*coefficient of 0"):
        model = fit(wide, y, groups, method=method)
    base = fit(X, y, groups, method=method)
    np.testing.assert_allclose(model.coef_, np.concatenate([base.coef_, [0, 0, 0]]), rtol=1e-9, atol=1e-12)
    # Equal up to the rounding of a wider X'X.
    np.testing.assert_allclose(model.predict(wide, groups=groups), base.predict(X, groups=groups), rtol=1e-8)
    assert model.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-10)
    assert np.isfinite(model.coef_).all()


def test_column_with_r2_of_one_minus_1e_minus8_is_dropped(data):
    # The rank tolerance is relative to the column's own squared norm (n = 407 in the
    # standardized statistics): its unexplained part, 1e-8 * 407, is below 1e-7 * 407.
    X, y, groups = data
    design = np.column_stack([np.ones(len(y)), X])
    noise = np.random.default_rng(0).normal(size=len(y))
    e = noise - design @ np.linalg.lstsq(design, noise, rcond=None)[0]  # orthogonal to X
    x1 = X["x1"] - X["x1"].mean()
    e *= np.sqrt(1e-8 / (1 - 1e-8) * (x1 @ x1) / (e @ e))
    near = X.assign(x1_near=X["x1"] + e)  # R^2 = 1 - 1e-8 against x1
    with pytest.warns(UserWarning, match=r"rank deficient: column\(s\) \['x1_near'\]"):
        model = fit(near, y, groups)
    base = fit(X, y, groups)
    assert model.coef_[-1] == 0.0
    np.testing.assert_allclose(model.coef_[:-1], base.coef_, rtol=1e-9)


def test_response_around_1e8(data):
    X, y, groups = data
    base = fit(X, y, groups)
    big = fit(X, y + 1e8, groups)
    np.testing.assert_allclose(big.coef_, base.coef_, rtol=1e-6)
    assert big.intercept_ - 1e8 == pytest.approx(base.intercept_, rel=1e-6)
    for key in ("group", "residual"):
        assert big.variance_components_[key] == pytest.approx(base.variance_components_[key], rel=1e-7)


def test_feature_scales_1e_minus6_and_1e6(data):
    X, y, groups = data
    scales = np.array([1e-6, 1e6, 1.0])
    base = fit(X, y, groups)
    scaled = fit(X * scales, y, groups)
    np.testing.assert_allclose(scaled.coef_ * scales, base.coef_, rtol=1e-8)
    assert scaled.variance_components_["group"] == pytest.approx(base.variance_components_["group"], rel=1e-9)
    np.testing.assert_allclose(scaled.random_effects_, base.random_effects_, rtol=1e-8)


def test_one_giant_group_and_ten_thousand_singletons():
    sizes = np.concatenate([[90_000], np.ones(10_000, dtype=int)])
    x, y, groups = simulate_multilevel(5, sizes=sizes, n_within=2, n_between=0, coef=[1.0, -1.0])
    model = fit(x, y, groups)
    assert model.converged_ and model.n_iter_ <= 30
    assert_profiled_optimum(model)


def test_one_hundred_thousand_groups_of_two():
    x, y, groups = simulate_multilevel(6, n_groups=100_000, sizes=2, n_between=0, coef=[0.5])
    model = fit(x, y, groups)
    assert model.converged_ and model.n_iter_ <= 30
    assert model.variance_components_["group"] == pytest.approx(1.0, abs=0.05)
    assert_profiled_optimum(model)


def test_two_groups_fit_with_a_warning(data):
    X, y, groups = data
    two = (groups % 2).to_numpy()
    with pytest.warns(UserWarning, match="Only 2 groups: s2u .* poorly determined"):
        model = fit(X, y, two)
    assert model.converged_ and len(model.groups_) == 2
    assert np.isfinite(model.log_likelihood_)


def test_five_groups_fit_silently_and_four_warn(data):
    X, y, groups = data
    codes = groups.to_numpy() % 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = fit(X, y, codes)
    assert model.converged_ and len(model.groups_) == 5
    four = np.minimum(codes, 3)
    with pytest.warns(UserWarning, match="Only 4 groups: s2u is estimated from 4 group intercepts"):
        fit(X, y, four)


def test_float32_input(data):
    X, y, groups = data
    single = fit(X.astype(np.float32), y.astype(np.float32), groups)
    assert_same_fit(single, fit(X, y, groups), rtol=1e-5)


# --- Nothing lost --------------------------------------------------------------------


def test_fit_and_predict_do_not_modify_their_inputs(data):
    X, y, groups = data
    X_arr, y_arr, g_arr = X.to_numpy().copy(), y.to_numpy().copy(), groups.to_numpy().copy()
    for arr in (X_arr, y_arr, g_arr):
        arr.flags.writeable = False  # any write would raise
    model = fit(X_arr, y_arr, g_arr)
    model.predict(X_arr, groups=g_arr)
    model.score(X_arr, y_arr, groups=g_arr)

    frame, series, labels = X.copy(), y.copy(), groups.astype(str)
    before = (frame.copy(), series.copy(), labels.copy())
    column = RandomInterceptRegressor(group_column="g").fit(frame.assign(g=labels), series)
    fit(frame, series, labels).predict(frame, groups=labels)
    column.predict(frame.assign(g=labels))
    pd.testing.assert_frame_equal(frame, before[0])
    pd.testing.assert_series_equal(series, before[1])
    pd.testing.assert_series_equal(labels, before[2])


def test_refit_leaves_no_trace(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    other_X, other_y, other_groups = make_multilevel_regression(
        n_groups=12, group_size=10, n_level1=1, n_level2=0, random_state=9
    )
    model.fit(other_X.to_numpy(), other_y, groups=other_groups)
    fresh = RandomInterceptRegressor().fit(other_X.to_numpy(), other_y, groups=other_groups)
    assert not hasattr(model, "feature_names_in_")
    assert set(vars(model)) == set(vars(fresh))
    for name, value in vars(fresh).items():
        if isinstance(value, (np.ndarray, float, int, bool, dict)):
            np.testing.assert_equal(getattr(model, name), value)


# --- Deterministic -------------------------------------------------------------------

_SCRIPT = """
import numpy as np
from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_multilevel_regression
X, y, g = make_multilevel_regression(n_groups=300, group_size=(2, 40), random_state=1)
m = RandomInterceptRegressor().fit(X, y, groups=g)
print(np.concatenate([[m.intercept_], m.coef_, list(m.variance_components_.values()),
                      m.random_effects_, [m.log_likelihood_]]).tobytes().hex())
"""


@pytest.mark.slow
def test_bit_for_bit_deterministic_in_and_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from contextlib import redirect_stdout
        from io import StringIO

        buffers = [StringIO(), StringIO()]
        for buffer in buffers:
            with redirect_stdout(buffer):
                exec(_SCRIPT, namespace)
    assert runs[0] == runs[1] == buffers[0].getvalue() == buffers[1].getvalue()


def test_a_failed_fit_leaves_no_fitted_state(data):
    from sklearn.exceptions import NotFittedError

    X, y, groups = data
    model = fit(X, y, groups)
    with pytest.raises(ValueError, match="y is constant"):
        model.fit(X[["x1", "x2"]], np.ones(len(y)), groups=groups)
    assert not [name for name in vars(model) if name.endswith("_") or name.startswith("_")]
    with pytest.raises(NotFittedError):
        model.predict(X[["x1", "x2"]])
    with pytest.raises(NotFittedError):
        model.summary()
    fresh = RandomInterceptRegressor()
    with pytest.raises(ValueError):
        fresh.fit(X, np.ones(len(y)), groups=groups)
    with pytest.raises(NotFittedError):
        fresh.predict(X)


def test_x_as_a_series_and_boolean_group_column_are_refused_clearly(data):
    X, y, groups = data
    with pytest.raises(ValueError, match="Expected a 2-dimensional container|Expected 2D"):
        RandomInterceptRegressor().fit(X["x1"], y, groups=groups)
    with pytest.raises(ValueError, match="group_column"):
        RandomInterceptRegressor(group_column=True).fit(X, y)


@pytest.mark.parametrize("where", ["X", "y"])
def test_values_whose_squares_overflow_are_refused(data, where):
    X, y, groups = data
    X, y = (X * 1e160, y) if where == "X" else (X, y * 1e160)
    with pytest.raises(ValueError) as error:
        fit(X, y, groups)
    assert str(error.value) == (
        "The squares of X or y overflow float64 (values beyond about 1e150 in "
        "magnitude). Rescale them before fitting, e.g. divide by a power of 10."
    )


@pytest.mark.parametrize("where", ["X", "y"])
def test_values_too_small_to_square_are_refused(data, where):
    X, y, groups = data
    X, y = (X * [1.0, 1e-160, 1.0], y) if where == "X" else (X, y * 1e-160)
    match = r"'x2': .*e-160.*Rescale" if where == "X" else r"y varies by too little.*e-160.*Rescale"
    with pytest.raises(ValueError, match=match):
        fit(X, y, groups)


def test_small_but_representable_scales_fit_as_any_other(data):
    # 1e-140: squares of ~1e-280 are still normal floats; the fit is scale-equivariant.
    X, y, groups = data
    base = fit(X, y, groups)
    scaled = fit(X * 1e-140, y * 1e-140, groups)
    np.testing.assert_allclose(scaled.coef_, base.coef_, rtol=1e-8)
    assert scaled.icc_ == pytest.approx(base.icc_, rel=1e-8)


def test_a_tiny_constant_column_is_dropped_not_refused(data):
    X, y, groups = data
    X = X.assign(x2=1e-170)
    with pytest.warns(UserWarning, match=r"column\(s\) \['x2'\] are constant"):
        model = fit(X, y, groups)
    assert model.coef_[1] == 0.0


def test_warnings_point_at_the_callers_line(data):
    """Not at a line inside skhlm or scikit-learn: the user's own, also through a
    Pipeline and compare()."""
    import os

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import skhlm
    from skhlm import compare

    def assert_callers(record):
        files = {w.filename for w in record}
        assert not [f for f in files if f.startswith(os.path.dirname(skhlm.__file__))]
        if "mutmut" not in sys.modules:  # mutmut calls skhlm through frames of its own
            assert files == {__file__}

    X, y, groups = data
    with pytest.warns(UserWarning, match="got no groups") as record:
        RandomInterceptRegressor().fit(X, y)
    assert_callers(record)
    with pytest.warns(UserWarning, match="Only 3 groups") as record:
        make_pipeline(StandardScaler(), RandomInterceptRegressor()).fit(
            X, y, randominterceptregressor__groups=groups.to_numpy() % 3
        )
    assert_callers(record)
    with pytest.warns(ConvergenceWarning) as record:
        model = RandomInterceptRegressor(max_iter=1, tol=1e-14).fit(X, y, groups=groups)
    assert_callers(record)
    with pytest.warns(ConvergenceWarning, match="ML refit") as record:
        compare(model, model, refit=True)
    assert_callers(record)


def test_plus_and_minus_inf_in_one_column_are_counted_not_averaged(data):
    """The centre of a column holding +inf and -inf is NaN; that must not surface as a
    numpy warning, but as the count of non-finite values."""
    X, y, groups = data
    bad = X.copy()
    bad.iloc[0, 0], bad.iloc[1, 0] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"X contains 2 NaN or infinite value\(s\), by column: \{'x1': 2\}"):
        fit(bad, y, groups)
    y_bad = y.copy()
    y_bad.iloc[0], y_bad.iloc[1] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"^y contains 2 NaN or infinite value\(s\) out of"):
        fit(X, y_bad, groups)


def test_group_codes_out_of_range_are_refused_before_the_pass():
    from skhlm.data.groups import GroupCoding
    from skhlm.data.accumulator import compute_statistics

    X, y = np.ones((4, 1)), np.arange(4.0)
    for codes in ([0, 1, 2, 1], [0, -1, 1, 1]):
        coding = GroupCoding(np.array(codes), np.array([2, 2]), np.arange(2), np.arange(2))
        with pytest.raises(ValueError, match=r"^codes must lie in range\(n_groups=2\)\.$"):
            compute_statistics(X, y, coding)
