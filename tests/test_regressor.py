"""RandomInterceptRegressor: attributes, units, prediction, warnings."""

import warnings

import dense
import numpy as np
import pandas as pd
import pytest
from conftest import simulate_multilevel
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression

from skhlm import RandomInterceptRegressor


def clustered(seed=0, n_groups=30, s2u=1.0, offset=0.0):
    """30 groups of 3 to 19 rows; a level-1 column and a level-2 one of sd 10."""
    return simulate_multilevel(
        seed, n_groups=n_groups, sizes=(3, 20), intercept=2.0, coef=[1.5, -0.2], s2u=s2u,
        offset=offset, between_scale=10,
    )


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_log_likelihood_in_user_units_equals_dense(method, fit_intercept):
    X, y, codes = clustered(offset=100.0)
    model = RandomInterceptRegressor(method=method, fit_intercept=fit_intercept)
    model.fit(X, y, groups=codes)
    design = np.column_stack([np.ones(len(y)), X]) if fit_intercept else X
    beta = np.concatenate([[model.intercept_], model.coef_]) if fit_intercept else model.coef_
    s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
    if method == "ml":
        expected = dense.ml_log_likelihood(design, y, codes, beta, s2u, s2e)
    else:
        expected = dense.reml_log_likelihood(design, y, codes, s2u, s2e)
    assert model.log_likelihood_ == pytest.approx(expected, rel=1e-11)
    k = design.shape[1] + 2
    assert model.aic_ == pytest.approx(-2 * expected + 2 * k, rel=1e-11)
    assert model.bic_ == pytest.approx(-2 * expected + k * np.log(len(y)), rel=1e-11)
    assert model.log_likelihood_history_[-1] == model.log_likelihood_


def test_attributes_and_shapes():
    X, y, codes = clustered()
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    assert model.coef_.shape == (2,)
    assert isinstance(model.intercept_, float)
    assert set(model.variance_components_) == {"group", "residual"}
    s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
    assert model.icc_ == pytest.approx(s2u / (s2u + s2e))
    np.testing.assert_array_equal(model.groups_, np.arange(30))
    assert model.random_effects_.shape == (30,)
    assert model.n_features_in_ == 2
    assert not hasattr(model, "feature_names_in_")
    assert model.converged_ and not model.singular_
    assert 1 <= model.n_iter_ <= 20
    assert model.log_likelihood_history_.shape == (model.n_iter_,)


def test_predict_seen_new_and_no_groups():
    X, y, codes = clustered()
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    population = X @ model.coef_ + model.intercept_
    with pytest.warns(UserWarning, match="predict got no groups, so it returned population-level"):
        np.testing.assert_allclose(model.predict(X), population)
    np.testing.assert_allclose(model.predict(X, population=True), population)
    labels = np.where(np.arange(len(y)) % 2 == 0, codes, 1000 + codes)  # half new
    pred = model.predict(X, groups=labels)
    seen = labels < 1000
    np.testing.assert_allclose(pred[seen], population[seen] + model.random_effects_[codes[seen]])
    np.testing.assert_allclose(pred[~seen], population[~seen])


def test_blups_sum_of_residuals_shrunk():
    """u_j = s2u r_j / (s2e + n_j s2u) in user units: the partial-pooling formula."""
    X, y, codes = clustered()
    model = RandomInterceptRegressor(method="ml").fit(X, y, groups=codes)
    r = np.bincount(codes, weights=y - model.predict(X, population=True))
    n_j = np.bincount(codes)
    s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
    np.testing.assert_allclose(model.random_effects_, s2u * r / (s2e + n_j * s2u), rtol=1e-10)


def test_group_label_types_give_the_same_fit():
    X, y, codes = clustered()
    base = RandomInterceptRegressor().fit(X, y, groups=codes)
    strings = np.array([f"school-{c:03d}" for c in codes], dtype=object)
    categorical = pd.Categorical(codes, categories=np.arange(-5, 40))  # unused categories
    for labels in [strings, strings.astype(str), pd.Series(codes + 0.5), categorical]:
        model = RandomInterceptRegressor().fit(X, y, groups=labels)
        assert model.coef_ == pytest.approx(base.coef_, rel=1e-12)
        np.testing.assert_allclose(model.random_effects_, base.random_effects_, rtol=1e-10)
        assert len(model.groups_) == 30
        assert list(model.groups_) == sorted(model.groups_)
    model = RandomInterceptRegressor().fit(X, y, groups=strings)
    np.testing.assert_allclose(model.predict(X, groups=strings), base.predict(X, groups=codes))


