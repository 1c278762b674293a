"""MixedEffectsRegressor: the linear anchor, honest variance components, sklearn glue."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import (
    BaggingRegressor,
    ExtraTreesRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.linear_model import ElasticNet, LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from skhlm import MixedEffectsRegressor, RandomInterceptRegressor
from skhlm._crossfit import _cross_fit, _learner_variance, group_halves, warm_startable

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


@pytest.fixture
def intercept_start(monkeypatch):
    """The rounds start from the intercepts of y alone (lmer(y ~ 1 + (1 | g))), far
    from the fixed point when X varies between groups: the alternation itself."""
    import skhlm._mixed as mixed

    def start(X, y, coding, limits):
        return mixed.residual_model(y, coding, True, limits).random_effects[0]

    monkeypatch.setattr(mixed, "starting_intercepts", start)


def test_the_objective_rises_round_by_round_for_a_linear_learner(linear_data, intercept_start):
    X, y, groups = linear_data
    model = MixedEffectsRegressor(max_iter=30, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=30 rounds"):
        model.fit(X, y, groups=groups)
    history = model.log_likelihood_history_
    assert history.shape == (30,) and model.n_iter_ == 30 and not model.converged_
    assert np.all(np.diff(history) >= -1e-9)  # coordinate ascent of the ML likelihood
    assert history[-1] - history[0] > 0.1
    # From there too, the alternation reaches lme4's ML fit.
    far = MixedEffectsRegressor(max_iter=2000, tol=1e-12).fit(X, y, groups=groups)
    ml = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    assert far.n_iter_ > 30
    np.testing.assert_allclose(far.random_effects_, ml.random_effects_, rtol=1e-6, atol=1e-8)


def test_the_default_stops_on_tol(linear_data, intercept_start):
    X, y, groups = linear_data
    loose = MixedEffectsRegressor(tol=0.05).fit(X, y, groups=groups)
    tight = MixedEffectsRegressor(tol=1e-4, max_iter=500).fit(X, y, groups=groups)
    assert loose.converged_ and tight.converged_
    assert loose.n_iter_ < tight.n_iter_


def test_the_rounds_start_from_the_linear_mixed_models_intercepts(record_calls, linear_data):
    import skhlm._mixed as mixed
    from sklearn.linear_model import LinearRegression

    X, y, groups = linear_data
    calls = record_calls(mixed, "residual_model")
    tree = DecisionTreeRegressor(max_depth=3)
    model = MixedEffectsRegressor(tree, residuals="in-sample", max_iter=1, tol=1.0)
    with pytest.warns(UserWarning, match=r"Column\(s\) \[1\] of X are constant within every group"):
        model.fit(X, y, groups=groups)  # the level-2 column
    assert model.n_iter_ == 1 and len(calls) == 2
    np.testing.assert_array_equal(calls[0][0], y)  # first: y itself, no learner yet
    # lmer(y ~ x + (1 | g), REML = FALSE): its intercepts are the first round's.
    start = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    target = y - start.random_effects_[groups]
    expected = DecisionTreeRegressor(max_depth=3).fit(X, target)
    np.testing.assert_allclose(model.estimator_.predict(X), expected.predict(X), rtol=1e-12)
    # For a linear learner that start is the fixed point: one round is lme4's fit.
    linear = MixedEffectsRegressor(tol=1e-9).fit(X, y, groups=groups)
    assert linear.n_iter_ == 1 and linear.converged_
    np.testing.assert_allclose(linear.estimator_.coef_, start.coef_, rtol=1e-8)
    np.testing.assert_allclose(linear.random_effects_, start.random_effects_, rtol=1e-8, atol=1e-10)
    assert isinstance(linear.estimator_, LinearRegression)


def test_the_start_uses_the_numeric_finite_columns_or_none():
    import skhlm._mixed as mixed

    frame = pd.DataFrame({
        "a": [1.0, 2.0, 3.0, 4.0],
        "b": pd.array([1, None, 3, 4], dtype="Int64"),  # missing: left out
        "c": ["x", "y", "x", "y"],
        "d": [1, 2, 2, 1],
        "e": [0.5, np.inf, 1.0, 2.0],
    })
    values, names = mixed.numeric_columns(frame)
    assert names == ["a", "d"] and values.dtype == np.float64
    np.testing.assert_array_equal(values, [[1, 1], [2, 2], [3, 2], [4, 1]])
    array = np.array([[1.0, np.nan], [2.0, 3.0]])
    values, names = mixed.numeric_columns(array)
    assert names == [0] and values.tolist() == [[1.0], [2.0]]
    assert mixed.numeric_columns(np.array([["a"], ["b"]]))[1] == []
    for no_numbers in (np.array([["a"], ["b"]]), pd.DataFrame({"c": ["x", "y"], "k": pd.Categorical(["u", "v"])})):
        values, names = mixed.numeric_columns(no_numbers)
        assert values.shape == (2, 0) and names == []
    values, names = mixed.numeric_columns(np.array([[True, False], [False, False]]))
    assert values.dtype == np.float64 and values.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # No usable column, too many, or a y that X fits exactly: y's own intercepts.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 10)
    y = rng.normal(size=20)[groups] + rng.normal(size=200)
    from skhlm.data.groups import encode_groups
    from skhlm.engine.em import Limits

    coding = encode_groups(groups, 200)
    alone = mixed.residual_model(y, coding, True, Limits()).random_effects[0]
    for X in (np.empty((200, 0)), rng.normal(size=(200, mixed._LINEAR_START_MAX_COLUMNS + 1)),
              np.column_stack([y, rng.normal(size=200)])):
        np.testing.assert_array_equal(mixed.starting_intercepts(X, y, coding, Limits()), alone)
    strings = pd.DataFrame({"c": np.where(rng.random(200) < 0.5, "x", "y")})
    np.testing.assert_array_equal(mixed.starting_intercepts(strings, y, coding, Limits()), alone)
    # One column, two, and as many as the start takes (more rows than columns).
    for width in (1, 2, mixed._LINEAR_START_MAX_COLUMNS):
        n = 200 if width < 10 else 600
        many = np.repeat(np.arange(20), n // 20)
        yy = rng.normal(size=20)[many] + rng.normal(size=n)
        X = rng.normal(size=(n, width))
        with_x = RandomInterceptRegressor(method="ml").fit(X, yy, groups=many).random_effects_
        start = mixed.starting_intercepts(X, yy, encode_groups(many, n), Limits())
        np.testing.assert_allclose(start, with_x, rtol=1e-7, atol=1e-10)


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


FITS = []


class RecordingElasticNet(ElasticNet):
    """ElasticNet that records, at each fit, which object fits and how it starts."""

    def fit(self, X, y):
        FITS.append((id(self), self.warm_start, hasattr(self, "coef_")))
        return super().fit(X, y)


@pytest.mark.filterwarnings("ignore:Column\\(s\\) \\[1\\] of X are constant")
def test_warm_starts_go_on_from_the_last_fit_where_the_learner_can(linear_data, intercept_start, monkeypatch):
    import skhlm._mixed as mixed

    assert warm_startable(HistGradientBoostingRegressor()) and warm_startable(ElasticNet())
    for learner in (RandomForestRegressor(), ExtraTreesRegressor(), BaggingRegressor(), LinearRegression()):
        assert not warm_startable(learner)  # no warm_start, or one that fits no new member
    # In-sample: the one learner is refitted from its last coefficients, and ends with
    # the user's warm_start; the fit is the one without warm starts.
    X, y, groups = linear_data
    learner = RecordingElasticNet(alpha=1e-3, tol=1e-12, max_iter=10000)
    FITS.clear()
    warm = MixedEffectsRegressor(learner, residuals="in-sample", max_iter=200, tol=1e-9).fit(X, y, groups=groups)
    assert warm.n_iter_ >= 3 and len(FITS) == warm.n_iter_
    assert len({fit[0] for fit in FITS}) == 1 and FITS[0][1:] == (False, False)
    assert all(fit[1:] == (True, True) for fit in FITS[1:])
    assert warm.estimator_.warm_start is False and learner.warm_start is False and not hasattr(learner, "coef_")
    monkeypatch.setattr(mixed, "warm_startable", lambda learner: False)
    FITS.clear()
    cold = MixedEffectsRegressor(learner, residuals="in-sample", max_iter=200, tol=1e-9).fit(X, y, groups=groups)
    assert len(FITS) == cold.n_iter_ and all(fit[1:] == (False, False) for fit in FITS)  # fresh clones
    np.testing.assert_allclose(warm.estimator_.coef_, cold.estimator_.coef_, rtol=1e-6)
    np.testing.assert_allclose(warm.random_effects_, cold.random_effects_, rtol=1e-6, atol=1e-9)


def test_cross_fitting_warm_starts_boosting_from_its_trees():
    X, y, groups = friedman_groups(4000, 40, s2u=1.7, s2e=4.0, seed=3)
    sizes = np.bincount(groups)
    halves = group_halves(groups, sizes, np.random.default_rng(0))
    boosting = HistGradientBoostingRegressor(max_iter=300, early_stopping=True, random_state=0)
    first, models = _cross_fit(boosting, X, y, halves)
    trees = [model.n_iter_ for model in models]
    before = [model.predict(X) for model in models]
    shifted = y + np.linspace(-1, 1, 40)[groups]
    second, again = _cross_fit(boosting, X, shifted, halves, previous=models)
    assert not hasattr(boosting, "n_iter_") and boosting.warm_start is False
    for model, kept, old in zip(again, trees, before):
        assert model in models and model.warm_start and model.n_iter_ >= kept
        # The first round's trees are kept: its prediction is a stage of the new one.
        stages = list(model.staged_predict(X))
        np.testing.assert_array_equal(stages[kept - 1], old)
    for rows, other, model in ((halves[0], halves[1], again[0]), (halves[1], halves[0], again[1])):
        np.testing.assert_array_equal(second[other], model.predict(X[other]))


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
