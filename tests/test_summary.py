"""The Summary object: its numbers, and a snapshot of its printed lme4 layout."""

import copy
import dataclasses
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from conftest import simulate_multilevel
from lme4_reference import design
from scipy import stats as st

from skhlm import RandomInterceptRegressor
from skhlm.engine import em
from skhlm.inference import profile, vcov
from skhlm.inference.profile import profile_intervals
from skhlm import _summary
from skhlm._summary import summarize

# print(summary(lmerTest::lmer(y ~ desk + escs + (1 | g), data = pisa))) in R 4.2,
# lmerTest 3.1-3, for the sections and their order (correlations left out).
LMERTEST_PRINT = """\
Linear mixed model fit by REML. t-tests use Satterthwaite's method [
lmerModLmerTest]
Formula: y ~ desk + escs + (1 | g)
   Data: d

REML criterion at convergence: 57912.6

Scaled residuals: 
    Min      1Q  Median      3Q     Max 
-3.5809 -0.6663  0.0162  0.6523  3.3740 

Random effects:
 Groups   Name        Variance Std.Dev.
 g        (Intercept) 1554     39.42   
 Residual             6196     78.72   
Number of obs: 4978, groups:  g, 164

Fixed effects:
            Estimate Std. Error       df t value Pr(>|t|)    
(Intercept)  471.929      4.274  434.548 110.418  < 2e-16 ***
desk           8.888      3.142 4866.798   2.829  0.00469 ** 
escs          24.137      1.277 4973.268  18.901  < 2e-16 ***
---
Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1
"""

# skhlm's print of the same model: a change here must be deliberate.
SNAPSHOT = """\
Linear mixed model fit by REML. t-tests use Satterthwaite's method
Formula: y ~ desk + escs + (1 | g)

REML criterion at convergence: 57912.6

Scaled residuals:
    Min      1Q  Median      3Q     Max
-3.5809 -0.6663  0.0162  0.6523  3.3740

Random effects:
 Groups   Name        Variance Std.Dev.
 g        (Intercept) 1554     39.42
 Residual             6196     78.72
Number of obs: 4978, groups:  g, 164

Fixed effects:
            Estimate Std. Error       df t value Pr(>|t|)
(Intercept)  471.929      4.274  434.548 110.418  < 2e-16 ***
desk           8.888      3.142 4866.798   2.829  0.00469 **
escs          24.137      1.277 4973.268  18.901  < 2e-16 ***
---
Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1

ICC: 0.2005, 95% profile-likelihood interval [0.1634, 0.2454]
LRT of s2u = 0: chi2 = 835.7, p < 2e-16 (50:50 mixture of chi2(0) and chi2(1))"""

SECTIONS = [
    "Linear mixed model fit by REML.",
    "Formula:",
    "REML criterion at convergence:",
    "Scaled residuals:",
    "Random effects:",
    "Number of obs:",
    "Fixed effects:",
    "Signif. codes:",
]


def fitted(key, **params):
    X, y, groups, ref = design(key)
    model = RandomInterceptRegressor(method=key.split("/")[-1], **params).fit(X, y, groups=groups)
    return model, ref


@pytest.fixture(scope="module")
def pisa_reml():
    return fitted("pisa/rim1/reml")


def test_snapshot_of_printed_summary(pisa_reml):
    assert str(summarize(pisa_reml[0]._result)) == SNAPSHOT


def test_printed_sections_follow_lmertest(pisa_reml):
    text = str(summarize(pisa_reml[0]._result))

    def order(printed):
        """The sections, in the order they are printed."""
        lines = printed.splitlines()
        return sorted(SECTIONS, key=lambda s: next(i for i, line in enumerate(lines) if s in line))

    assert order(text) == order(LMERTEST_PRINT)
    # Every number lmerTest prints appears in ours, formatted the same way.

    def numbers(printed):
        return set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-\d+)?(?![\w.])", printed))

    assert len(numbers(LMERTEST_PRINT)) == 32  # distinct numbers: the pattern misses none
    assert numbers(LMERTEST_PRINT) <= numbers(text), numbers(LMERTEST_PRINT) - numbers(text)
    # The random-effects block is lme4's, line for line (R pads lines with spaces).

    def block(printed, first="Random effects:", last="Number"):
        lines = [line.rstrip() for line in printed.splitlines()]
        start = lines.index(first)
        return lines[start : next(i for i in range(start, len(lines)) if lines[i].startswith(last)) + 1]

    assert block(text) == block(LMERTEST_PRINT)
    # So is the fixed-effects block, the intercept named "(Intercept)" as lme4 does.
    assert block(text, "Fixed effects:", "Signif.") == block(LMERTEST_PRINT, "Fixed effects:", "Signif.")