def test_dataframe_features_and_intercept_only():
    X, y, codes = clustered()
    frame = pd.DataFrame(X, columns=["escs", "stratio"])
    model = RandomInterceptRegressor().fit(frame, y, groups=codes)
    assert list(model.feature_names_in_) == ["escs", "stratio"]
    null = RandomInterceptRegressor().fit(frame[[]], y, groups=codes)
    assert null.coef_.shape == (0,)
    assert null.n_features_in_ == 0
    assert null.predict(frame[[]], population=True) == pytest.approx(np.full(len(y), null.intercept_))
    # An intercept-only REML fit of a balanced layout: the intercept is the grand mean.
    balanced = np.repeat(np.arange(10), 5)
    yb = np.random.default_rng(1).normal(size=50) + balanced * 0.3
    fit = RandomInterceptRegressor().fit(np.empty((50, 0)), yb, groups=balanced)
    assert fit.intercept_ == pytest.approx(yb.mean(), rel=1e-12)


def test_no_groups_is_ordinary_least_squares_with_a_warning():
    X, y, codes = clustered()
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    ols = LinearRegression().fit(X, y)
    np.testing.assert_allclose(model.coef_, ols.coef_, rtol=1e-10)
    assert model.intercept_ == pytest.approx(ols.intercept_, rel=1e-10)
    assert model.variance_components_["group"] == 0.0
    assert model.groups_.size == 0
    np.testing.assert_allclose(model.predict(X, groups=codes), ols.predict(X), rtol=1e-10)


def test_boundary_fit_equals_linear_regression():
    rng = np.random.default_rng(105)
    codes = np.repeat(np.arange(30), 6)
    x = rng.normal(size=(180, 1))
    e = rng.normal(size=180)
    e -= 0.5 * (np.bincount(codes, weights=e) / 6)[codes]  # less between-group spread than chance
    y = 2.0 + 0.7 * x[:, 0] + e
    for method in ["reml", "ml"]:
        model = RandomInterceptRegressor(method=method).fit(x, y, groups=codes)
        ols = LinearRegression().fit(x, y)
        assert model.singular_ and model.n_iter_ == 1 and model.converged_
        assert model.variance_components_["group"] == 0.0
        np.testing.assert_array_equal(model.random_effects_, 0.0)
        np.testing.assert_allclose(model.coef_, ols.coef_, rtol=1e-10)
        assert model.intercept_ == pytest.approx(ols.intercept_, rel=1e-10)


def test_small_interior_optimum_is_not_singular():
    """lme4's isSingular: theta = sqrt(s2u / s2e) < 1e-4, i.e. s2u / s2e < 1e-8."""
    X, y, codes = clustered(seed=2, s2u=0.03277)  # just past the boundary: found by a search
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    ratio = model.variance_components_["group"] / model.variance_components_["residual"]
    assert 1e-7 < ratio < 1e-5 and ratio == pytest.approx(1.5457e-6, rel=1e-4)
    assert model.converged_ and model.n_iter_ > 1  # an interior optimum, not a boundary fit
    assert not model.singular_
    # ML's optimum for the same data is at the boundary: singular.
    ml = RandomInterceptRegressor(method="ml").fit(X, y, groups=codes)
    assert ml.variance_components_["group"] == 0.0 and ml.singular_


def test_convergence_warning_only_when_max_iter_is_reached():
    X, y, codes = clustered(s2u=0.05)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model = RandomInterceptRegressor(max_iter=1, tol=1e-14).fit(X, y, groups=codes)
    assert model.converged_ is False and model.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = RandomInterceptRegressor().fit(X, y, groups=codes)
    assert model.converged_ is True


def test_verbose_prints_each_iteration(capsys):
    X, y, codes = clustered()
    model = RandomInterceptRegressor(verbose=1).fit(X, y, groups=codes)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("EM iteration")]
    assert len(lines) == model.n_iter_


def test_large_offsets_cost_no_accuracy():
    X, y, codes = clustered()
    base = RandomInterceptRegressor().fit(X, y, groups=codes)
    shifted = RandomInterceptRegressor().fit(X + 1e6, y + 1e8, groups=codes)
    np.testing.assert_allclose(shifted.coef_, base.coef_, rtol=1e-7)
    assert shifted.variance_components_["group"] == pytest.approx(base.variance_components_["group"], rel=1e-6)
    assert shifted.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-9)


