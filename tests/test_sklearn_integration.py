"""RandomInterceptRegressor inside scikit-learn's tools, each run end to end.

Groups reach the estimator by metadata routing or through ``group_column``; every
test checks the numbers against a hand-written loop or a direct fit.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_multilevel_regression


@pytest.fixture(scope="module")
def data():
    """Schools with string labels and a clear ICC (0.5), in random row order."""
    X, y, groups = make_multilevel_regression(
        n_groups=40, group_size=(10, 30), n_level1=2, n_level2=1, icc=0.5,
        coef=[1.0, -0.5, 0.8], intercept=3.0, total_variance=4.0, shuffle=True, random_state=7,
    )
    return X, y, groups.map(lambda g: f"school-{g:02d}")


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def with_column(X, groups):
    return X.assign(school=groups.to_numpy())


def manual_cv(model, X, y, groups, cv, split_groups=None):
    """Out-of-fold conditional predictions by a plain loop."""
    pred = np.empty(len(y))
    for train, test in cv.split(X, y, split_groups):
        fitted = clone(model).fit(X.iloc[train], y.iloc[train], groups=groups.iloc[train])
        pred[test] = fitted.predict(X.iloc[test], groups=groups.iloc[test])
    return pred


def test_pipeline_with_groups(data, routing):
    X, y, groups = data
    pipe = make_pipeline(StandardScaler(), RandomInterceptRegressor())
    pipe.fit(X, y, groups=groups)
    direct = RandomInterceptRegressor().fit(StandardScaler().fit_transform(X), y, groups=groups)
    np.testing.assert_allclose(pipe.predict(X, groups=groups), direct.predict(
        StandardScaler().fit(X).transform(X), groups=groups), rtol=1e-10)
    assert pipe.score(X, y, groups=groups) == pytest.approx(direct.score(
        StandardScaler().fit(X).transform(X), y, groups=groups), rel=1e-12)


def test_pipeline_with_step_parameters_and_no_routing(data):
    X, y, groups = data
    pipe = Pipeline([("scale", StandardScaler()), ("hlm", RandomInterceptRegressor())])
    pipe.fit(X, y, hlm__groups=groups)
    conditional = pipe.predict(X, groups=groups)  # predict params go to the last step
    population = pipe.predict(X, population=True)
    with pytest.warns(UserWarning, match="predict got no groups"):
        np.testing.assert_array_equal(pipe.predict(X), population)
    assert r2_score(y, conditional) > r2_score(y, population) + 0.2


def test_cross_validate_group_kfold_with_routing(data, routing):
    X, y, groups = data
    cv = GroupKFold(n_splits=4)
    # Scorers call predict without groups, even with routing: it says so.
    with pytest.warns(UserWarning, match="predict got no groups"):
        result = cross_validate(
            RandomInterceptRegressor(), X, y, cv=cv, params={"groups": groups},
            scoring=["r2", "neg_mean_squared_error"], return_estimator=True, return_indices=True,
        )
    for k, (train, test) in enumerate(zip(result["indices"]["train"], result["indices"]["test"])):
        assert set(groups.iloc[train]).isdisjoint(groups.iloc[test])  # the splitter got groups
        fitted = result["estimator"][k]
        assert set(fitted.groups_) == set(groups.iloc[train])  # and so did the model
        # Scorers call predict without groups: population-level, as for new schools.
        expected = r2_score(y.iloc[test], fitted.predict(X.iloc[test], population=True))
        assert result["test_r2"][k] == pytest.approx(expected, rel=1e-12)
        mse = np.mean((y.iloc[test] - fitted.predict(X.iloc[test], population=True)) ** 2)
        assert result["test_neg_mean_squared_error"][k] == pytest.approx(-mse, rel=1e-12)


def population_scores(model, X, y, groups, cv):
    """Per-fold R^2 of population-level predictions (what scorers see), by a loop."""
    scores = []
    for train, test in cv.split(X, y, groups):
        fitted = clone(model).fit(X.iloc[train], y.iloc[train], groups=groups.iloc[train])
        scores.append(r2_score(y.iloc[test], fitted.predict(X.iloc[test], population=True)))
    return np.array(scores)


def test_cross_val_score_with_routing(data, routing):
    X, y, groups = data
    # The estimator's own score gets the routed groups: unseen in the fold, so the
    # predictions are population-level, with no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = cross_val_score(RandomInterceptRegressor(), X, y, cv=GroupKFold(3), params={"groups": groups})
    expected = population_scores(RandomInterceptRegressor(), X, y, groups, GroupKFold(3))
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_grid_search_over_method_with_routing(data, routing):
    X, y, groups = data
    search = GridSearchCV(RandomInterceptRegressor(), {"method": ["reml", "ml"]}, cv=GroupKFold(4))
    search.fit(X, y, groups=groups)
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        expected = population_scores(RandomInterceptRegressor(**params), X, y, groups, GroupKFold(4))
        assert score == pytest.approx(expected.mean(), rel=1e-12)
    assert set(search.best_estimator_.groups_) == set(groups)  # refit on all, with groups
    refit = RandomInterceptRegressor(**search.best_params_).fit(X, y, groups=groups)
    np.testing.assert_allclose(search.best_estimator_.coef_, refit.coef_, rtol=1e-12)


def test_randomized_search_with_routing(data, routing):
    X, y, groups = data
    search = RandomizedSearchCV(
        RandomInterceptRegressor(), {"method": ["reml", "ml"], "fit_intercept": [True, False]},
        n_iter=3, cv=GroupKFold(3), random_state=0,
    )
    search.fit(X, y, groups=groups)
    assert search.best_params_["fit_intercept"] is True  # the data have an intercept of 3
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        expected = population_scores(RandomInterceptRegressor(**params), X, y, groups, GroupKFold(3))
        assert score == pytest.approx(expected.mean(), rel=1e-12)


def test_grid_search_with_group_column_and_no_routing(data):
    X, y, groups = data
    Xg = with_column(X, groups)
    search = GridSearchCV(
        RandomInterceptRegressor(group_column="school"), {"method": ["reml", "ml"]}, cv=KFold(4)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the groups reach predict: nothing to say
        search.fit(Xg, y)
    best = search.best_estimator_
    assert list(best.feature_names_in_) == ["x1", "x2", "z1"]
    # score() read the groups from the column: conditional R^2 of each fold.
    model = RandomInterceptRegressor(method=search.best_params_["method"])
    folds = KFold(4).split(X)
    expected = np.mean([
        r2_score(y.iloc[test], clone(model).fit(X.iloc[train], y.iloc[train], groups=groups.iloc[train])
                 .predict(X.iloc[test], groups=groups.iloc[test]))
        for train, test in folds
    ])
    assert search.best_score_ == pytest.approx(expected, rel=1e-12)
    assert best.score(Xg, y) > r2_score(y, best.predict(X.assign(school="new"))) + 0.2


def test_cross_val_predict_says_when_the_groups_miss_predict(data, routing):
    """With routing, cross_val_predict gives fit the groups but not predict: the
    predictions are population-level, and a warning names both fixes.  With
    group_column they are the conditional ones, with no warning."""
    X, y, groups = data
    cv = KFold(5, shuffle=True, random_state=0)
    with pytest.warns(UserWarning) as record:
        routed = cross_val_predict(RandomInterceptRegressor(), X, y, cv=cv, params={"groups": groups})
    messages = {str(w.message) for w in record}
    assert len(messages) == 1 and "set group_column" in messages.pop()
    assert len(record) == 5  # once per fold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        column = cross_val_predict(RandomInterceptRegressor(group_column="school"), with_column(X, groups), y, cv=cv)
    rmse = {name: np.sqrt(np.mean((y - p) ** 2)) for name, p in [("routed", routed), ("column", column)]}
    assert rmse["column"] < 0.8 * rmse["routed"]
    np.testing.assert_allclose(column, manual_cv(RandomInterceptRegressor(), X, y, groups, cv), rtol=1e-10)


def test_cross_val_predict_with_group_column(data):
    X, y, groups = data
    cv = KFold(5, shuffle=True, random_state=0)
    model = RandomInterceptRegressor(group_column="school")
    pred = cross_val_predict(model, with_column(X, groups), y, cv=cv)
    expected = manual_cv(RandomInterceptRegressor(), X, y, groups, cv)
    np.testing.assert_allclose(pred, expected, rtol=1e-10)


def test_column_transformer_passes_the_group_column_through(data):
    X, y, groups = data
    Xg = with_column(X, groups)
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["x1", "x2", "z1"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    pipe = make_pipeline(prep, RandomInterceptRegressor(group_column="school"))
    pipe.fit(Xg, y)
    direct = RandomInterceptRegressor().fit(StandardScaler().fit_transform(X), y, groups=groups)
    np.testing.assert_allclose(pipe[-1].random_effects_, direct.random_effects_, rtol=1e-9)
    np.testing.assert_allclose(
        pipe.predict(Xg), direct.predict(StandardScaler().fit(X).transform(X), groups=groups), rtol=1e-9
    )
    pred = cross_val_predict(pipe, Xg, y, cv=KFold(3, shuffle=True, random_state=1))
    assert r2_score(y, pred) > 0.6


def test_group_column_errors_say_what_to_do(data):
    X, y, groups = data
    Xg = with_column(X, groups)
    with pytest.raises(ValueError, match="both from group_column='school' and from the groups"):
        RandomInterceptRegressor(group_column="school").fit(Xg, y, groups=groups)
    with pytest.raises(ValueError, match=r"X has no column 'school' \(group_column\).*passthrough"):
        RandomInterceptRegressor(group_column="school").fit(X, y)
    model = RandomInterceptRegressor(group_column="school").fit(Xg, y)
    with pytest.raises(ValueError, match="X has no column 'school'"):
        model.predict(X)
    prefixed = ColumnTransformer(
        [("num", StandardScaler(), ["x1", "x2", "z1"])], remainder="passthrough"
    ).set_output(transform="pandas").fit_transform(Xg)
    with pytest.raises(ValueError, match="'remainder__school'.*verbose_feature_names_out=False"):
        RandomInterceptRegressor(group_column="school").fit(prefixed, y)
    as_array = ColumnTransformer([("num", StandardScaler(), ["x1"])], remainder="drop").fit_transform(Xg)
    with pytest.raises(ValueError, match="X has no column names.*ColumnTransformer"):
        RandomInterceptRegressor(group_column="school").fit(as_array, y)
    with pytest.raises(ValueError, match="group_column=7 is out of range: X has 4 columns"):
        RandomInterceptRegressor(group_column=7).fit(Xg.to_numpy(), y)


def test_group_column_by_position_in_an_object_array(data):
    X, y, groups = data
    arr = np.column_stack([X.to_numpy(), groups.to_numpy()]).astype(object)  # strings kept
    model = RandomInterceptRegressor(group_column=-1).fit(arr, y)
    direct = RandomInterceptRegressor().fit(X.to_numpy(), y, groups=groups)
    np.testing.assert_allclose(model.random_effects_, direct.random_effects_, rtol=1e-10)
    np.testing.assert_allclose(model.predict(arr), direct.predict(X.to_numpy(), groups=groups), rtol=1e-10)
    assert model.n_features_in_ == 3


def test_seen_groups_beat_new_groups_and_linear_regression(data):
    """KFold keeps every school in training: predictions use the BLUPs. GroupKFold
    holds whole schools out: predictions are population-level, like OLS's."""
    X, y, groups = data
    model = RandomInterceptRegressor(group_column="school")
    Xg = with_column(X, groups)
    seen = cross_val_score(model, Xg, y, cv=KFold(5, shuffle=True, random_state=0)).mean()
    new = cross_val_score(model, Xg, y, cv=GroupKFold(5), groups=groups).mean()
    ols = cross_val_score(LinearRegression(), X, y, cv=KFold(5, shuffle=True, random_state=0)).mean()
    assert seen > new + 0.2
    assert seen > ols + 0.2


