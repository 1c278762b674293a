"""What a new user tripped over: population predictions, label types, polars, the
verbose log, and messages that say what to do."""

import re
import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhlm import RandomInterceptRegressor, compare
from skhlm.datasets import make_multilevel_regression



@pytest.fixture(scope="module")
def pl():
    """polars, which the test extra installs; only the polars tests need it."""
    return pytest.importorskip("polars")


@pytest.fixture(scope="module")
def data():
    X, y, groups = make_multilevel_regression(
        n_groups=30, group_size=(5, 20), n_level1=2, n_level2=1, icc=0.4, random_state=3
    )
    return X, y, groups.to_numpy()


def quiet(function, *args, **kwargs):
    """Call ``function``, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


# -- population-level predictions --


def test_population_true_predicts_x_beta_without_a_warning(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    population = X.to_numpy() @ model.coef_ + model.intercept_
    np.testing.assert_allclose(quiet(model.predict, X, population=True), population, rtol=1e-12)
    # The groups are ignored, and the sd is that of a new group's observation.
    np.testing.assert_allclose(quiet(model.predict, X, groups=groups, population=True), population, rtol=1e-12)
    _, sd = quiet(model.predict, X[:3], groups=groups[:3], return_std=True, population=True)
    _, new = quiet(model.predict, X[:3], groups=[10**6] * 3, return_std=True)
    np.testing.assert_allclose(sd, new, rtol=1e-12)
    with pytest.warns(UserWarning, match="re.form = NA"):
        np.testing.assert_allclose(model.predict(X), population, rtol=1e-12)


def test_a_model_fitted_without_groups_predicts_without_a_warning(data):
    X, y, _ = data
    with pytest.warns(UserWarning, match="got no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    quiet(model.predict, X)


# -- label types --


def test_labels_of_another_type_than_fits_are_said_to_match_nothing(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups.astype(str))
    with pytest.warns(UserWarning) as record:
        pred = model.predict(X, groups=groups)
    assert [str(w.message) for w in record] == [
        f"None of the {len(y)} group labels given to predict was seen in fit: they are "
        f"numbers (e.g. {groups[0].item()!r}) and fit's were strings (e.g. '0'), so every row gets "
        "the population-level prediction. skhlm matches labels by value and type, as "
        "pandas does: 1 and '1' are different groups. Convert the labels to fit's type, "
        "e.g. groups.astype(str)."
    ]
    np.testing.assert_allclose(pred, model.predict(X, population=True))
    # The same labels as strings match; new labels of fit's type are simply new.
    conditional = quiet(model.predict, X, groups=groups.astype(str))
    assert not np.allclose(conditional, pred)
    quiet(model.predict, X[:2], groups=["new", "newer"])
    numeric = RandomInterceptRegressor().fit(X, y, groups=groups)
    with pytest.warns(UserWarning, match=r"they are strings .* fit's were numbers .*groups.astype\(int\)"):
        numeric.predict(X, groups=groups.astype(str))
    quiet(numeric.predict, X[:2], groups=[1000, 1001])  # numbers, unseen: no warning


# -- polars --


def polars_frame(pl, X, groups=None):
    frame = pl.DataFrame({name: X[name].to_numpy() for name in X.columns})
    return frame if groups is None else frame.with_columns(pl.Series("school", [f"s{g}" for g in groups]))


def test_polars_frames_fit_and_predict_as_pandas_frames(data, pl):
    X, y, groups = data
    labels = np.array([f"s{g}" for g in groups])
    reference = RandomInterceptRegressor().fit(X, y, groups=labels)
    expected = reference.predict(X, groups=labels)
    fitted = RandomInterceptRegressor().fit(polars_frame(pl, X), y, groups=pl.Series(labels))
    assert list(fitted.feature_names_in_) == list(X.columns)
    np.testing.assert_allclose(fitted.predict(polars_frame(pl, X), groups=pl.Series(labels)), expected, rtol=1e-12)
    for column in ["school", 3, -1]:
        model = RandomInterceptRegressor(group_column=column).fit(polars_frame(pl, X, groups), y)
        assert list(model.feature_names_in_) == list(X.columns)
        np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-12)
        np.testing.assert_allclose(quiet(model.predict, polars_frame(pl, X, groups)), expected, rtol=1e-12)


def test_polars_through_a_column_transformer(data, pl):
    X, y, groups = data
    prep = ColumnTransformer(
        [("num", StandardScaler(), list(X.columns))], remainder="passthrough", verbose_feature_names_out=False
    ).set_output(transform="polars")
    pipe = make_pipeline(prep, RandomInterceptRegressor(group_column="school")).fit(polars_frame(pl, X, groups), y)
    labels = np.array([f"s{g}" for g in groups])
    direct = RandomInterceptRegressor().fit(StandardScaler().fit_transform(X), y, groups=labels)
    np.testing.assert_allclose(pipe[-1].coef_, direct.coef_, rtol=1e-10)
    np.testing.assert_allclose(pipe.predict(polars_frame(pl, X, groups)), direct.predict(
        StandardScaler().fit(X).transform(X), groups=labels), rtol=1e-10)


def test_polars_non_numeric_columns_are_named(data, pl):
    X, y, groups = data
    frame = polars_frame(pl, X).with_columns(pl.Series("city", ["a"] * len(y)))
    with pytest.raises(ValueError, match=re.escape("X has non-numeric column(s) ['city']")):
        RandomInterceptRegressor().fit(frame, y, groups=groups)


# -- the verbose log --


def test_verbose_prints_the_user_scale_log_likelihood(data, capsys):
    X, y, groups = data
    model = RandomInterceptRegressor(verbose=1).fit(X * 100, y * 1000, groups=groups)
    printed = [float(line.split()[4]) for line in capsys.readouterr().out.splitlines() if line.startswith("EM it")]
    np.testing.assert_allclose(printed, model.log_likelihood_history_, rtol=0, atol=1e-9)


# -- messages --


def test_groups_given_as_a_column_name_say_to_use_group_column(data):
    X, y, _ = data
    with pytest.raises(ValueError) as error:
        RandomInterceptRegressor().fit(X.assign(school=1), y, groups="school")
    assert str(error.value) == (
        "groups='school' is a string, not one label per row. To take the groups from the "
        "column 'school' of X, pass group_column='school' to the estimator, or pass the "
        "column itself: groups=X['school']."
    )


def test_nan_at_predict_says_predicting(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    bad = X.copy()
    bad.iloc[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"\{'x2': 1\}.*in a Pipeline\) before predicting\.$"):
        model.predict(bad, groups=groups)


def test_compare_names_the_models_it_takes(data):
    X, y, groups = data
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    with pytest.raises(TypeError) as error:
        compare(model, LinearRegression().fit(X, y))
    assert str(error.value) == (
        "compare takes fitted skhlm models (RandomInterceptRegressor); model 2 is a "
        "LinearRegression. For a Pipeline, pass its last step, pipeline[-1]."
    )


@pytest.mark.parametrize("values", [(0.0, 1.0), (-1.0, 2.5)])
def test_a_binary_response_gets_a_warning(data, values):
    X, y, groups = data
    binary = np.where(y > np.median(y), values[1], values[0])
    with pytest.warns(UserWarning) as record:
        RandomInterceptRegressor().fit(X, binary, groups=groups)
    shown = f"{values[0]:g} and {values[1]:g}"
    assert [str(w.message) for w in record] == [
        f"y takes only two values ({shown}). RandomInterceptRegressor fits a linear "
        "(Gaussian) mixed model for a continuous response; on a binary outcome it is a "
        "linear probability model, with predictions outside [0, 1] and wrong standard "
        "errors. A binary outcome needs a logistic mixed model (lme4's glmer(..., family "
        "= binomial)), which skhlm does not fit."
    ]
    # Two values only after the first 64 rows still count; three do not warn.
    late = binary.copy()
    late[:64] = values[0]
    with pytest.warns(UserWarning, match="only two values"):
        RandomInterceptRegressor().fit(X, late, groups=groups)
    three = binary.copy()
    three[-1] = 7.0
    quiet(RandomInterceptRegressor().fit, X, three, groups=groups)


def test_cross_val_score_warns_when_its_scorer_drops_the_groups(data):
    """With routing, a scorer calls predict without groups: population-level scores
    under KFold, where the schools were seen, and a warning.  The estimator's own
    score gets the routed groups; group_column carries them in X."""
    import sklearn
    from sklearn.model_selection import KFold, cross_val_score

    X, y, groups = data
    cv = KFold(4, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.warns(UserWarning, match="predict got no groups") as caught:
            dropped = cross_val_score(RandomInterceptRegressor(), X, y, cv=cv, params={"groups": groups}, scoring="r2")
        routed = quiet(cross_val_score, RandomInterceptRegressor(), X, y, cv=cv, params={"groups": groups})
    column = quiet(cross_val_score, RandomInterceptRegressor(group_column="g"), X.assign(g=groups), y, cv=cv, scoring="r2")
    np.testing.assert_allclose(column, routed, rtol=1e-12)
    assert column.mean() > dropped.mean() + 0.03  # 0.85 against 0.80 on these data
    # The warning names the tools that drop the groups, and not cross_val_score,
    # whose default scoring (the estimator's score) gets them.
    said = str(caught[0].message)
    assert "cross_val_predict and scikit-learn's scorers (scoring='r2'" in said
    assert "cross_val_score" not in said


def test_grid_search_without_routing_warns_that_its_groups_went_to_the_splitter(data):
    from sklearn.model_selection import GridSearchCV, GroupKFold

    X, y, groups = data
    search = GridSearchCV(RandomInterceptRegressor(), {"method": ["reml"]}, cv=GroupKFold(3))
    with pytest.warns(UserWarning, match=r"GridSearchCV.fit\(X, y, groups=labels\) gives the groups to the splitter only"):
        search.fit(X, y, groups=groups)
    assert search.best_estimator_.variance_components_["group"] == 0.0  # fitted as OLS


# -- group labels: shapes, mixed types and the messages in full --


def test_group_labels_as_a_column_are_labels(data):
    X, y, groups = data
    flat = RandomInterceptRegressor().fit(X, y, groups=groups)
    import pandas as pd

    for column in (groups[:, None], pd.DataFrame({"school": groups})):
        model = RandomInterceptRegressor().fit(X, y, groups=column)
        np.testing.assert_array_equal(model.groups_, flat.groups_)
        np.testing.assert_allclose(model.random_effects_, flat.random_effects_, rtol=1e-12)


def test_labels_of_mixed_types_sort_as_pandas_sorts_or_keep_their_order(data):
    """Numbers and strings sort as pandas sorts them (numbers first); labels that do
    not compare at all (tuples and ints) keep their order of first appearance."""
    X, y, groups = data
    reference = RandomInterceptRegressor().fit(X, y, groups=groups % 5)
    for values, expected in [
        ([1, "a", 2.5, "b", 4], [1, 2.5, 4, "a", "b"]),
        ([(1, 2), 3, (0, 1), 7, (5,)], None),
    ]:
        kinds = np.empty(5, dtype=object)
        kinds[:] = values
        labels = kinds[groups % 5]
        model = RandomInterceptRegressor().fit(X, y, groups=labels)
        expected = list(dict.fromkeys(labels)) if expected is None else expected
        assert list(model.groups_) == expected
        order = [values.index(v) for v in expected]
        np.testing.assert_allclose(model.random_effects_, reference.random_effects_[order], rtol=1e-12)


def test_group_label_messages_in_full(data):
    X, y, groups = data
    n = len(y)
    cases = [
        (groups[:3], f"groups has 3 labels but X has {n} rows; pass one group label per row of X."),
        (np.c_[groups, groups], f"groups must be 1-D, one label per row; got an array of shape ({n}, 2). "
         "Pass a 1-D array or a pandas Series of cluster labels."),
        (np.where(np.arange(n) == 4, None, groups).astype(object), f"groups has 1 missing label(s) (None or NaN) "
         f"out of {n} rows. Drop those rows or give them a group label before fitting."),
    ]
    for labels, message in cases:
        with pytest.raises(ValueError) as error:
            RandomInterceptRegressor().fit(X, y, groups=labels)
        assert str(error.value) == message
