"""skhlm.lmer: lme4's formulas, against the estimators fitted by hand and against lme4."""

import json
import pickle
import re
import sys
import warnings
from pathlib import Path

import formulaic  # noqa: F401  (in the test extra: these tests must run, never skip)
import numpy as np
import pandas as pd
import pytest

from skhlm import FormulaTransformer, LinearMixedRegressor, LmerModel, RandomInterceptRegressor, compare, lmer
from skhlm._formula_terms import lme4_name, parse
from lme4_reference import fit_keys, reference

DATA = Path(__file__).parent / "data"
SLOPES = json.loads((DATA / "slopes" / "lme4_slopes.json").read_text())
FORMULA = json.loads((DATA / "formula" / "lme4_formula.json").read_text())


def sleepstudy():
    d = pd.read_csv(DATA / "slopes" / "sleepstudy.csv")
    return d.rename(columns={"y": "Reaction", "g": "Subject"})


# --- the random-effects term ------------------------------------------------------


@pytest.mark.parametrize(
    "formula, response, fixed, group, slopes, diagonal",
    [
        ("y ~ x + (1 | g)", "y", "x", "g", (), False),
        ("y ~ (1|g)", "y", "1", "g", (), False),
        ("y ~ (1 | g) + x", "y", "x", "g", (), False),
        ("y ~ x + (x | g)", "y", "x", "g", ("x",), False),
        ("y ~ x + (1 + x | g)", "y", "x", "g", ("x",), False),
        ("y ~ x + z + (1 + x + z | g)", "y", "x + z", "g", ("x", "z"), False),
        ("y ~ x + (x || g)", "y", "x", "g", ("x",), True),
        ("y ~ x + (1 + x || g)", "y", "x", "g", ("x",), True),
        ("y ~ 0 + x + (x | g)", "y", "0 + x", "g", ("x",), False),
        ("y ~ -1 + x + (1 | g)", "y", "-1 + x", "g", (), False),
        ("y ~ x - 1 + ((1 | g))", "y", "x - 1", "g", (), False),
        ("log(y) ~ a * b + I(x ** 2) + (1 | g)", "log(y)", "a * b + I(x ** 2)", "g", (), False),
        ("y ~ x + (x | `school id`)", "y", "x", "school id", ("x",), False),
    ],
)
def test_parse_splits_the_fixed_part_from_the_term(formula, response, fixed, group, slopes, diagonal):
    parsed = parse(formula)
    assert (parsed.response, parsed.fixed) == (response, fixed)
    assert (parsed.term.group, parsed.term.slopes, parsed.term.diagonal) == (group, slopes, diagonal)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y ~ x", r"lmer needs one random-effects term such as \(1 \| g\); for a model without random effects use sklearn's LinearRegression"),
        ("y ~ x + (1 | a) + (1 | b)", r"2 random-effects terms \(\(1 \| a\) \+ \(1 \| b\)\).*lmer supports one"),
        ("y ~ x + (1 | a/b)", r"\(1 \| a/b\) has nested grouping factors.*lmer supports one"),
        ("y ~ x + (1 | a:b)", r"\(1 \| a:b\) has an interaction of grouping factors.*lmer supports one"),
        ("y ~ x + (0 + x | g)", r"\(0 \+ x \| g\) has no random intercept.*Write \(x \| g\)"),
        ("y ~ x + (-1 + x | g)", r"\(-1 \+ x \| g\) has no random intercept"),
        ("y ~ x + (x - 1 | g)", r"\(x - 1 \| g\) has no random intercept"),
        ("y ~ x + (log(x) | g)", r"'log\(x\)' is not supported as a random slope; a slope must be a plain numeric column"),
        ("y ~ x + (x + x | g)", r"names the slope 'x' twice"),
        ("y ~ x + (1 | g + h)", r"groups by 'g \+ h', which is not a column name"),
        ("y ~ x + (1 | g | h)", r"has more than one bar"),
        ("y ~ x * (1 | g)", r"'x \* \(1 \| g\)'.*not a random-effects term of its own"),
        ("y ~ x | g", r"'x \| g'.*not a random-effects term of its own"),
        ("y ~ x - (1 | g)", r"\(1 \| g\) is subtracted"),
        ("y ~ I(x^2) + (1 | g)", r"I\(x\^2\) is evaluated as Python.*Write I\(x\*\*2\)"),
        ("y x + (1 | g)", r"must be 'response ~ terms'"),
        ("y ~ x + (1 | g", r"Unbalanced"),
    ],
)
def test_parse_errors_name_the_term_and_what_is_supported(formula, message):
    with pytest.raises(ValueError, match=message):
        parse(formula)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sex[T.M]", "sexM"),
        ("a[T.x]:b[T.y]", "ax:by"),
        ("C(f)[T.b]", "C(f)b"),
        ("I(x ** 2)", "I(x ** 2)"),
        ("sex[F]", "sexF"),  # a full-rank dummy (no intercept)
        ("desk:escs", "desk:escs"),
        ("log(x)", "log(x)"),
        ("recipe[T.B]:temperature[T.185]", "recipeB:temperature185"),
        ("temperature[.L]", "temperature.L"),  # polynomial contrasts: R's names too
        ("C(f, levels=['a', 'b'])[T.b]:x", "C(f, levels=['a', 'b'])b:x"),
        ("f[T.a:b]", "fa:b"),  # a level with a colon in it
        ("x[S.a]", "x[S.a]"),  # sum contrasts, which lme4 numbers: left alone
    ],
)
def test_lme4_names_of_formulaics_columns(name, expected):
    assert lme4_name(name) == expected