def test_unseen_groups_population_or_error(data):
    X, y, groups = data
    train = groups != "school-03"
    model = RandomInterceptRegressor().fit(X[train], y[train], groups=groups[train])
    population = model.predict(X[~train], population=True)
    np.testing.assert_allclose(model.predict(X[~train], groups=groups[~train]), population)
    strict = clone(model).set_params(unseen_groups="error").fit(X[train], y[train], groups=groups[train])
    n_rows = int((~train).sum())
    with pytest.raises(ValueError, match=rf"{n_rows} rows belong to 1 group\(s\) not seen in fit \('school-03'\)"):
        strict.predict(X[~train], groups=groups[~train])
    np.testing.assert_allclose(strict.predict(X[train], groups=groups[train]), model.predict(X[train], groups=groups[train]))


def test_one_unseen_row_among_seen_rows_is_refused(data):
    X, y, groups = data
    strict = RandomInterceptRegressor(unseen_groups="error").fit(X, y, groups=groups)
    mixed = groups.to_numpy().copy()
    mixed[3] = "school-99"
    with pytest.raises(ValueError, match=r"^1 rows belong to 1 group\(s\) not seen in fit \('school-99'\)"):
        strict.predict(X, groups=mixed)


def test_clone_and_params(data):
    model = RandomInterceptRegressor(method="ml", group_column="school", unseen_groups="error")
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(method="reml")
    assert model.method == "ml"
    with pytest.raises(ValueError, match="unseen_groups"):
        RandomInterceptRegressor(unseen_groups="zero").fit(*data[:2], groups=data[2])


