"""Tests of the simulated data sets in skhlm.datasets.

Recovery tests compare estimates with the true values within 4 standard errors:
for fixed effects the GLS standard errors at the fitted variance components, for
variance components the inverse Fisher information of the random intercept model.
A correct generator fails one such check with probability below 1e-4.
"""

import re

import numpy as np
import pandas as pd
import pytest

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_multilevel_regression, make_pisa_like

N_SE = 4.0


def sizes_of(groups):
    return pd.Series(groups).value_counts(sort=False).sort_index().to_numpy()


def gls_se(X, groups, s2u, s2e):
    """Standard errors of (intercept, coef) by GLS at known variance components."""
    design = np.column_stack([np.ones(len(groups)), np.asarray(X, dtype=float)])
    codes = pd.factorize(np.asarray(groups))[0]
    sums = pd.DataFrame(design).groupby(codes).sum().to_numpy()
    n_j = np.bincount(codes)
    c = s2u / (s2e + n_j * s2u)  # V_j^-1 = (I - c_j 11') / s2e
    info = (design.T @ design - sums.T @ (c[:, None] * sums)) / s2e
    return np.sqrt(np.diag(np.linalg.inv(info)))


def variance_se(sizes, s2u, s2e):
    """Asymptotic standard errors of (s2u, s2e) from the Fisher information."""
    d = s2e + sizes * s2u  # the eigenvalue of V_j along 1; the others are s2e
    info = 0.5 * np.array(
        [
            [np.sum(sizes**2 / d**2), np.sum(sizes / d**2)],
            [np.sum(sizes / d**2), np.sum(1.0 / d**2 + (sizes - 1) / s2e**2)],
        ]
    )
    return np.sqrt(np.diag(np.linalg.inv(info)))


def fit_intercept_only(y, groups):
    """RIM0 ``y ~ 1 + (1|group)``: an X with no columns."""
    return RandomInterceptRegressor().fit(np.empty((len(y), 0)), y, groups=groups)


def assert_variances_recovered(model, sizes, s2u, s2e):
    se = variance_se(sizes, s2u, s2e)
    vc = model.variance_components_
    assert abs(vc["group"] - s2u) < N_SE * se[0], (vc, s2u, se)
    assert abs(vc["residual"] - s2e) < N_SE * se[1], (vc, s2e, se)


# make_multilevel_regression ------------------------------------------------------


def test_shapes_names_and_order():
    X, y, groups = make_multilevel_regression(7, 4, n_level1=3, n_level2=2, random_state=0)
    assert X.shape == (28, 5)
    assert list(X.columns) == ["x1", "x2", "x3", "z1", "z2"]
    assert (X.dtypes == np.float64).all()
    assert y.name == "y" and y.shape == (28,) and y.dtype == np.float64
    assert groups.name == "group" and pd.api.types.is_integer_dtype(groups)
    np.testing.assert_array_equal(groups, np.repeat(np.arange(7), 4))
    for frame in (X, y, groups):
        assert frame.index.equals(pd.RangeIndex(28))


def test_return_params():
    X, y, groups, params = make_multilevel_regression(
        5, 3, coef=[1.0, 2.0, -3.0], intercept=4.0, icc=0.25, total_variance=8.0,
        return_params=True, random_state=0,
    )
    assert set(params) == {"intercept", "coef", "variance_components", "random_effects"}
    assert params["intercept"] == 4.0
    pd.testing.assert_series_equal(
        params["coef"], pd.Series([1.0, 2.0, -3.0], index=["x1", "x2", "z1"], name="coef")
    )
    assert params["variance_components"] == {"group": 2.0, "residual": 6.0}
    assert params["random_effects"].shape == (5,)


def test_drawn_coef_in_documented_range():
    *_, params = make_multilevel_regression(n_level1=40, n_level2=40, return_params=True, random_state=1)
    coef = params["coef"]
    assert len(coef) == 80 and coef.between(-2, 2).all()
    assert coef.min() < -1.5 and coef.max() > 1.5  # really drawn over the range


def test_y_is_built_from_the_returned_params():
    X, y, groups, params = make_multilevel_regression(
        400, 25, icc=0.4, intercept=3.0, total_variance=2.0, return_params=True, random_state=3
    )
    e = y - params["intercept"] - X @ params["coef"] - params["random_effects"][groups]
    s2e = params["variance_components"]["residual"]
    n = len(e)
    assert abs(e.mean()) < N_SE * np.sqrt(s2e / n)
    assert abs(e.var() - s2e) < N_SE * s2e * np.sqrt(2.0 / n)
    u = params["random_effects"]
    assert abs(u.var() - 0.8) < N_SE * 0.8 * np.sqrt(2.0 / len(u))