def test_without_formulaic_lmer_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "formulaic", None)  # import formulaic raises ImportError
    with pytest.raises(ImportError, match=r'pip install "skhlm\[formula\]"'):
        lmer("Reaction ~ Days + (1 | Subject)", sleepstudy())


# --- fits equal the estimators' ----------------------------------------------------


def blups_within(model, ref):
    cond_sd = np.sqrt(np.diagonal(np.asarray(ref["condVar"]), axis1=1, axis2=2))
    return np.all(np.abs(model.random_effects_ - np.asarray(ref["ranef"])) <= 1e-4 * cond_sd)


@pytest.mark.parametrize("bar, key", [("|", "days"), ("||", "days_diag")])
@pytest.mark.parametrize("REML", [True, False])
def test_sleepstudy_equals_the_estimator_and_lme4(bar, key, REML):
    d = sleepstudy()
    model = lmer(f"Reaction ~ Days + (Days {bar} Subject)", d, REML=REML)
    method = "reml" if REML else "ml"
    covariance = "diagonal" if bar == "||" else "unstructured"
    bare = LinearMixedRegressor(random_slopes=["Days"], covariance=covariance, method=method)
    bare.fit(d[["Days"]], d["Reaction"], groups=d["Subject"])
    assert isinstance(model.estimator_, LinearMixedRegressor)
    assert model.estimator_.get_params() == bare.get_params()
    np.testing.assert_allclose(model.coef_, bare.coef_, rtol=1e-10)
    assert model.intercept_ == pytest.approx(bare.intercept_, rel=1e-10)
    np.testing.assert_allclose(model.variance_components_["group"], bare.variance_components_["group"], rtol=1e-10)
    assert model.variance_components_["residual"] == pytest.approx(bare.variance_components_["residual"], rel=1e-10)
    assert model.log_likelihood_ == pytest.approx(bare.log_likelihood_, abs=1e-10)
    np.testing.assert_allclose(model.random_effects_, bare.random_effects_, rtol=1e-10, atol=1e-10)
    # lme4, at tests/test_slopes.py::test_agrees_with_lme4's tolerances.
    ref = SLOPES["fits"][f"sleepstudy/{key}/{method}"]
    assert model.log_likelihood_ >= ref["logLik"] - 1e-6
    assert model.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-5)
    se = np.asarray(ref["satterthwaite"]["std_error"])
    beta = np.concatenate([[model.intercept_], model.coef_])
    assert np.all(np.abs(beta - np.asarray(ref["fixef"])) <= 1e-4 * se)
    np.testing.assert_allclose(model.summary().fixed_effects["std_error"], se, rtol=1e-5)
    sigma, ref_sigma = model.variance_components_["group"], np.asarray(ref["sigma"])
    np.testing.assert_allclose(np.diag(sigma), np.diag(ref_sigma), rtol=1e-5)
    corr = sigma[0, 1] / np.sqrt(sigma[0, 0] * sigma[1, 1])
    assert corr == pytest.approx(ref_sigma[0, 1] / np.sqrt(ref_sigma[0, 0] * ref_sigma[1, 1]), abs=1e-5)
    assert model.variance_components_["residual"] == pytest.approx(ref["s2e"], rel=1e-5)
    np.testing.assert_array_equal(model.groups_.astype(str), np.asarray(ref["levels"]))
    assert blups_within(model, ref)