def test_bad_groups_are_refused():
    X, y, codes = clustered()
    with pytest.raises(ValueError, match="at least 2 groups"):
        RandomInterceptRegressor().fit(X, y, groups=np.zeros(len(y)))
    with pytest.raises(ValueError, match="not identifiable"):
        RandomInterceptRegressor().fit(X, y, groups=np.arange(len(y)))
    with pytest.raises(ValueError, match=f"groups has 3 labels but X has {len(y)} rows"):
        RandomInterceptRegressor().fit(X, y, groups=[1, 2, 3])
    with pytest.raises(ValueError, match="1 missing label"):
        RandomInterceptRegressor().fit(X, y, groups=np.where(np.arange(len(y)) == 4, None, codes))
    with pytest.raises(ValueError, match="must be 1-D"):
        RandomInterceptRegressor().fit(X, y, groups=np.column_stack([codes, codes]))
    with pytest.raises(ValueError, match="method"):
        RandomInterceptRegressor(method="bayes").fit(X, y, groups=codes)


@pytest.mark.parametrize("high", [5, 1000, 10**9])  # the last is too sparse for a table
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16])
def test_integer_group_codes_equal_pandas_factorize(high, dtype):
    from skhlm.data.groups import encode_groups

    labels = np.random.default_rng(high).integers(0, min(high, np.iinfo(dtype).max), size=500).astype(dtype)
    expected_codes, expected_levels = pd.factorize(labels, sort=True)
    # The same labels as strings take the pandas path; both must agree with factorize.
    for given in [labels, np.char.zfill(labels.astype(str), 10)]:
        coding = encode_groups(given, labels.size)
        np.testing.assert_array_equal(coding.level[coding.codes], expected_codes)
        np.testing.assert_array_equal(coding.levels.astype(labels.dtype), expected_levels)
        # Groups numbered by size, ties in label order.
        sizes = np.bincount(expected_codes)
        np.testing.assert_array_equal(coding.sizes, sizes[coding.level])
        order = np.lexsort([np.arange(sizes.size), sizes])
        np.testing.assert_array_equal(coding.level, order)
    assert encode_groups(labels, labels.size).levels.dtype == np.asarray(expected_levels).dtype


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 1000, 100_001])
@pytest.mark.parametrize("ties", [False, True])
def test_residual_quartiles_equal_numpy_quantile(n, ties):
    from skhlm.inference.residuals import quartiles as _quartiles

    values = np.random.default_rng(n).normal(size=n)
    if ties:
        values = np.round(values)
    expected = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    # The same interpolation, written differently: equal up to an ulp.
    np.testing.assert_allclose(_quartiles(values.copy()), expected, rtol=1e-15, atol=1e-15)


def test_groups_are_numbered_by_size_also_beyond_16_bits():
    from skhlm.data.groups import _size_order

    sizes = np.array([70_000, 3, 70_000, 1, 2**16, 3])
    level, rank, sorted_sizes = _size_order(sizes)
    assert level.tolist() == [3, 1, 5, 4, 0, 2]
    np.testing.assert_array_equal(rank[level], np.arange(6))
    np.testing.assert_array_equal(sorted_sizes, sizes[level])


def test_nullable_integer_labels_with_na_are_reported_missing():
    from skhlm.data.groups import encode_groups

    X, y = np.array([[0.5], [1.0], [0.2], [0.7], [0.9], [0.1]]), np.arange(6.0)
    labels = pd.Series([0, 0, 1, 1, 2, None], dtype="Int64")
    with pytest.raises(ValueError, match="1 missing label"):
        RandomInterceptRegressor().fit(X, y, groups=labels)
    coding = encode_groups(labels.fillna(2), 6)  # without NA: the pandas path
    assert coding.levels.tolist() == [0, 1, 2] and coding.sizes.tolist() == [2, 2, 2]


def test_few_large_groups_are_numbered_by_size():
    from skhlm.data.groups import _size_order

    level, rank, sorted_sizes = _size_order(np.array([20_000_000, 3, 20_000_000]))
    assert level.tolist() == [1, 0, 2] and sorted_sizes.tolist() == [3, 20_000_000, 20_000_000]