def test_pickle_round_trip_and_size_does_not_grow_with_n():
    sizes = {}
    for group_size in [10, 200]:
        X, y, groups = make_multilevel_regression(n_groups=50, group_size=group_size, random_state=0)
        model = RandomInterceptRegressor().fit(X, y, groups=groups)
        blob = pickle.dumps(model)
        loaded = pickle.loads(blob)
        np.testing.assert_array_equal(loaded.predict(X, groups=groups), model.predict(X, groups=groups))
        sizes[group_size] = len(blob)
    assert sizes[200] < 1.05 * sizes[10]  # 20x the rows, same groups and features
    X, y, groups = make_multilevel_regression(n_groups=500, group_size=10, random_state=0)
    more_groups = len(pickle.dumps(RandomInterceptRegressor().fit(X, y, groups=groups)))
    assert more_groups > 2 * sizes[10]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64(data, dtype):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X.to_numpy(dtype), y.to_numpy(dtype), groups=groups)
    reference = RandomInterceptRegressor().fit(X.to_numpy(np.float64), y, groups=groups)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=rtol)
    assert model.predict(X.to_numpy(dtype), groups=groups).dtype == np.float64


def test_dataframe_feature_names_are_checked_at_predict(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    assert list(model.feature_names_in_) == ["x1", "x2", "z1"]
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X.rename(columns={"x1": "escs"}))


