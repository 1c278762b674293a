"""MixedEffectsRegressor: the linear anchor, honest variance components, sklearn glue."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor

from skhlm import MixedEffectsRegressor, RandomInterceptRegressor
from skhlm._mixed import _cross_fit, _learner_variance, group_halves

from conftest import simulate_multilevel


@pytest.fixture
def linear_data():
    # A level-1 and a level-2 column: the alternation of a linear learner and the
    # intercepts is slow when X varies between groups, the hard case for the anchor.
    return simulate_multilevel(0, coef=[1.5, -1.0], n_groups=60, sizes=(3, 15), intercept=2.0)


def test_the_linear_learner_gives_lme4s_ml_fit(linear_data):
    X, y, groups = linear_data
    model = MixedEffectsRegressor(max_iter=2000, tol=1e-12).fit(X, y, groups=groups)
    ml = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    assert model.converged_ and model.learner_variance_ == 0.0
    for key in ("group", "residual"):
        assert model.variance_components_[key] == pytest.approx(ml.variance_components_[key], rel=1e-6)
    np.testing.assert_allclose(model.estimator_.coef_, ml.coef_, rtol=1e-6)
    np.testing.assert_allclose(model.random_effects_, ml.random_effects_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model.random_effects_var_, ml.random_effects_var_, rtol=1e-6)
    np.testing.assert_array_equal(model.groups_, ml.groups_)
    given = np.concatenate([groups[:20], [999] * 5])
    np.testing.assert_allclose(model.predict(X[:25], groups=given), ml.predict(X[:25], groups=given), rtol=1e-6)
    assert model.log_likelihood_history_[-1] == pytest.approx(ml.log_likelihood_, rel=1e-9)


def test_the_objective_rises_round_by_round_for_a_linear_learner(linear_data):
    X, y, groups = linear_data
    model = MixedEffectsRegressor(max_iter=30, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=30 rounds"):
        model.fit(X, y, groups=groups)
    history = model.log_likelihood_history_
    assert history.shape == (30,) and model.n_iter_ == 30 and not model.converged_
    assert np.all(np.diff(history) >= -1e-9)  # coordinate ascent of the ML likelihood
    assert history[-1] - history[0] > 0.1


def test_the_rounds_start_from_the_intercepts_of_y(record_calls, linear_data):
    import skhlm._mixed as mixed
    from sklearn.linear_model import LinearRegression

    X, y, groups = linear_data
    calls = record_calls(mixed, "residual_model")
    model = MixedEffectsRegressor(max_iter=1, tol=1.0).fit(X, y, groups=groups)
    assert model.n_iter_ == 1 and len(calls) == 2
    np.testing.assert_array_equal(calls[0][0], y)  # first: y itself, no learner yet
    start = RandomInterceptRegressor(method="ml").fit(np.empty((y.size, 0)), y, groups=groups)
    target = y - start.random_effects_[groups]
    residuals = y - LinearRegression().fit(X, target).predict(X)
    np.testing.assert_allclose(calls[1][0], residuals, rtol=1e-9, atol=1e-9)


def test_the_default_stops_on_tol(linear_data):
    X, y, groups = linear_data
    loose = MixedEffectsRegressor(tol=0.05).fit(X, y, groups=groups)
    tight = MixedEffectsRegressor(tol=1e-4, max_iter=500).fit(X, y, groups=groups)
    assert loose.converged_ and tight.converged_
    assert loose.n_iter_ < tight.n_iter_


def friedman_groups(n, n_groups, s2u, s2e, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 5))
    f = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]
    groups = rng.integers(0, n_groups, n)
    y = f + rng.normal(0, np.sqrt(s2u), n_groups)[groups] + rng.normal(0, np.sqrt(s2e), n)
    return X, y, groups


def test_cross_fitted_residuals_give_honest_variance_components_where_in_sample_ones_do_not():
    # A forest of deep trees fits much of the noise of the rows it saw: its in-sample
    # residuals shrink s2e (MERF's flaw), its cross-fitted ones do not.  The fixed
    # part is a step function, which trees fit without bias.
    rng = np.random.default_rng(1)
    n, n_groups = 6000, 60
    X = rng.uniform(size=(n, 3))
    groups = rng.integers(0, n_groups, n)
    f = 3.0 * (X[:, 0] > 0.5) + 2.0 * (X[:, 1] > 0.3) - 2.0 * (X[:, 2] > 0.7)
    y = f + rng.normal(0, np.sqrt(1.7), n_groups)[groups] + rng.normal(0, 2.0, n)
    forest = RandomForestRegressor(n_estimators=25, min_samples_leaf=3, random_state=0)
    with warnings.catch_warnings():
        # The forest moves the intercepts a little with every refit: the rounds stop
        # at that floor, well before max_iter.
        warnings.simplefilter("error", ConvergenceWarning)
        honest = MixedEffectsRegressor(forest, random_state=0).fit(X, y, groups=groups)
    assert honest.converged_ and 2 <= honest.n_iter_ <= 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        naive = MixedEffectsRegressor(forest, residuals="in-sample").fit(X, y, groups=groups)
    assert honest.learner_variance_ > 0.1 and naive.learner_variance_ == 0.0
    assert honest.variance_components_["residual"] == pytest.approx(4.0, rel=0.1)
    assert honest.variance_components_["group"] == pytest.approx(1.7, rel=0.3)
    assert naive.variance_components_["residual"] < 0.6 * 4.0  # visibly off
    # The learner that predicts is fitted on every row, to y minus the intercepts.
    assert honest.estimator_.n_features_in_ == 3
    assert honest.estimator_ is not forest and not hasattr(forest, "estimators_")


def test_boosting_with_random_intercepts_beats_boosting_alone_on_seen_groups():
    X, y, groups = friedman_groups(8000, 80, s2u=1.7, s2e=4.0, seed=2)
    train, test = np.arange(6000), np.arange(6000, 8000)
    boosting = HistGradientBoostingRegressor(max_iter=60, random_state=0)
    model = MixedEffectsRegressor(boosting, random_state=0).fit(X[train], y[train], groups=groups[train])
    alone = clone(boosting).fit(X[train], y[train])

    def rmse(pred):
        return np.sqrt(np.mean((pred - y[test]) ** 2))

    mixed, plain = rmse(model.predict(X[test], groups=groups[test])), rmse(alone.predict(X[test]))
    assert mixed < 0.9 * plain  # the intercepts carry the group effects boosting cannot see
    # For a group not seen in fit, the learner's prediction alone.
    np.testing.assert_array_equal(
        model.predict(X[test], groups=np.full(test.size, -1)), model.estimator_.predict(X[test])
    )


def test_group_halves_keep_each_group_whole_and_balance_the_rows():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 30, 500)
    sizes = np.bincount(codes)
    halves = group_halves(codes, sizes, np.random.RandomState(0))
    assert sorted(np.concatenate(halves).tolist()) == list(range(500))
    assert not set(codes[halves[0]]) & set(codes[halves[1]])  # no group in both
    assert abs(halves[0].size - halves[1].size) <= sizes.max()
    again = group_halves(codes, sizes, np.random.RandomState(0))
    assert all(np.array_equal(a, b) for a, b in zip(halves, again))
    other = group_halves(codes, sizes, np.random.RandomState(1))
    assert not np.array_equal(halves[0], other[0])
    for extreme in ([100, 1, 1], [1, 1, 100], [1, 100], [5, 5]):  # both halves hold a group
        sizes = np.array(extreme)
        codes = np.repeat(np.arange(sizes.size), sizes)
        for seed in range(6):
            first, second = group_halves(codes, sizes, np.random.RandomState(seed))
            assert first.size and second.size


def test_cross_fit_predicts_each_row_from_the_other_half_and_measures_the_learner():
    X = np.zeros((6, 1))
    target = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    halves = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    prediction, models = _cross_fit(DummyRegressor(), X, target, halves)
    np.testing.assert_array_equal(prediction, [20.0, 20.0, 20.0, 2.0, 2.0, 2.0])
    assert [m.constant_[0][0] for m in models] == [2.0, 20.0]
    assert _learner_variance(models, X, halves, prediction) == pytest.approx(0.5 * 18.0**2)
    uneven = [np.array([0, 1]), np.array([2, 3, 4, 5])]  # rows 2-5 average 15.75
    prediction, models = _cross_fit(DummyRegressor(), X, target, uneven)
    assert _learner_variance(models, X, uneven, prediction) == pytest.approx(0.5 * (15.75 - 1.5) ** 2)


class _RecordsX(RegressorMixin, BaseEstimator):
    """A learner that keeps the type of the X it was fitted on."""

    def fit(self, X, y):
        self.seen_ = type(X)
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_the_learner_gets_x_as_given_without_the_group_column():
    df = pd.DataFrame({"x": np.arange(40.0), "c": pd.Categorical(list("ab") * 20), "g": np.arange(40) % 8})
    y = np.arange(40.0) % 8 + np.random.default_rng(0).normal(size=40)
    model = MixedEffectsRegressor(_RecordsX(), group_column="g").fit(df, y)
    assert model.estimator_.seen_ is pd.DataFrame
    np.testing.assert_array_equal(model.feature_names_in_, ["x", "c"])
    assert model.predict(df).shape == (40,)


def test_predict_seen_new_and_no_groups(linear_data):
    X, y, groups = linear_data
    model = MixedEffectsRegressor().fit(X, y, groups=groups)
    base = model.estimator_.predict(X[:3])
    np.testing.assert_allclose(model.predict(X[:3], groups=groups[:3]), base + model.random_effects_[groups[:3]])
    with pytest.warns(UserWarning, match="MixedEffectsRegressor.predict got no groups"):
        np.testing.assert_allclose(model.predict(X[:3]), base)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(model.predict(X[:3], groups=groups[:3], population=True), base)
    strict = MixedEffectsRegressor(unseen_groups="error").fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="not seen in fit"):
        strict.predict(X[:2], groups=[groups[0], 12345])


def test_without_groups_it_is_the_learner_alone(linear_data):
    X, y, _ = linear_data
    with pytest.warns(UserWarning, match="MixedEffectsRegressor.fit got no groups"):
        model = MixedEffectsRegressor().fit(X, y)
    assert model.groups_.size == 0 and model.random_effects_.size == 0
    assert model.variance_components_["group"] == 0.0
    np.testing.assert_allclose(model.predict(X), model.estimator_.predict(X))


def test_a_failed_fit_leaves_nothing_and_bad_input_is_named(linear_data):
    X, y, groups = linear_data
    model = MixedEffectsRegressor()
    with pytest.raises(ValueError, match="rows but y has"):
        model.fit(X, y[:-1], groups=groups)
    with pytest.raises(NotFittedError):
        model.predict(X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(X, np.where(np.arange(y.size) == 3, np.nan, y), groups=groups)
    assert not [k for k in vars(model) if k.endswith("_")]


# Ridge, cross-fitted, alternates slowly with linear_data's level-2 column; the test
# is about pickling and the model-selection glue.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_it_pickles_and_works_in_model_selection(linear_data):
    X, y, groups = linear_data
    model = MixedEffectsRegressor(Ridge(), residuals="cross-fitted", random_state=0)
    fitted = clone(model).fit(X, y, groups=groups)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X, groups=groups), fitted.predict(X, groups=groups))

    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(model, {"estimator__alpha": [0.1, 1e4]}, cv=GroupKFold(3))
        search.fit(X, y, groups=groups)
    assert search.best_params_["estimator__alpha"] == 0.1  # 1e4 shrinks the slopes away
    assert search.best_estimator_.estimator_.alpha == 0.1

    frame = pd.DataFrame(X, columns=["a", "b"]).assign(g=groups)
    by_column = MixedEffectsRegressor(group_column="g")
    predicted = cross_val_predict(by_column, frame, y, groups=groups, cv=GroupKFold(3))
    assert predicted.shape == y.shape and np.isfinite(predicted).all()


def test_a_column_that_identifies_the_groups_is_named():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 10)
    frame = pd.DataFrame({
        "student": rng.normal(size=400),
        "school_mean": rng.normal(size=40)[groups],  # a value of its own per school
        "school_type": (np.arange(40) % 2)[groups],  # school-level, but two values
    })
    y = frame["student"].to_numpy() + rng.normal(size=40)[groups] + rng.normal(size=400)
    tree = DecisionTreeRegressor(max_depth=3, random_state=0)
    with pytest.warns(UserWarning, match=r"\['school_mean'\] of X are constant within every group"):
        MixedEffectsRegressor(tree, random_state=0).fit(frame, y, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MixedEffectsRegressor(tree, random_state=0, max_iter=2).fit(frame.drop(columns="school_mean"), y, groups=groups)
        MixedEffectsRegressor().fit(frame, y, groups=groups)  # linear: it cannot absorb them
        MixedEffectsRegressor(Ridge(), max_iter=2).fit(frame, y, groups=groups)
    from skhlm._mixed import group_identifying_columns
    from skhlm.data.groups import encode_groups

    coding = encode_groups(groups, 400)
    assert group_identifying_columns(frame.to_numpy(), coding) == [1]
    assert group_identifying_columns(frame + 1e6, coding) == ["school_mean"]  # offsets cost no digits