@pytest.mark.parametrize(
    "key", ["pisa/rim1/reml", "pisa/rim1/ml", "boundary/full/ml", "intercept_only/null/reml"]
)
def test_summary_numbers(key):
    model, ref = fitted(key)
    s = summarize(model._result)
    fe = s.fixed_effects
    columns = ["estimate", "std_error", "df", "t_value", "p_value", "ci_lower", "ci_upper"]
    assert list(fe.columns) == columns
    assert list(fe.index) == ref["fixef_names"]
    np.testing.assert_allclose(fe["estimate"], list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(fe["std_error"], ref["satterthwaite"]["std_error"], rtol=1e-5)
    np.testing.assert_allclose(fe["df"], ref["satterthwaite"]["df"], rtol=1e-3)
    re = s.random_effects
    assert list(re.index) == ["Groups", "Residual"] and list(re.columns) == ["variance", "std_dev"]
    np.testing.assert_allclose(re["variance"], [ref["s2u"], ref["s2e"]], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(re["std_dev"] ** 2, re["variance"], rtol=1e-12)
    criterion = s.reml_criterion if model.method == "reml" else s.deviance
    assert (s.deviance if model.method == "reml" else s.reml_criterion) is None
    np.testing.assert_allclose(criterion, ref["criterion"], rtol=0, atol=2e-6)
    ours = [s.log_likelihood, s.aic, s.bic]
    np.testing.assert_allclose(ours, [ref["logLik"], ref["AIC"], ref["BIC"]], rtol=0, atol=2e-6)
    assert (s.n_obs, s.n_groups) == (ref["n_obs"], ref["n_groups"])
    assert s.singular == ref["isSingular"] and s.converged
    assert s.n_iter == model.n_iter_
    assert s.icc_interval[0] <= s.icc <= s.icc_interval[1]
    sigma = ref["confint_profile"][".sigma"]
    np.testing.assert_allclose(s.confint.loc["Residual"], sigma, rtol=1e-3)
    assert s.confint.equals(profile_intervals(model._result))


def test_summary_is_frozen_and_repr_prints(pisa_reml):
    s = summarize(pisa_reml[0]._result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.icc = 0.5
    assert repr(s) == str(s)


def test_ml_and_z_test_layouts():
    model, ref = fitted("pisa/rim1/ml")
    text = str(summarize(model._result, ddf="asymptotic", level=0.9))
    assert "fit by maximum likelihood. Wald z-tests" in text
    assert "    AIC     BIC   logLik deviance df.resid" in text
    assert " 57933.3 57965.9 -28961.7  57923.3     4973".strip() in text
    assert "z value Pr(>|z|)" in text and " df " not in text
    assert "90% profile-likelihood interval" in text


def test_singular_fit_and_unnamed_features():
    X, y, groups, _ = design("boundary/full/reml")
    model = RandomInterceptRegressor().fit(X.to_numpy(), y.to_numpy(), groups=groups.to_numpy())
    s = summarize(model._result, ddf="residual")
    text = str(s)
    assert "Boundary (singular) fit" in text
    assert "y ~ x0 + (1 | group)" in text  # unnamed arrays: generic names
    named = RandomInterceptRegressor().fit(X, y.rename("math"), groups=groups.rename("school"))
    assert "math ~ x1 + (1 | school)" in str(summarize(named._result))
    assert "t-tests use n - p residual degrees of freedom" in text
    assert list(s.fixed_effects.index) == ["(Intercept)", "x0"]
    assert s.confint.loc["Groups", "lower"] == 0.0


def test_summary_without_groups_or_intercept():
    X, y, _, _ = design("balanced/full/ml")
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor(fit_intercept=False).fit(X, y)
    s = summarize(model._result)
    assert list(s.fixed_effects.index) == ["x1", "x2"]
    assert s.n_groups == 0 and s.icc == 0.0
    assert (s.fixed_effects["df"] == len(y) - 2).all()
    text = str(s)
    assert text.startswith("Linear model (no groups) fit by REML")
    assert "y ~ 0 + x1 + x2\n" in text and text.endswith("ICC: 0 (no groups)")
    # Only the residual variance, and no group count.
    lines = text.splitlines()
    start = lines.index("Random effects:")
    assert lines[start + 1] == " Groups   Name Variance Std.Dev."
    assert lines[start + 2].startswith(" Residual      ")
    assert lines[start + 3] == f"Number of obs: {len(y)}"


def test_small_units_print_in_scientific_notation():
    X, y, groups, _ = design("pisa/rim1/reml")
    text = str(summarize(RandomInterceptRegressor().fit(X, y * 1e-8, groups=groups)._result))
    assert " g        (Intercept) 1.554e-13 3.942e-07" in text
    assert "desk        8.888e-08  3.142e-08" in text
    assert "0.000000" not in text


# -- the lazy attributes: computed on first access, as lme4's confint and ranef --


def test_printing_a_summary_computes_no_profile_and_no_group_table(pisa_reml, record_calls):
    model = pisa_reml[0]
    profiles = record_calls(profile, "profile_intervals")
    tables = record_calls(vcov, "random_effects_intervals")
    text = str(model.summary())
    assert text == SNAPSHOT and repr(model.summary()) == SNAPSHOT
    assert profiles == [] and tables == []
    # Nor the ML refit of this REML fit, which only the profiles need (a fresh result:
    # nothing cached on it).
    fits = record_calls(em, "fit")
    fresh = dataclasses.replace(model._result)
    assert str(summarize(fresh)) == SNAPSHOT and fits == [] and "ml" not in vars(fresh)
    summarize(fresh).confint
    assert [args[1] for args in fits] == ["ml"]


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_confint_is_profiled_on_first_access_only(pisa_reml, record_calls, level):
    model = pisa_reml[0]
    s = model.summary(level=level)
    calls = record_calls(profile, "profile_intervals")
    first = s.confint
    assert s.confint is first and s.confint is first  # kept: one profile for three reads
    assert calls == [(model._result, level)]
    assert list(first.index) == ["Groups", "Residual", "(Intercept)", "desk", "escs"]
    assert first.equals(profile_intervals(model._result, level))
    assert first.notna().all().all() and (first["lower"] < first["upper"]).all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.confint = None


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_group_intercepts_are_tabled_on_first_access_only(pisa_reml, record_calls, level):
    model = pisa_reml[0]
    s = model.summary(level=level)
    calls = record_calls(vcov, "random_effects_intervals")
    first = s.group_intercepts
    assert s.group_intercepts is first
    assert calls == [(model._result, level)]
    pd.testing.assert_frame_equal(first, vcov.random_effects_intervals(model._result, level))
    assert len(first) == s.n_groups == 164
    np.testing.assert_array_equal(first["estimate"], model.random_effects_)
    z = st.norm.ppf(0.5 + level / 2)
    width = first["upper"] - first["lower"]
    np.testing.assert_allclose(width, 2 * z * first["std_error"], rtol=1e-12)


def test_the_printed_lrt_is_computed_with_the_summary(pisa_reml, record_calls):
    """The LRT is printed, so it is a field, not a lazy attribute."""
    calls = record_calls(_summary, "group_variance_lrt")
    s = pisa_reml[0].summary()
    assert len(calls) == 1 and "group_variance_test" in {f.name for f in dataclasses.fields(s)}
    assert s.group_variance_test["statistic"] == pytest.approx(835.7, abs=0.05)
    str(s)
    assert len(calls) == 1


def test_a_summary_without_groups_has_profiles_but_no_group_intercepts(record_calls):
    X, y, _, _ = design("balanced/full/ml")
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    tables = record_calls(vcov, "random_effects_intervals")
    s = model.summary()
    assert s.group_intercepts is None and s.group_variance_test is None and tables == []
    assert s.confint.equals(profile_intervals(model._result))
    assert s.confint.loc["Groups"].isna().all() and s.confint.loc["Residual"].notna().all()


def test_a_summary_built_without_its_result_has_no_lazy_attributes(pisa_reml):
    s = summarize(pisa_reml[0]._result)
    bare = dataclasses.replace(s, _result=None)
    assert bare.confint is None and bare.group_intercepts is None
    assert str(bare) == str(s) == SNAPSHOT


@pytest.mark.parametrize("accessed", [False, True])
@pytest.mark.parametrize(
    "clone",
    [copy.copy, copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_copied_and_pickled_summaries_print_and_compute_the_same(
    pisa_reml, record_calls, clone, accessed
):
    model = pisa_reml[0]
    s = model.summary()
    if accessed:
        s.confint, s.group_intercepts
    other = clone(s)
    assert str(other) == repr(other) == SNAPSHOT
    expected = profile_intervals(model._result), vcov.random_effects_intervals(model._result)
    profiles = record_calls(profile, "profile_intervals")
    tables = record_calls(vcov, "random_effects_intervals")
    assert other.confint.equals(expected[0])
    pd.testing.assert_frame_equal(other.group_intercepts, expected[1])
    # A clone of an accessed summary carries its tables; one made before computes its own.
    assert len(profiles) == len(tables) == (0 if accessed else 1)
    pd.testing.assert_frame_equal(other.fixed_effects, s.fixed_effects)
    assert other.icc_interval == s.icc_interval


def test_a_redundant_feature_prints_as_na_and_tables_own_their_labels():
    X, y, groups = simulate_multilevel(3, coef=[0.5, 0.3], n_groups=60, sizes=(5, 15))
    X = np.column_stack([X[:, 0], 2.0 * X[:, 0], X[:, 1]])
    with pytest.warns(UserWarning, match="rank deficient"):
        model = RandomInterceptRegressor().fit(X, y, groups=groups)
    s, other = model.summary(), model.summary()
    lines = str(s).splitlines()
    row = next(line for line in lines if line.startswith("x1 "))
    assert re.fullmatch(r"x1 +0\.0+ +NA +NA +NA +NA", row), row
    for name in ("(Intercept)", "x0", "x2"):
        line = next(line for line in lines if line.startswith(name + " "))
        assert "NA" not in line.split() and len(re.findall(r"-?\d+\.\d+", line)) >= 4, line
    # Each table has its own labels: renaming one renames no other summary's.
    s.fixed_effects.columns.name = "renamed"
    s.random_effects.index.name = "renamed"
    assert other.fixed_effects.columns.name is None and other.random_effects.index.name is None
    assert model.summary().fixed_effects.columns.name is None
    assert list(other.fixed_effects.columns) == [
        "estimate", "std_error", "df", "t_value", "p_value", "ci_lower", "ci_upper"
    ]