@pytest.mark.parametrize(
    "make_labels",
    [
        lambda g: g.to_numpy(),  # object array of strings
        lambda g: g.to_numpy().astype(str),  # numpy unicode
        lambda g: g,  # Series
        lambda g: g.str.slice(7).astype(int).to_numpy(),  # ints
        lambda g: pd.Categorical(g, categories=sorted(set(g)) + ["closed school"]),
    ],
    ids=["object", "unicode", "series", "int", "categorical-unused"],
)
def test_group_label_types(data, make_labels):
    X, y, groups = data
    reference = RandomInterceptRegressor().fit(X, y, groups=groups)
    labels = make_labels(groups)
    model = RandomInterceptRegressor().fit(X, y, groups=labels)
    assert len(model.groups_) == 40
    np.testing.assert_allclose(model.random_effects_, reference.random_effects_, rtol=1e-10)
    np.testing.assert_allclose(model.predict(X, groups=labels), reference.predict(X, groups=groups), rtol=1e-10)


def test_missing_group_labels_are_counted(data):
    X, y, groups = data
    labels = groups.copy()
    labels.iloc[[3, 9, 11]] = None
    with pytest.raises(ValueError, match="groups has 3 missing label"):
        RandomInterceptRegressor().fit(X, y, groups=labels)
    with pytest.raises(ValueError, match="groups has 1 missing label"):
        RandomInterceptRegressor().fit(X, y, groups=pd.Categorical(groups.where(groups.index != 5)))


def test_y_types(data):
    X, y, groups = data
    reference = RandomInterceptRegressor().fit(X, y, groups=groups)
    model = RandomInterceptRegressor().fit(X, y.to_numpy(), groups=groups)
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = RandomInterceptRegressor().fit(X, y.to_frame(), groups=groups)
    np.testing.assert_array_equal(column.coef_, reference.coef_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RandomInterceptRegressor().fit(X, y, groups=groups)


def test_return_std_through_a_routed_pipeline(data, routing):
    X, y, groups = data
    pipe = make_pipeline(StandardScaler(), RandomInterceptRegressor()).fit(X, y, groups=groups)
    mean, std = pipe.predict(X, groups=groups, return_std=True)
    direct = RandomInterceptRegressor().fit(StandardScaler().fit_transform(X), y, groups=groups)
    expected_mean, expected_std = direct.predict(StandardScaler().fit(X).transform(X), groups=groups, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-10)
    np.testing.assert_allclose(std, expected_std, rtol=1e-10)