def test_same_seed_same_data_different_seed_different_data():
    a = make_multilevel_regression(group_size=(2, 9), random_state=42)
    b = make_multilevel_regression(group_size=(2, 9), random_state=42)
    c = make_multilevel_regression(group_size=(2, 9), random_state=43)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_series_equal(a[1], b[1])
    pd.testing.assert_series_equal(a[2], b[2])
    assert not a[0].equals(c[0]) and not a[1].equals(c[1])


def test_generator_and_randomstate_seeds():
    by_int = make_multilevel_regression(random_state=5)
    by_gen = make_multilevel_regression(random_state=np.random.default_rng(5))
    pd.testing.assert_frame_equal(by_int[0], by_gen[0])
    first = make_multilevel_regression(random_state=np.random.RandomState(5))
    second = make_multilevel_regression(random_state=np.random.RandomState(5))
    pd.testing.assert_frame_equal(first[0], second[0])
    # One generator passed to two calls gives two different data sets.
    rng = np.random.default_rng(5)
    assert not make_multilevel_regression(random_state=rng)[1].equals(
        make_multilevel_regression(random_state=rng)[1]
    )


def test_fixed_group_size():
    _, _, groups = make_multilevel_regression(n_groups=13, group_size=6, random_state=0)
    np.testing.assert_array_equal(sizes_of(groups), np.full(13, 6))


def test_drawn_group_sizes_within_bounds():
    _, _, groups = make_multilevel_regression(n_groups=600, group_size=(2, 4), random_state=0)
    sizes = sizes_of(groups)
    assert len(sizes) == 600
    assert set(sizes) == {2, 3, 4}  # both ends included
    assert abs(sizes.mean() - 3.0) < N_SE * np.sqrt(2.0 / 3.0 / 600)


def test_explicit_group_sizes():
    given = [1, 5, 2, 8]
    X, _, groups = make_multilevel_regression(n_groups=4, group_size=np.array(given), random_state=0)
    np.testing.assert_array_equal(groups, np.repeat(np.arange(4), given))
    _, _, groups = make_multilevel_regression(n_groups=4, group_size=given, random_state=0)
    np.testing.assert_array_equal(sizes_of(groups), given)


def test_shuffle_permutes_the_same_rows():
    kwargs = dict(n_groups=20, group_size=(3, 8), random_state=9)
    X, y, groups = make_multilevel_regression(**kwargs)
    Xs, ys, gs = make_multilevel_regression(shuffle=True, **kwargs)
    assert not gs.is_monotonic_increasing
    ordered = pd.concat([X, y, groups], axis=1).sort_values(["group", "x1"], ignore_index=True)
    shuffled = pd.concat([Xs, ys, gs], axis=1).sort_values(["group", "x1"], ignore_index=True)
    pd.testing.assert_frame_equal(ordered, shuffled)


def test_level2_constant_and_level1_varying_within_groups():
    X, _, groups = make_multilevel_regression(50, (2, 6), n_level1=2, n_level2=3, random_state=0)
    counts = X.groupby(groups).nunique()
    assert (counts[["z1", "z2", "z3"]] == 1).all().all()
    assert (counts[["x1", "x2"]].to_numpy() == sizes_of(groups)[:, None]).all()


def test_feature_icc_is_honoured():
    feature_icc = 0.3
    X, _, groups = make_multilevel_regression(
        2000, 30, n_level1=2, n_level2=1, feature_icc=feature_icc, random_state=0
    )
    sizes = sizes_of(groups)
    for column in ("x1", "x2"):
        model = fit_intercept_only(X[column], groups)
        assert abs(model.intercept_) < N_SE * np.sqrt((feature_icc + (1 - feature_icc) / 30) / 2000)
        assert_variances_recovered(model, sizes, feature_icc, 1.0 - feature_icc)
    # Level-2 predictors are standard normal across groups.
    z = X["z1"].groupby(groups).first()
    assert abs(z.var() - 1.0) < N_SE * np.sqrt(2.0 / 2000)


@pytest.mark.parametrize("group_size", [30, (5, 55)])
def test_true_parameters_recovered(group_size):
    X, y, groups, params = make_multilevel_regression(
        2000, group_size, n_level1=2, n_level2=1, icc=0.3, coef=[1.0, -0.5, 2.0],
        intercept=1.5, total_variance=2.0, feature_icc=0.2, return_params=True, random_state=7,
    )
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    vc = params["variance_components"]
    se = gls_se(X, groups, model.variance_components_["group"], model.variance_components_["residual"])
    estimate = np.concatenate([[model.intercept_], model.coef_])
    truth = np.concatenate([[params["intercept"]], params["coef"]])
    assert np.all(np.abs(estimate - truth) < N_SE * se), (estimate, truth, se)
    assert_variances_recovered(model, sizes_of(groups), vc["group"], vc["residual"])


