"""skhlm.FormulaTransformer: a formula's fixed part as a Pipeline step, against lmer."""

import pickle

import formulaic  # noqa: F401  (in the test extra: these tests must run, never skip)
import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline

from skhlm import FormulaTransformer, RandomInterceptRegressor, lmer

FIXED = "log(x) + z * f"


def make_data(n_groups=30, size=10, seed=0, factor_effect=(0.0, 0.5, -0.8)):
    """Rows in groups, a 3-level string factor f, x > 0 (for log) and z; y from
    y = 1 + 2 log(x) - z + f's effect + 0.5 z:fb + u_g + e."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    g = np.repeat([f"g{k:02d}" for k in range(n_groups)], size)
    d = pd.DataFrame({
        "g": g,
        "x": rng.uniform(0.5, 3.0, n),
        "z": rng.normal(size=n),
        "f": rng.choice(["a", "b", "c"], n),
    })
    effect = d["f"].map(dict(zip("abc", factor_effect))).to_numpy()
    u = rng.normal(scale=0.8, size=n_groups)[np.repeat(np.arange(n_groups), size)]
    d["y"] = 1 + 2 * np.log(d["x"]) - d["z"] + effect + 0.5 * d["z"] * (d["f"] == "b") + u + rng.normal(size=n)
    return d


# --- the design is lmer's -----------------------------------------------------------


def test_transform_equals_lmers_design_names_included():
    d = make_data()
    model = lmer(f"y ~ {FIXED} + (1 | g)", d)
    out = FormulaTransformer(f"~ {FIXED}").fit(d).transform(d)
    expected = model.design(d)
    assert list(out.columns) == ["log(x)", "z", "fb", "fc", "z:fb", "z:fc"]
    assert list(out.columns) == list(expected.columns) == list(model.feature_names_in_)
    np.testing.assert_array_equal(out.to_numpy(), expected.to_numpy())
    # The numbers themselves, not only agreement: log(x) and the interaction.
    np.testing.assert_allclose(out["log(x)"], np.log(d["x"]), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(out["z:fc"], d["z"] * (d["f"] == "c"))


def test_formula_without_tilde_and_on_new_data():
    train, new = make_data(seed=0), make_data(n_groups=3, seed=1)
    ft = FormulaTransformer(FIXED).fit(train)
    assert ft.feature_names_out_.tolist() == ["log(x)", "z", "fb", "fc", "z:fb", "z:fc"]
    assert ft.n_features_in_ == 5
    assert ft.feature_names_in_.tolist() == ["g", "x", "z", "f", "y"]
    np.testing.assert_array_equal(
        ft.transform(new).to_numpy(), FormulaTransformer(f"~ {FIXED}").fit(train).transform(new).to_numpy()
    )
    np.testing.assert_array_equal(ft.transform(new)["fb"], (new["f"] == "b").astype(float))


def test_passthrough_columns_follow_the_design_with_the_rows_index():
    d = make_data().sample(frac=1, random_state=0)  # a shuffled, non-default index
    ft = FormulaTransformer("~ x + C(f)", passthrough=["g"]).fit(d)
    out = ft.transform(d)
    assert list(out.columns) == ["x", "C(f)b", "C(f)c", "g"]
    assert ft.get_feature_names_out().tolist() == list(out.columns)
    assert ft.feature_names_out_.tolist() == ["x", "C(f)b", "C(f)c"]
    assert out.index.equals(d.index)
    assert out["g"].tolist() == d["g"].tolist()
    np.testing.assert_array_equal(out["x"], d["x"])


# --- in a Pipeline, the numbers are lmer's ------------------------------------------


def test_pipeline_with_group_column_equals_lmer():
    d = make_data()
    pipe = Pipeline([
        ("formula", FormulaTransformer(f"~ {FIXED}", passthrough=["g"])),
        ("model", RandomInterceptRegressor(group_column="g")),
    ]).fit(d, d["y"])
    model = lmer(f"y ~ {FIXED} + (1 | g)", d)
    fitted = pipe[-1]
    assert fitted.feature_names_in_.tolist() == list(model.feature_names_in_)
    np.testing.assert_allclose(fitted.coef_, model.coef_, rtol=0, atol=1e-10)
    assert abs(fitted.intercept_ - model.intercept_) < 1e-10
    for name in ("group", "residual"):
        assert abs(fitted.variance_components_[name] - model.variance_components_[name]) < 1e-10
    new = make_data(n_groups=3, seed=5)
    new.loc[new.index[:10], "g"] = d["g"].iloc[0]  # one seen group, two new ones
    for frame in (d, new):
        np.testing.assert_allclose(pipe.predict(frame), model.predict(frame), rtol=0, atol=1e-10)
    # The group intercepts are used: a seen group's prediction is not x'beta.
    assert np.ptp(pipe.predict(d) - model.predict(d, population=True)) > 0.5


# --- model selection over formulas ---------------------------------------------------


def test_grid_search_over_formulas_with_group_kfold():
    d = make_data(factor_effect=(0.0, 3.0, -3.0))  # the factor matters a lot
    y, groups = d["y"], d["g"]
    pipe = make_pipeline(FormulaTransformer("~ x", passthrough=["g"]), RandomInterceptRegressor(group_column="g"))
    with_factor = "~ log(x) + z + C(f)"
    search = GridSearchCV(pipe, {"formulatransformer__formula": ["~ log(x) + z", with_factor]}, cv=GroupKFold(n_splits=3))
    search.fit(d, y, groups=groups)  # GroupKFold without groups would raise
    assert search.best_params_ == {"formulatransformer__formula": with_factor}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] - scores[0] > 0.3  # R^2: the factor explains much

    # The splits GridSearchCV scored are GroupKFold's on these groups, schools apart.
    splits = list(GroupKFold(n_splits=3).split(d, y, groups))
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == list(range(len(d)))
    for k, (train, test) in enumerate(splits):
        assert not set(groups.iloc[train]) & set(groups.iloc[test])
        fold = clone(pipe).set_params(formulatransformer__formula=with_factor).fit(d.iloc[train], y.iloc[train])
        score = fold.score(d.iloc[test], y.iloc[test])
        assert abs(search.cv_results_[f"split{k}_test_score"][1] - score) < 1e-12

    direct = clone(pipe).set_params(formulatransformer__formula=with_factor).fit(d, y)
    assert search.best_estimator_[0].formula == with_factor
    np.testing.assert_allclose(search.best_estimator_.predict(d), direct.predict(d), rtol=0, atol=1e-10)
    np.testing.assert_allclose(search.best_estimator_[-1].coef_, direct[-1].coef_, rtol=0, atol=1e-10)


# --- errors that name what is wrong --------------------------------------------------


def test_unseen_level_missing_column_and_missing_value_are_named():
    d = make_data()
    ft = FormulaTransformer("~ x + C(f)").fit(d)
    new = d.head(4).assign(f=["a", "b", "d", "c"])
    with pytest.raises(ValueError, match=r"Column 'f' has level\(s\) 'd' not seen in fit"):
        ft.transform(new)
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['x'\]"):
        ft.transform(d.drop(columns="x"))
    with pytest.raises(ValueError, match=r"Column 'x' has 1 missing value"):
        ft.transform(d.assign(x=d["x"].where(d.index != 3)))
    with pytest.raises(ValueError, match=r"passthrough column\(s\) \['school'\]"):
        FormulaTransformer("~ x", passthrough=["school"]).fit(d)


def test_missing_values_at_fit_are_an_error_not_dropped_rows():
    d = make_data()
    with pytest.raises(ValueError, match=r"Column 'f' has 2 missing value"):
        FormulaTransformer("~ x + f").fit(d.assign(f=d["f"].where(~d.index.isin([0, 7]))))
    with pytest.raises(ValueError, match=r"Column 'x' has 1 missing value"):
        FormulaTransformer("~ log(x)").fit(d.assign(x=d["x"].where(d.index != 5)))
    with pytest.raises(ValueError, match=r"formulaic cannot evaluate '~ w \+ x'.*`w` is not present"):
        FormulaTransformer("~ w + x").fit(d)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("~ x + (1 | g)", r"random-effects term.*Use skhlm\.lmer"),
        ("x + (x || g)", r"random-effects term.*Use skhlm\.lmer"),
        ("y ~ x", r"has a left-hand side.*use skhlm\.lmer"),
        ("~ 0 + x", r"removes the intercept.*set fit_intercept=False on the estimator"),
        ("~ x - 1", r"removes the intercept.*Drop the 0 \+ \(or - 1\)"),
        ("~ ", r"has no terms"),
    ],
)
def test_formulas_that_are_not_a_fixed_part(formula, message):
    with pytest.raises(ValueError, match=message):
        FormulaTransformer(formula).fit(make_data())


def test_input_must_be_a_dataframe():
    ft = FormulaTransformer("~ x").fit(make_data())
    with pytest.raises(TypeError, match="takes a DataFrame.*got ndarray"):
        ft.transform(np.ones((3, 1)))


def test_polars_input():
    d = make_data()
    ft = FormulaTransformer(f"~ {FIXED}", passthrough=["g"])
    out = clone(ft).fit(pl.from_pandas(d)).transform(pl.from_pandas(d))
    expected = clone(ft).fit(d).transform(d)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, expected)
    pipe = make_pipeline(ft, RandomInterceptRegressor(group_column="g"))
    y = d["y"].to_numpy()
    np.testing.assert_allclose(
        clone(pipe).fit(pl.from_pandas(d), y).predict(pl.from_pandas(d)), clone(pipe).fit(d, y).predict(d), rtol=0, atol=1e-12
    )


# --- clone, pickle, repr --------------------------------------------------------------


def test_clone_params_repr_and_pickle():
    ft = FormulaTransformer("~ x + C(f)", passthrough=["g"])
    assert ft.get_params() == {"formula": "~ x + C(f)", "passthrough": ["g"]}
    assert repr(ft) == "FormulaTransformer(formula='~ x + C(f)', passthrough=['g'])"
    assert repr(FormulaTransformer("~ x")) == "FormulaTransformer(formula='~ x')"
    copy = clone(ft).set_params(formula="~ z")
    assert copy.get_params() == {"formula": "~ z", "passthrough": ["g"]} and ft.formula == "~ x + C(f)"
    d = make_data()
    ft.fit(d)
    assert not hasattr(clone(ft), "model_spec_")
    restored = pickle.loads(pickle.dumps(ft))
    pd.testing.assert_frame_equal(restored.transform(d), ft.transform(d))
    with pytest.raises(ValueError, match=r"level\(s\) 'd' not seen"):  # the levels travel with it
        restored.transform(d.head(2).assign(f="d"))
    pipe = make_pipeline(clone(ft), RandomInterceptRegressor(group_column="g")).fit(d, d["y"])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pipe)).predict(d), pipe.predict(d))


def test_parameters_are_validated_at_fit():
    with pytest.raises(ValueError, match="formula"):
        FormulaTransformer(3).fit(make_data())