def test_a_random_intercept_term_fits_random_intercept_regressor():
    d = sleepstudy()
    model = lmer("Reaction ~ Days + (1 | Subject)", d, max_iter=50)
    bare = RandomInterceptRegressor(max_iter=50).fit(d[["Days"]], d["Reaction"], groups=d["Subject"])
    assert isinstance(model.estimator_, RandomInterceptRegressor)
    assert model.estimator_.get_params() == bare.get_params()
    assert model.coef_[0] == pytest.approx(bare.coef_[0], rel=1e-10)
    assert model.variance_components_["group"] == pytest.approx(bare.variance_components_["group"], rel=1e-10)
    # An intercept-only fixed part: an X with no columns.
    empty = lmer("Reaction ~ 1 + (1 | Subject)", d)
    bare = RandomInterceptRegressor().fit(d[[]], d["Reaction"], groups=d["Subject"])
    assert empty.coef_.shape == (0,)
    assert empty.intercept_ == pytest.approx(bare.intercept_, rel=1e-10)
    assert empty.log_likelihood_ == pytest.approx(bare.log_likelihood_, abs=1e-10)


def factor_data(seed=0, G=25, n=300):
    """A 3-level string factor (sorted: hi, lo, mid), a 2-level Categorical whose
    baseline is its first category, not the first in sort order, and a number."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, G, n)
    f = rng.choice(["lo", "mid", "hi"], n)
    s = pd.Categorical(rng.choice(["placebo", "drug"], n), categories=["placebo", "drug"])
    x = rng.normal(size=n)
    effect = {"hi": 0.0, "lo": -1.0, "mid": 0.5}
    y = 2 + np.array([effect[v] for v in f]) + 1.5 * (s == "drug") + 0.8 * x
    y += 0.7 * ((f == "lo") & (s == "drug")) + rng.normal(size=G)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "f": f, "s": s, "x": x, "g": [f"school{k:02d}" for k in g]})


def hand_design(d):
    """The treatment-contrast design of y ~ f * s + x, made by hand, as R's
    model.matrix names and orders it."""
    flo, fmid = (d["f"] == "lo").astype(float), (d["f"] == "mid").astype(float)
    sdrug = (d["s"] == "drug").astype(float)
    return pd.DataFrame(
        {"flo": flo, "fmid": fmid, "sdrug": sdrug, "x": d["x"], "flo:sdrug": flo * sdrug, "fmid:sdrug": fmid * sdrug}
    ).reset_index(drop=True)


def test_factors_get_treatment_contrasts_under_lme4s_names():
    d = factor_data()
    model = lmer("y ~ f * s + x + (1 | g)", d)
    hand = hand_design(d)
    assert list(model.feature_names_in_) == ["flo", "fmid", "sdrug", "x", "flo:sdrug", "fmid:sdrug"]
    pd.testing.assert_frame_equal(model.design(d), hand)
    bare = RandomInterceptRegressor().fit(hand, d["y"], groups=d["g"])
    np.testing.assert_allclose(model.coef_, bare.coef_, rtol=1e-10)
    assert model.intercept_ == pytest.approx(bare.intercept_, rel=1e-10)
    assert model.variance_components_["group"] == pytest.approx(bare.variance_components_["group"], rel=1e-10)
    assert model.log_likelihood_ == pytest.approx(bare.log_likelihood_, abs=1e-10)
    np.testing.assert_allclose(model.random_effects_, bare.random_effects_, rtol=1e-10, atol=1e-12)
    # The effects the data were made with (n = 300: within a few standard errors).
    assert model.coef_ == pytest.approx([-1.0, 0.5, 1.5, 0.8, 0.7, 0.0], abs=0.6)
    # C() of a column, and no intercept: R's full-rank dummies (fhi, flo, fmid).
    no_intercept = lmer("y ~ 0 + C(f) + x + (1 | g)", d)
    assert list(no_intercept.feature_names_in_) == ["C(f)hi", "C(f)lo", "C(f)mid", "x"]
    assert not no_intercept.estimator_.fit_intercept
    full = pd.DataFrame({f"C(f){v}": (d["f"] == v).astype(float) for v in ["hi", "lo", "mid"]}).assign(x=d["x"])
    bare = RandomInterceptRegressor(fit_intercept=False).fit(full, d["y"], groups=d["g"])
    np.testing.assert_allclose(no_intercept.coef_, bare.coef_, rtol=1e-10)


def test_transforms_and_interactions_of_numbers():
    d = factor_data(1)
    d["z"] = np.exp(d["x"] / 3)
    model = lmer("y ~ log(z) + I(x ** 2) + x:z + (1 | g)", d)
    assert list(model.feature_names_in_) == ["log(z)", "I(x ** 2)", "x:z"]
    hand = pd.DataFrame({"log(z)": np.log(d["z"]), "I(x ** 2)": d["x"] ** 2, "x:z": d["x"] * d["z"]})
    bare = RandomInterceptRegressor().fit(hand, d["y"], groups=d["g"])
    np.testing.assert_allclose(model.coef_, bare.coef_, rtol=1e-10)


def test_predict_encodes_new_data_with_the_levels_of_fit():
    d = factor_data(2)
    model = lmer("y ~ f * s + x + (1 | g)", d)
    bare = RandomInterceptRegressor().fit(hand_design(d), d["y"], groups=d["g"])
    # Shuffled rows with a non-default index, only some levels of each factor, the
    # string factor now a Categorical with other categories, a new group.
    new = d.sample(frac=1, random_state=0)
    new = new[new["f"].isin(["mid", "lo"]) & (new["s"] == "drug")].iloc[:20].copy()
    new.index = np.arange(100, 100 + len(new))
    new["f"] = pd.Categorical(new["f"], categories=["mid", "lo", "zzz"])
    new["s"] = new["s"].astype(str)
    new.iloc[0, new.columns.get_loc("g")] = "a new school"
    expected = bare.predict(hand_design(new.astype({"f": str})), groups=new["g"].to_numpy())
    np.testing.assert_allclose(model.predict(new), expected, rtol=1e-12)
    assert model.predict(new)[0] == pytest.approx(bare.predict(hand_design(new.astype({"f": str}))[:1], population=True)[0])
    pred, std = model.predict(new, return_std=True)
    _, expected_std = bare.predict(hand_design(new.astype({"f": str})), groups=new["g"].to_numpy(), return_std=True)
    np.testing.assert_allclose(std, expected_std, rtol=1e-12)
    # population=True needs no grouping column.
    population = model.predict(new.drop(columns="g"), population=True)
    np.testing.assert_allclose(population, bare.predict(hand_design(new.astype({"f": str})), population=True), rtol=1e-12)


def test_predict_refuses_unseen_levels_and_missing_columns():
    d = factor_data(3)
    model = lmer("y ~ f * s + x + (1 | g)", d)
    new = d.iloc[:5].copy()
    new.iloc[2, new.columns.get_loc("f")] = "extreme"
    with pytest.raises(ValueError, match=r"Column 'f' has level\(s\) 'extreme' not seen in fit.*levels seen: \['hi', 'lo', 'mid'\]"):
        model.predict(new)
    new = d.iloc[:5].astype({"s": str})
    new.iloc[0, new.columns.get_loc("s")] = "Drug"
    with pytest.raises(ValueError, match=r"Column 's' has level\(s\) 'Drug' not seen in fit"):
        model.predict(new)
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['s', 'x'\] of the fixed part"):
        model.predict(d[["f", "g"]])
    with pytest.raises(ValueError, match=r"lack the grouping column 'g'.*population=True"):
        model.predict(d.drop(columns="g"))
    new = d.iloc[:5].copy()
    new.iloc[1, new.columns.get_loc("x")] = np.nan
    with pytest.raises(ValueError, match=r"Column 'x' has 1 missing value"):
        model.predict(new)
    # A level of C(f): the column is named too.
    model = lmer("y ~ C(f) + x + (1 | g)", d)
    new = d.iloc[:3].copy()
    new.iloc[0, new.columns.get_loc("f")] = "extreme"
    with pytest.raises(ValueError, match=r"Column 'f' has level\(s\) 'extreme'"):
        model.predict(new)
    # A factor of an expression: formulaic's warning (it would code the level as the
    # baseline) becomes the error.
    model = lmer("y ~ C(f.str.upper()) + x + (1 | g)", d)
    assert list(model.feature_names_in_) == ["C(f.str.upper())LO", "C(f.str.upper())MID", "x"]
    with pytest.raises(ValueError, match=r"A factor has a level not seen in fit: .*'EXTREME'"):
        model.predict(new)


def test_lmer_errors_about_the_data():
    d = factor_data(4)
    with pytest.raises(ValueError, match=r"grouping column 'school' of \(1 \| school\) is not a column of the data"):
        lmer("y ~ x + (1 | school)", d)
    with pytest.raises(ValueError, match=r"The random slope 'x' of \(x \| g\) is not a fixed effect.*Add it: \.\.\. \+ x \+ \(x \| g\)"):
        lmer("y ~ f + (x | g)", d)
    with pytest.raises(ValueError, match=r"The random slope 'f' of \(f \| g\) is a \w+ column; a random slope must be numeric"):
        lmer("y ~ f + (f | g)", d)
    with pytest.raises(ValueError, match=r"The random slope 'w' of \(1 \+ w \| g\) is not a column of the data"):
        lmer("y ~ x + (1 + w | g)", d)
    with pytest.raises(ValueError, match=r"neither an intercept nor fixed effects"):
        lmer("y ~ 0 + (1 | g)", d)
    with pytest.raises(ValueError, match=r"The response 'f' must be one numeric column"):
        lmer("f ~ x + (1 | g)", d)
    with pytest.raises(TypeError, match=r"lmer sets method from REML=True or REML=False"):
        lmer("y ~ x + (1 | g)", d, method="ml")
    with pytest.raises(TypeError, match=r"lmer sets random_slopes from the random-effects term"):
        lmer("y ~ x + (1 | g)", d, random_slopes=["x"])
    with pytest.raises(TypeError, match=r"REML must be True or False, got 'ml'"):
        lmer("y ~ x + (1 | g)", d, REML="ml")
    with pytest.raises(TypeError, match=r"takes the data as a pandas DataFrame, got list"):
        lmer("y ~ x + (1 | g)", [1, 2])


def test_rows_with_missing_values_are_dropped_as_lme4_drops_them():
    d = factor_data(5)
    holes = d.copy()
    holes.loc[3, "x"] = np.nan
    holes.loc[7, "y"] = np.nan
    holes.loc[11, "g"] = None
    holes.loc[12, "f"] = None
    with pytest.warns(UserWarning, match=r"lmer dropped 4 of 300 rows with a missing value"):
        model = lmer("y ~ f + x + (1 | g)", holes)
    complete = lmer("y ~ f + x + (1 | g)", d.drop(index=[3, 7, 11, 12]))
    np.testing.assert_allclose(model.coef_, complete.coef_, rtol=1e-12)
    assert model.log_likelihood_ == pytest.approx(complete.log_likelihood_, abs=1e-10)


# --- the model object: summary, compare, pickle ----------------------------------


def test_summary_prints_the_formula_as_given_and_lme4s_names():
    d = factor_data(6)
    model = lmer("y ~ f * s + x + (1 | g)", d)
    printed = str(model.summary())
    assert "Formula: y ~ f * s + x + (1 | g)\n" in printed
    assert list(model.summary().fixed_effects.index) == ["(Intercept)", "flo", "fmid", "sdrug", "x", "flo:sdrug", "fmid:sdrug"]
    assert "\nfmid:sdrug " in printed and " g        (Intercept)" in printed
    assert model.summary(level=0.9).level == 0.9
    slopes = lmer("Reaction ~ Days + (Days || Subject)", sleepstudy()).summary()
    assert str(slopes).splitlines()[1] == "Formula: Reaction ~ Days + (Days || Subject)"
    assert " Subject  (Intercept)" in str(slopes) and slopes.diagonal
    # The estimator's own summary is unchanged.
    assert model.estimator_.summary().formula == "y ~ flo + fmid + sdrug + x + flo:sdrug + fmid:sdrug + (1 | g)"


def test_compare_takes_lmer_models():
    d = sleepstudy()
    m0 = lmer("Reaction ~ Days + (1 | Subject)", d)
    m1 = lmer("Reaction ~ Days + (Days | Subject)", d)
    b0 = RandomInterceptRegressor().fit(d[["Days"]], d["Reaction"], groups=d["Subject"])
    b1 = LinearMixedRegressor(random_slopes=["Days"]).fit(d[["Days"]], d["Reaction"], groups=d["Subject"])
    table = compare(m0, m1)
    pd.testing.assert_frame_equal(table, compare(b0, b1), rtol=1e-10)
    assert table["Df"].iloc[1] == 2.0
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (b1.log_likelihood_ - b0.log_likelihood_), rel=1e-9)
    pd.testing.assert_frame_equal(compare(m0, b1, refit=True), compare(b0, b1, refit=True), rtol=1e-10)


def test_pickle_round_trip_predicts_the_same():
    d = factor_data(7)
    model = lmer("y ~ f * s + x + (x | g)", d)
    again = pickle.loads(pickle.dumps(model))
    assert isinstance(again, LmerModel) and again.formula == model.formula
    new = d.iloc[::7]
    np.testing.assert_array_equal(again.predict(new), model.predict(new))
    np.testing.assert_array_equal(again.predict(new, return_std=True)[1], model.predict(new, return_std=True)[1])
    bad = new.copy()
    bad.iloc[0, bad.columns.get_loc("f")] = "extreme"
    with pytest.raises(ValueError, match="'extreme' not seen in fit"):
        again.predict(bad)


def test_fitted_attributes_read_through_and_nothing_else():
    model = lmer("Reaction ~ Days + (Days | Subject)", sleepstudy())
    assert model.random_effect_names_ == ["Intercept", "Days"]
    assert model.random_effects_ is model.estimator_.random_effects_
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        model.fit  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nothing_'"):
        model.nothing_  # noqa: B018
    assert repr(model) == "LmerModel('Reaction ~ Days + (Days | Subject)', estimator_=LinearMixedRegressor(random_slopes=['Days']))"


def test_polars_data():
    import polars as pl
    d = factor_data(8).astype({"s": str})
    model = lmer("y ~ f + s + x + (1 | g)", pl.from_pandas(d))
    np.testing.assert_allclose(model.coef_, lmer("y ~ f + s + x + (1 | g)", d).coef_, rtol=1e-12)


# --- lme4 on its cake, and a factor beside a random slope -------------------------


def reference_data(key):
    if key.startswith("cake"):
        # Read as lme4 reads it: temperature a factor (unordered: treatment contrasts).
        return pd.read_csv(DATA / "formula" / "cake.csv").astype({"temperature": "category"})
    return pd.read_csv(DATA / "formula" / "sleepstudy_phase.csv")


@pytest.mark.parametrize("key", sorted(FORMULA["fits"]))
def test_lmer_reproduces_lme4s_names_and_numbers(key):
    ref = FORMULA["fits"][key]
    model = lmer(ref["formula"], reference_data(key), REML=key.endswith("reml"))
    summary = model.summary()
    assert list(summary.fixed_effects.index) == ref["fixef_names"]  # names, and order
    se = np.asarray(ref["std_error"])
    beta = np.concatenate([[model.intercept_], model.coef_])
    assert np.all(np.abs(beta - np.asarray(ref["fixef"])) <= 1e-4 * se)
    np.testing.assert_allclose(summary.fixed_effects["std_error"], se, rtol=1e-5)
    np.testing.assert_allclose(summary.fixed_effects["df"], ref["df"], rtol=1e-4)
    sigma = np.atleast_2d(model.variance_components_["group"])
    np.testing.assert_allclose(np.diag(sigma), np.diag(np.asarray(ref["sigma"])), rtol=1e-5)
    if sigma.shape[0] > 1:
        ref_sigma = np.asarray(ref["sigma"])
        corr = sigma[0, 1] / np.sqrt(sigma[0, 0] * sigma[1, 1])
        assert corr == pytest.approx(ref_sigma[0, 1] / np.sqrt(ref_sigma[0, 0] * ref_sigma[1, 1]), abs=1e-5)
        assert model.random_effect_names_[1:] == ref["random_names"][1:]
    assert model.variance_components_["residual"] == pytest.approx(ref["s2e"], rel=1e-5)
    assert model.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-6)
    assert model.aic_ == pytest.approx(ref["AIC"], abs=1e-5)
    np.testing.assert_array_equal(model.groups_.astype(str), np.asarray(ref["levels"]))
    blups = np.asarray(ref["ranef"]).reshape(model.random_effects_.shape)
    np.testing.assert_allclose(model.random_effects_, blups, rtol=1e-4, atol=1e-6 * np.abs(blups).max())
    assert not model.singular_ and not ref["isSingular"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(reference_data(key).iloc[:5])  # the data it was fitted on: no warning


@pytest.mark.parametrize("key", [k for k in fit_keys() if k.startswith("pisa/")])
def test_the_seed_articles_three_models_through_lmer_are_lme4s(key):
    # The seed's lmer(math ~ 1 + desk + escs + stratio + (1 | school_id)) and its two
    # smaller models, on the committed PISA-like data, against lme4 and lmerTest.
    _, model, method = key.split("/")
    ref = reference()["fits"][key]
    terms = [name for name in ref["fixef_names"] if name != "(Intercept)"]
    pisa = pd.read_csv(Path(__file__).parent / "data" / "lme4" / "pisa.csv")
    formula = f"y ~ {' + '.join(terms) or '1'} + (1 | g)"
    m = lmer(formula, pisa, REML=method == "reml")
    assert m.n_features_in_ == len(terms)
    if terms:  # (RIM0, y ~ 1 + (1 | g), has no columns to name)
        assert m.feature_names_in_.tolist() == terms
    se = np.asarray(ref["satterthwaite"]["std_error"])
    beta = np.concatenate([[m.intercept_], m.coef_])
    assert np.all(np.abs(beta - np.asarray(list(ref["fixef"].values()))) <= 1e-4 * se)
    assert m.variance_components_["group"] == pytest.approx(ref["s2u"], rel=1e-5)
    assert m.variance_components_["residual"] == pytest.approx(ref["s2e"], rel=1e-5)
    assert m.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-6)
    fixed = m.summary().fixed_effects
    np.testing.assert_allclose(fixed["std_error"], se, rtol=1e-5)
    np.testing.assert_allclose(fixed["df"], ref["satterthwaite"]["df"], rtol=1e-3)


# --- weights ------------------------------------------------------------------------

WEIGHTS = json.loads((DATA / "weights" / "lme4_weights.json").read_text())["fits"]


@pytest.mark.parametrize(
    "formula, key",
    [
        ("y ~ x1 + x2 + (1 | g)", "ri_weights/ri"),
        ("y ~ x1 + x2 + (x1 | g)", "slopes_weights/slopes"),
        ("y ~ x1 + x2 + (x1 || g)", "slopes_diag_weights/slopes_diag"),
    ],
)
@pytest.mark.parametrize("REML", [True, False])
def test_weights_by_column_name_are_lme4s_weights(formula, key, REML):
    data = key.split("/")[0]
    d = pd.read_csv(DATA / "weights" / f"{data}.csv")
    ref = WEIGHTS[f"{key}/{'reml' if REML else 'ml'}"]
    m = lmer(formula, d, REML=REML, weights="w")
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref["fixef"], rtol=1e-7)
    assert m.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-6)
    # The same as the estimator given the weights; and weights as an array.
    by_array = lmer(formula, d, REML=REML, weights=d["w"].to_numpy())
    assert by_array.log_likelihood_ == m.log_likelihood_
    unweighted = lmer(formula, d, REML=REML)
    assert abs(unweighted.log_likelihood_ - m.log_likelihood_) > 1.0


def test_a_missing_weight_drops_its_row_with_the_other_incomplete_rows():
    d = pd.read_csv(DATA / "weights" / "ri_weights.csv")
    gap = d.copy()
    gap.loc[[3, 10], "w"] = np.nan
    with pytest.warns(UserWarning, match="lmer dropped 2 of 1025 rows"):
        m = lmer("y ~ x1 + x2 + (1 | g)", gap, weights="w")
    dropped = lmer("y ~ x1 + x2 + (1 | g)", d.drop(index=[3, 10]), weights="w")
    np.testing.assert_allclose(m.coef_, dropped.coef_, rtol=1e-12)
    assert m.log_likelihood_ == pytest.approx(dropped.log_likelihood_, rel=1e-12)
    assert m.summary().n_obs == 1023


def test_lmer_weights_errors_say_what_to_pass():
    d = pd.read_csv(DATA / "weights" / "ri_weights.csv")
    with pytest.raises(ValueError, match="weights='wt' is not a column of the data"):
        lmer("y ~ x1 + (1 | g)", d, weights="wt")
    with pytest.raises(ValueError, match=r"one weight per row of the data \(1025 rows\); got shape \(3,\)"):
        lmer("y ~ x1 + (1 | g)", d, weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weights must be numeric"):
        lmer("y ~ x1 + (1 | g)", d.assign(w="a"), weights="w")
    with pytest.raises(ValueError, match="negative value"):
        lmer("y ~ x1 + (1 | g)", d.assign(w=-d["w"]), weights="w")


@pytest.mark.parametrize("formula, hint", [
    ("y ~ factor(desk) + (1 | g)", "R's factor(x) is C(x) here"),
    ("y ~ factor (desk) + (1 | g)", "R's factor(x) is C(x) here"),
    ("y ~ escs + offset(stratio) + (1 | g)", "offsets are not supported"),
    ("y ~ nothere + (1 | g)", "nothere"),
])
def test_a_fixed_part_formulaic_cannot_evaluate_is_a_value_error_naming_it(formula, hint):
    data = pd.read_csv(DATA / "lme4" / "pisa.csv")
    with pytest.raises(ValueError, match=re.escape(f"formulaic cannot evaluate {formula!r}")) as raised:
        lmer(formula, data)
    assert hint in str(raised.value) and "'stratio'" in str(raised.value)  # the columns
    assert type(raised.value.__cause__).__module__.startswith("formulaic")
    assert "\x1b" not in str(raised.value)  # formulaic's terminal colours are gone


def test_the_transformer_says_the_same_of_r_spellings():
    data = pd.read_csv(DATA / "lme4" / "pisa.csv")
    with pytest.raises(ValueError, match=r"R's factor\(x\) is C\(x\) here"):
        FormulaTransformer("~ factor(desk)").fit(data)