# scikit-learn's InvalidParameterError names the parameter, what is allowed and what
# was given; the checks of group_size's tuple and array forms and of coef are ours.
RANDOM_STATES = (
    "None, an int in the range [0, inf), an instance of 'numpy.random.mtrand.RandomState' or "
    "an instance of 'numpy.random._generator.Generator'"
)
BOOLEAN = f"an instance of 'bool' or an instance of 'numpy.{np.bool_.__qualname__}'"


def invalid(function, name, allowed, value):
    """The whole of scikit-learn's message for a parameter that breaks its constraint."""
    message = f"The {name!r} parameter of {function} must be {allowed}. Got {value!r} instead."
    return f"^{re.escape(message)}$"


def bad(name, allowed, value):
    return {name: value}, invalid("make_multilevel_regression", name, allowed, value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        bad("n_groups", "an int in the range [1, inf)", 0),
        bad("n_groups", "an int in the range [1, inf)", 2.5),
        bad("n_level1", "an int in the range [0, inf)", -1),
        bad("n_level2", "an int in the range [0, inf)", 1.0),
        bad("group_size", "an int in the range [1, inf), an instance of 'tuple' or an array-like", 0),
        bad("group_size", "an int in the range [1, inf), an instance of 'tuple' or an array-like", 2.5),
        ({"group_size": (0, 4)}, r"1 <= low <= high; got \(0, 4\)"),
        ({"group_size": (6, 4)}, r"1 <= low <= high; got \(6, 4\)"),
        ({"group_size": (2, 4, 6)}, r"must be \(low, high\), two integers"),
        ({"group_size": (2.0, 4)}, r"must be \(low, high\), two integers"),
        ({"n_groups": 3, "group_size": [2, 0, 4]}, "every group size must be >= 1"),
        ({"n_groups": 3, "group_size": [2, 4]}, r"3 integers \(one per group\).*shape \(2,\)"),
        ({"n_groups": 3, "group_size": [2.5, 3, 4]}, "dtype float64"),
        bad("icc", "a float in the range [0.0, 1.0)", 1.0),
        bad("icc", "a float in the range [0.0, 1.0)", -0.1),
        bad("icc", "a float in the range [0.0, 1.0)", np.nan),
        bad("feature_icc", "a float in the range [0.0, 1.0)", 1.0),
        bad("total_variance", "a float in the range (0.0, inf)", 0.0),
        bad("total_variance", "a float in the range (0.0, inf)", np.inf),
        bad("intercept", "a float in the range (-inf, inf)", np.nan),
        ({"coef": [1.0, 2.0]}, r"coef must hold 3 finite numbers.*got shape \(2,\)"),
        ({"coef": [1.0, np.nan, 2.0]}, "coef must hold 3 finite numbers"),
        bad("coef", "an array-like or None", "abc"),
        bad("shuffle", BOOLEAN, 1),
        bad("return_params", BOOLEAN, "yes"),
        bad("random_state", RANDOM_STATES, -1),
        bad("random_state", RANDOM_STATES, 1.5),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_multilevel_regression(**kwargs)


# make_pisa_like ------------------------------------------------------------------


def test_pisa_like_default_shape_and_columns():
    frame = make_pisa_like()
    assert list(frame.columns) == ["school", "math", "desk", "escs", "stratio"]
    assert frame["school"].nunique() == 164
    # Sizes uniform on 5..54: the total is 4,838 in expectation, with sd 185.
    assert abs(len(frame) - 164 * 29.5) < N_SE * np.sqrt(164 * (50**2 - 1) / 12)
    sizes = frame.groupby("school").size()
    assert sizes.between(5, 54).all() and sizes.min() < 10  # unbalanced, some small
    assert pd.api.types.is_string_dtype(frame["school"])
    assert frame["school"].iloc[0] == "S001" and frame["school"].iloc[-1] == "S164"
    assert (frame[["math", "escs", "stratio"]].dtypes == np.float64).all()
    assert pd.api.types.is_integer_dtype(frame["desk"])
    assert set(frame["desk"].unique()) == {0, 1}
    assert (frame.groupby("school")["stratio"].nunique() == 1).all()
    assert frame["stratio"].between(5, 25).all()
    assert abs(frame["math"].mean() - 477.14) < 15  # 4 SE of a mean over 164 schools


def test_pisa_like_is_deterministic():
    pd.testing.assert_frame_equal(make_pisa_like(), make_pisa_like())
    pd.testing.assert_frame_equal(make_pisa_like(50, random_state=1), make_pisa_like(50, random_state=1))
    assert not make_pisa_like(50, random_state=1).equals(make_pisa_like(50, random_state=2))


@pytest.mark.parametrize(
    "name, allowed, value",
    [
        ("n_schools", "an int in the range [1, inf)", 0),
        ("n_schools", "an int in the range [1, inf)", 10.0),
        ("random_state", RANDOM_STATES, "2018"),
        ("return_params", BOOLEAN, None),
    ],
)
def test_pisa_like_bad_arguments_raise(name, allowed, value):
    with pytest.raises(ValueError, match=invalid("make_pisa_like", name, allowed, value)):
        make_pisa_like(**{name: value})


def test_pisa_like_params():
    frame, params = make_pisa_like(20, return_params=True)
    assert list(params["coef"].index) == ["desk", "escs", "stratio"]
    np.testing.assert_allclose(params["coef"], [8.77, 25.0, 0.55])
    assert params["marginal_variance_components"] == {"group": 1524.0, "residual": 6608.0}
    vc = params["variance_components"]
    assert vc["group"] < 1524.0 and vc["residual"] < 6608.0
    assert params["random_effects"].shape == (20,)


def test_pisa_like_reproduces_the_seed_models():
    n_schools = 10_000
    frame, params = make_pisa_like(n_schools, random_state=0, return_params=True)
    y, school = frame["math"], frame["school"]
    sizes = sizes_of(school)

    rim0 = fit_intercept_only(y, school)
    vc0 = rim0.variance_components_
    se0 = gls_se(np.empty((len(y), 0)), school, vc0["group"], vc0["residual"])
    assert abs(rim0.intercept_ - 477.14) < N_SE * se0[0]
    assert_variances_recovered(rim0, sizes, 1524.0, 6608.0)
    assert abs(rim0.icc_ - 1524.0 / 8132.0) < 0.01

    def fit(columns):
        X = frame[columns]
        model = RandomInterceptRegressor().fit(X, y, groups=school)
        vc = model.variance_components_
        return model, gls_se(X, school, vc["group"], vc["residual"])[1:]

    rim1, se1 = fit(["desk", "escs"])
    assert abs(rim1.coef_[0] - 8.77) < N_SE * se1[0]
    assert abs(rim1.coef_[1] - 25.0) < N_SE * se1[1]

    rim2, se2 = fit(["desk", "escs", "stratio"])
    assert np.all(np.abs(rim2.coef_ - params["coef"].to_numpy()) < N_SE * se2)
    vc = params["variance_components"]
    assert_variances_recovered(rim2, sizes, vc["group"], vc["residual"])


def test_make_longitudinal_recovers_its_parameters_and_is_reproducible():
    from skhlm import LinearMixedRegressor
    from skhlm.datasets import make_longitudinal

    X, y, subject, params = make_longitudinal(n_subjects=400, missing=0.2, return_params=True, random_state=1)
    again = make_longitudinal(n_subjects=400, missing=0.2, random_state=1)
    pd.testing.assert_series_equal(again[1], y)
    assert subject.value_counts().min() >= 2 and 0.7 < len(y) / 4000 < 0.9
    assert list(X.columns) == ["time"] and y.name == "y" and subject.name == "subject"
    model = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
    assert model.intercept_ == pytest.approx(params["intercept"], abs=4 * 1.3)  # SE ~ sqrt(612 / 400)
    assert model.coef_[0] == pytest.approx(params["slope"], abs=4 * 0.3)
    sigma = model.variance_components_["group"]
    assert sigma[0, 0] == pytest.approx(612.1, rel=0.25) and sigma[1, 1] == pytest.approx(35.1, rel=0.25)
    assert model.variance_components_["residual"] == pytest.approx(654.9, rel=0.1)
    # The simulated effects are the truth the BLUPs estimate: they correlate.
    truth = params["random_effects"][model.groups_.astype(int)]
    assert np.corrcoef(truth[:, 1], model.random_effects_[:, 1])[0, 1] > 0.8


def test_make_longitudinal_refuses_a_covariance_that_is_not_one():
    from skhlm.datasets import make_longitudinal

    with pytest.raises(ValueError, match="symmetric 2 x 2"):
        make_longitudinal(covariance=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="positive semi-definite"):
        make_longitudinal(covariance=[[1.0, 2.0], [2.0, 1.0]])
