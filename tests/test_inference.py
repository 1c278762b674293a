"""Inference against lme4 1.1-31 / lmerTest 3.1-3, dense formulas and simulation.

Tolerances are the project's requirements (issue 4): standard errors and Wald
bounds 1e-5 relative, Satterthwaite df 1e-3, p-values 1e-4, profile intervals 1e-3
(lme4 interpolates its profile with splines), condVar 1e-6, LRT statistics 1e-6.
"""

from functools import partial

import dense
import numpy as np
import pandas as pd
import pytest
from conftest import simulate_multilevel
from lme4_reference import design, fit_keys, reference
from scipy import stats as st
from scipy.optimize import approx_fprime, brentq, minimize_scalar

from skhlm import RandomInterceptRegressor
from skhlm.engine import em as _em
from skhlm.engine.em import Limits
from skhlm.inference import vcov as inf
from skhlm.inference import profile as _profile
from skhlm.engine import criterion as obj
from skhlm.inference.compare import compare, group_variance_lrt
from skhlm._summary import fixed_effects_table, summarize
from skhlm.datasets import make_multilevel_regression

# A p-value's relative condition number in t is about t^2 df / (df + t^2): for the
# t ~ 100 of some intercepts, the 1e-6 agreement of t becomes 1e-3 in p.  So p-values
# below _SMALL_P are compared on the log scale (still 1e-4 relative), and those below
# the smallest normal double, where R's own value keeps few digits, not at all.
_SMALL_P = 1e-12
_TINY = 1e-300


@pytest.fixture(scope="module", params=fit_keys())
def case(request):
    key = request.param
    X, y, groups, ref = design(key)
    model = RandomInterceptRegressor(method=key.split("/")[-1]).fit(X, y, groups=groups)
    return key, model, ref


def test_coef_covariance_equals_vcov(case):
    _, model, ref = case
    np.testing.assert_allclose(inf.coef_covariance(model._result), ref["vcov"], rtol=1e-5)


def test_standard_errors_and_t_values(case):
    _, model, ref = case
    fe = fixed_effects_table(model._result)
    sat = ref["satterthwaite"]
    assert list(fe.index)[1:] == ref["fixef_names"][1:]
    np.testing.assert_allclose(fe["std_error"], sat["std_error"], rtol=1e-5)
    np.testing.assert_allclose(fe["t_value"], sat["t_value"], rtol=1e-5)


def test_satterthwaite_df(case):
    _, model, ref = case
    fe = fixed_effects_table(model._result)
    np.testing.assert_allclose(fe["df"], ref["satterthwaite"]["df"], rtol=1e-3)


@pytest.mark.parametrize("key", sorted(reference()["satterthwaite_centered"]))
def test_satterthwaite_df_where_lmertest_is_exact(key):
    # On offset_scale lmerTest's numerical derivatives are off by ~1e-4; on centered
    # columns (same slopes, same df) they are good to ~1e-7, and so are ours.
    X, y, groups, _ = design(key)
    model = RandomInterceptRegressor(method=key.split("/")[-1]).fit(X, y, groups=groups)
    ref = reference()["satterthwaite_centered"][key]
    df = fixed_effects_table(model._result)["df"]
    np.testing.assert_allclose(df[ref["terms"]], ref["df"], rtol=1e-6)


def test_p_values(case):
    _, model, ref = case
    ours = fixed_effects_table(model._result)["p_value"].to_numpy()
    theirs = np.array(ref["satterthwaite"]["p_value"])
    usual = theirs >= _SMALL_P
    np.testing.assert_allclose(ours[usual], theirs[usual], rtol=1e-4)
    small = ~usual & (theirs > _TINY)
    np.testing.assert_allclose(np.log(ours[small]), np.log(theirs[small]), rtol=1e-4)
    assert (ours[theirs <= _TINY] <= 1e-290).all()


def test_wald_intervals(case):
    _, model, ref = case
    z = fixed_effects_table(model._result, ddf="asymptotic")
    np.testing.assert_allclose(z["ci_lower"], ref["confint_wald"]["lower"], rtol=1e-5)
    np.testing.assert_allclose(z["ci_upper"], ref["confint_wald"]["upper"], rtol=1e-5)
    t = fixed_effects_table(model._result)
    np.testing.assert_allclose(t["ci_lower"], ref["satterthwaite_ci"]["lower"], rtol=1e-5)
    np.testing.assert_allclose(t["ci_upper"], ref["satterthwaite_ci"]["upper"], rtol=1e-5)


def test_residual_ddf(case):
    _, model, ref = case
    fe = fixed_effects_table(model._result, ddf="residual", level=0.9)
    dof = ref["n_obs"] - len(ref["fixef_names"])
    assert (fe["df"] == dof).all()
    expected = 2 * st.t.sf(np.abs(fe["t_value"]), dof)
    np.testing.assert_allclose(fe["p_value"], expected, rtol=1e-12)
    half = st.t.ppf(0.95, dof) * fe["std_error"]
    np.testing.assert_allclose(fe["ci_upper"] - fe["estimate"], half, rtol=1e-10)


def test_profile_intervals(case):
    _, model, ref = case
    ours = _profile.profile_intervals(model._result)
    theirs = ref["confint_profile"]
    np.testing.assert_allclose(ours.loc["Groups"], theirs[".sig01"], rtol=1e-3)
    np.testing.assert_allclose(ours.loc["Residual"], theirs[".sigma"], rtol=1e-3)
    for name, r_name in zip(ours.index[2:], ref["fixef_names"]):
        np.testing.assert_allclose(ours.loc[name], theirs[r_name], rtol=1e-3)
    if ref["isSingular"]:
        assert ours.loc["Groups", "lower"] == 0.0


def test_condvar(case):
    _, model, ref = case
    np.testing.assert_allclose(model.random_effects_var_, ref["condVar"], rtol=1e-6)
    ci = inf.random_effects_intervals(model._result, level=0.9)
    assert list(ci.index) == ref["levels"]
    half = st.norm.ppf(0.95) * np.sqrt(ref["condVar"])
    np.testing.assert_allclose(ci["upper"] - ci["estimate"], half, rtol=1e-6)


def test_group_variance_lrt(case):
    _, model, ref = case
    lrt = group_variance_lrt(model._result)
    assert sorted(lrt) == ["df", "log_likelihood_null", "p_value", "statistic"] and lrt["df"] == 1
    np.testing.assert_allclose(lrt["log_likelihood_null"], ref["lm_logLik"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(lrt["statistic"], ref["ranova"]["LRT"], rtol=0, atol=1e-6)
    if ref["ranova"]["LRT"] > 0:
        # ranova's p-value is the naive chi2(1) one; the mixture halves it.
        np.testing.assert_allclose(lrt["p_value"], ref["ranova"]["p_value"] / 2, rtol=1e-4)
    else:
        assert lrt["p_value"] == 1.0


# -- lme4's anova() ---------------------------------------------------------------

PISA_TERMS = {"rim0": [], "rim1": ["desk", "escs"], "rim2": ["desk", "escs", "stratio"]}


def pisa_models(method):
    d = pd.read_csv(dense_path("pisa"))
    return [
        RandomInterceptRegressor(method=method).fit(d[cols], d["y"], groups=d["g"])
        for cols in PISA_TERMS.values()
    ]


def dense_path(name):
    from lme4_reference import HERE

    return HERE / f"{name}.csv"


@pytest.mark.parametrize(
    "method, refit, ref_key", [("reml", True, "pisa"), ("ml", False, "pisa_ml")]
)
def test_compare_matches_anova(method, refit, ref_key):
    ref = reference()["anova"][ref_key]
    full = reference()["anova"]["pisa"]
    table = compare(*pisa_models(method), refit=refit, names=list(PISA_TERMS))
    assert list(table.index) == ref["models"]
    np.testing.assert_array_equal(table["npar"], full["npar"])
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(table["AIC"], full["AIC"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(table["BIC"], full["BIC"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(table["deviance"], full["deviance"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(table["Chisq"][1:], ref["Chisq"][1:], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(table["Df"][1:], full["Df"][1:])
    np.testing.assert_allclose(table["p_value"][1:], ref["p_value"][1:], rtol=1e-4)
    assert np.isnan(table.iloc[0][["Chisq", "Df", "p_value"]].astype(float)).all()


def test_compare_sorts_by_npar():
    m0, m1, _ = pisa_models("ml")
    table = compare(m1, m0, names=["big", "small"])
    assert list(table.index) == ["small", "big"]


def test_compare_refuses_reml_with_different_fixed_effects():
    m0, m1, _ = pisa_models("reml")
    with pytest.raises(ValueError, match="different fixed effects.*refit=True"):
        compare(m0, m1)


def test_compare_refuses_mixed_methods():
    with pytest.raises(ValueError, match="some by ML.*refit=True"):
        compare(pisa_models("reml")[0], pisa_models("ml")[1])


def test_compare_refuses_different_data():
    d = pd.read_csv(dense_path("pisa"))
    a = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"], groups=d["g"])
    b = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"] + 1.0, groups=d["g"])
    c = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"], groups=np.roll(d["g"], 7))
    # Weights change the data the likelihood is of (weighted sums), even all equal to 2.
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(d))
    e = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"], groups=d["g"], sample_weight=w)
    twos = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"], groups=d["g"], sample_weight=np.full(len(d), 2.0))
    for other in (b, c, e, twos):
        with pytest.raises(ValueError, match="not fitted to the same data"):
            compare(a, other)


def test_compare_takes_weighted_fits_of_the_same_weights():
    d = pd.read_csv(dense_path("pisa"))
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(d))
    m0 = RandomInterceptRegressor(method="ml").fit(d[["desk"]], d["y"], groups=d["g"], sample_weight=w)
    m1 = RandomInterceptRegressor(method="ml").fit(d[["desk", "escs"]], d["y"], groups=d["g"], sample_weight=w)
    table = compare(m0, m1)
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (m1.log_likelihood_ - m0.log_likelihood_), rel=1e-12)
    assert table["Chisq"].iloc[1] > 10


def test_compare_reml_with_same_fixed_effects_is_the_group_lrt():
    # Same fixed effects: the REML likelihoods are comparable, and the comparison with
    # the model without groups is the LRT of s2u = 0 (with the naive chi2 p-value).
    d = pd.read_csv(dense_path("pisa"))
    X = d[["desk", "escs"]]
    with_groups = RandomInterceptRegressor().fit(X, d["y"], groups=d["g"])
    with pytest.warns(UserWarning, match="no groups"):
        without = RandomInterceptRegressor().fit(X, d["y"])
    table = compare(with_groups, without)
    lrt = group_variance_lrt(with_groups._result)
    assert table.index[0] == "m2"
    np.testing.assert_allclose(table["Chisq"].iloc[1], lrt["statistic"], rtol=1e-12)
    np.testing.assert_allclose(table["p_value"].iloc[1], 2 * lrt["p_value"], rtol=1e-10)


# -- closed forms and dense formulas ----------------------------------------------


def balanced(seed=1, n_groups=15, size=8):
    """Balanced groups; x varies within groups only (zero group means)."""
    return simulate_multilevel(
        seed, n_groups=n_groups, sizes=size, n_between=0, center_within=True, intercept=1.0, coef=[0.5]
    )


def test_satterthwaite_closed_forms_balanced():
    # Balanced one-way layout, REML: Var(intercept) = MSB / n is a multiple of one
    # mean square on G - 1 df, and a purely within-group slope has Var = s2e / Sxx
    # with s2e = MSW on N - G - 1 df; Satterthwaite's df are exactly these.
    X, y, codes = balanced()
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    df = fixed_effects_table(model._result)["df"].to_numpy()
    n_groups = codes.max() + 1
    np.testing.assert_allclose(df, [n_groups - 1, codes.size - n_groups - 1], rtol=1e-7)


def test_deviance_derivatives_equal_finite_differences():
    x, y, codes = simulate()
    stats = dense.naive_stats(x, y, codes)
    s2u, s2e = 0.6, 1.2
    for method in ("reml", "ml"):

        def deviance(v):
            theta, sigma = v
            lam = theta**2
            d = obj.lambda_derivatives(stats, lam, method)
            m = stats.n_obs - (stats.n_params if method == "reml" else 0)
            return d["logdet"] + d["rss"] / sigma**2 + m * np.log(sigma**2)

        point = np.array([np.sqrt(s2u / s2e), np.sqrt(s2e)])
        numeric = [
            approx_fprime(point, lambda v, k=k: approx_fprime(v, deviance, 1e-6)[k], 1e-5)
            for k in range(2)
        ]
        hessian = inf.deviance_hessian(stats, s2u, s2e, method)
        np.testing.assert_allclose(hessian, numeric, rtol=1e-4)

    def cov(v):
        theta, sigma = v
        return sigma**2 * np.linalg.inv(obj.gls_system(stats, theta**2)[0])

    point = np.array([np.sqrt(s2u / s2e), np.sqrt(s2e)])
    h = 1e-6
    numeric = [(cov(point + h * e) - cov(point - h * e)) / (2 * h) for e in np.eye(2)]
    jacobian = inf.covariance_jacobian(s2u, s2e, obj.lambda_derivatives(stats, s2u / s2e, "ml"))
    np.testing.assert_allclose(jacobian, numeric, rtol=1e-6, atol=1e-12)


# 12 groups of 2 to 8 rows, s2u = s2e = 1; the design has its column of ones.
simulate = partial(simulate_multilevel, n_groups=12, sizes=(2, 9), coef=[1.0, 0.5, -0.4], intercept_column=True)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_coef_covariance_equals_dense_gls(fit_intercept):
    x, y, codes = simulate()
    X = x[:, 1:] * [3.0, 0.01] + [500.0, -2.0]  # offsets and scales the map must undo
    model = RandomInterceptRegressor(fit_intercept=fit_intercept).fit(X, y, groups=codes)
    vc = model.variance_components_
    design_ = np.column_stack([np.ones(len(y)), X]) if fit_intercept else X
    v_inv = np.linalg.inv(dense.full_cov(codes, vc["group"], vc["residual"]))
    expected = np.linalg.inv(design_.T @ v_inv @ design_)
    np.testing.assert_allclose(inf.coef_covariance(model._result), expected, rtol=1e-8)
    # The predictive variance of a new group is x'Cov x + s2u + s2e in user units.
    sd = inf.predictive_std(model._result, X[:5], np.full(5, -1))
    quad = np.einsum("ij,jk,ik->i", design_[:5], expected, design_[:5])
    np.testing.assert_allclose(sd**2, quad + vc["group"] + vc["residual"], rtol=1e-8)


def test_condvar_equals_dense_posterior_variance():
    x, y, codes = simulate()
    model = RandomInterceptRegressor().fit(x[:, 1:], y, groups=codes)
    vc = model.variance_components_
    expected = []
    for j in range(codes.max() + 1):
        n_j = (codes == j).sum()
        v_j = vc["residual"] * np.eye(n_j) + vc["group"]
        ones = np.ones(n_j)
        expected.append(vc["group"] - vc["group"] ** 2 * ones @ np.linalg.solve(v_j, ones))
    np.testing.assert_allclose(model.random_effects_var_, expected, rtol=1e-10)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_model_without_groups_is_ols(method):
    x, y, _ = simulate()
    X = x[:, 1:]
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor(method=method).fit(X, y)
    n, p = x.shape
    rss = np.sum((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2)
    s2 = rss / (n - p if method == "reml" else n)
    cov = s2 * np.linalg.inv(x.T @ x)
    fe = fixed_effects_table(model._result)
    np.testing.assert_allclose(fe["std_error"], np.sqrt(np.diag(cov)), rtol=1e-10)
    assert (fe["df"] == n - p).all()
    sd = inf.predictive_std(model._result, X[:3], np.full(3, -1))
    np.testing.assert_allclose(sd**2, s2 * (1 + np.einsum("ij,jk,ik->i", x[:3], cov / s2, x[:3])))
    ci = _profile.profile_intervals(model._result)
    assert ci.loc["Groups"].isna().all() and ci.loc["Residual"].notna().all()
    assert _profile.icc_interval(model._result) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no random effects"):
        group_variance_lrt(model._result)


@pytest.mark.filterwarnings("ignore:X is rank deficient")
def test_redundant_feature_gets_nan_rows():
    x, y, codes = simulate()
    X = np.column_stack([x[:, 1], 2.0 * x[:, 1], x[:, 2]])
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    cov = inf.coef_covariance(model._result)
    assert np.isnan(cov[2]).all() and np.isnan(cov[:, 2]).all()
    assert np.isfinite(np.delete(np.delete(cov, 2, 0), 2, 1)).all()
    fe = fixed_effects_table(model._result)
    assert fe.loc["x1", ["std_error", "df", "p_value"]].isna().all()
    assert fe.drop(index="x1")["df"].notna().all()
    profile = _profile.profile_intervals(model._result)
    assert list(profile.index) == ["Groups", "Residual", "(Intercept)", "x0", "x1", "x2"]
    assert profile.loc["x1"].isna().all() and np.isfinite(profile.drop(index="x1")).all().all()
    assert np.isfinite(inf.predictive_std(model._result, X[:4], np.arange(4))).all()


@pytest.mark.parametrize("key", ["near_boundary/full/reml", "boundary/full/ml", "pisa/rim1/ml"])
def test_icc_interval_is_the_lambda_profile(key):
    X, y, groups, _ = design(key)
    model = RandomInterceptRegressor(method=key.split("/")[-1]).fit(X, y, groups=groups)
    lo, hi = _profile.icc_interval(model._result, level=0.9)
    assert lo <= model.icc_ <= hi
    crit = st.chi2.ppf(0.9, 1)
    stats = model._result.stats
    base = obj.profiled_criterion(stats, model.icc_ / (1 - model.icc_), model.method)
    for icc in (lo, hi):
        excess = obj.profiled_criterion(stats, icc / (1 - icc), model.method) - base
        if icc == 0.0:
            assert model.singular_ or excess <= crit
        else:
            np.testing.assert_allclose(excess, crit, rtol=1e-6)


def test_profile_bound_is_a_minimum_over_s2u():
    # Independent of the nested search: at the upper bound of sigma, minimize the ML
    # deviance over s2u (not lambda) directly; it must be the base + chi2 critical.
    X, y, groups, _ = design("near_boundary/full/ml")
    model = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    stats, scale = model._result.stats, model._result.units.y_scale
    sigma = _profile.profile_intervals(model._result, fixed=False).loc["Residual", "upper"] / scale
    s2u_hat, s2e_hat = (model._result.s2u, model._result.s2e)

    def deviance(log_s2u, s2e):
        s2u = np.exp(log_s2u)
        beta = obj.gls_beta(stats, s2u / s2e)[0]
        return -2 * obj.log_likelihood(stats, "ml", s2u, s2e, beta)

    start = np.log(s2u_hat)
    best = minimize_scalar(lambda t: deviance(t, sigma**2), bracket=(start - 1, start))
    base = deviance(np.log(s2u_hat), s2e_hat)
    np.testing.assert_allclose(best.fun - base, st.chi2.ppf(0.95, 1), rtol=1e-10)


# -- predictive uncertainty --------------------------------------------------------


@pytest.mark.slow
def test_predictive_std_is_calibrated():
    # One new observation per replicate for a seen group and one for a new group,
    # each from a fresh data set: the coverages are binomial(R, 0.95) if calibrated.
    # R = 1000 gives sd 0.0069; we accept 0.95 +- 0.024 (3.5 sd).  Dropping condVar
    # (about 1/3 of s2e here) or s2u from the variance gives about 0.91 or 0.83.
    rng = np.random.default_rng(2024)
    n_groups, size, n_rep = 50, 2, 1000
    codes = np.repeat(np.arange(n_groups), size)
    hits = np.zeros((n_rep, 2), dtype=bool)
    for r in range(n_rep):
        u = rng.normal(size=n_groups)
        X = rng.normal(size=(codes.size, 1))
        y = 1.0 + 2.0 * X[:, 0] + u[codes] + rng.normal(size=codes.size)
        model = RandomInterceptRegressor().fit(X, y, groups=codes)
        x_new = rng.normal(scale=2.0, size=(2, 1))
        j = rng.integers(n_groups)
        y_new = 1.0 + 2.0 * x_new[:, 0] + [u[j], rng.normal()] + rng.normal(size=2)
        mean, sd = model.predict(x_new, groups=[model.groups_[j], -1], return_std=True)
        hits[r] = np.abs(y_new - mean) <= 1.96 * sd
    coverage = hits.mean(axis=0)
    np.testing.assert_allclose(coverage, 0.95, atol=0.024)


def test_invalid_arguments():
    X, y, groups, _ = design("balanced/full/reml")
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="ddf must be one of"):
        fixed_effects_table(model._result, ddf="kenward-roger")
    with pytest.raises(ValueError, match="level must be in"):
        fixed_effects_table(model._result, level=95)


# -- the public surface: summary(), predict(return_std=True), skhlm.compare ---------


def test_summary_method_and_predict_std_are_the_functions():
    X, y, groups, _ = design("unbalanced/full/reml")
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    summary = model.summary(level=0.9, ddf="residual")
    expected = fixed_effects_table(model._result, level=0.9, ddf="residual")
    pd.testing.assert_frame_equal(summary.fixed_effects, expected)
    assert str(summary).startswith("Linear mixed model fit by REML")
    assert summary.group_variance_test["statistic"] > 100
    intercepts = summary.group_intercepts
    assert list(intercepts.index) == list(model.groups_)
    np.testing.assert_allclose(intercepts["std_error"] ** 2, model.random_effects_var_)
    np.testing.assert_allclose(intercepts["upper"] - intercepts["estimate"],
                               st.norm.ppf(0.95) * intercepts["std_error"])
    labels = np.where(np.arange(len(y)) % 3 == 0, "unseen", groups)
    mean, sd = model.predict(X, groups=labels, return_std=True)
    np.testing.assert_array_equal(mean, model.predict(X, groups=labels))
    index = pd.Index(model.groups_).get_indexer(labels)
    np.testing.assert_array_equal(sd, inf.predictive_std(model._result, X.to_numpy(), index))
    assert (sd[index < 0] > sd[index >= 0].max()).all()  # s2u > condVar_j
    with pytest.raises(ValueError, match="ddf must be one of"):
        model.summary(ddf="kenward-roger")


def test_compare_is_exported():
    import skhlm

    assert skhlm.compare is compare


def test_compare_refuses_reml_fits_of_different_columns_with_equal_moments():
    X, y, groups, _ = design("balanced/full/reml")
    x = X[["x1"]].to_numpy()
    permuted = np.random.default_rng(0).permutation(x)  # same mean and scale
    a = RandomInterceptRegressor().fit(x, y, groups=groups)
    b = RandomInterceptRegressor().fit(permuted, y, groups=groups)
    with pytest.raises(ValueError, match="different fixed effects"):
        compare(a, b)


def test_an_ml_refit_that_does_not_converge_warns():
    from sklearn.exceptions import ConvergenceWarning

    X, y, groups, _ = design("unbalanced/full/reml")
    with pytest.warns(ConvergenceWarning):
        model = RandomInterceptRegressor(max_iter=1, tol=1e-14).fit(X, y, groups=groups)
    with pytest.warns(ConvergenceWarning) as record:
        compare(model, model, refit=True)
    # One refit per fit result, however often the model appears.
    assert [str(w.message) for w in record] == [
        "The ML refit of this REML model (for compare(refit=True) and the profile "
        "intervals) did not converge in max_iter=1 iterations (tol=1e-14); its "
        "likelihood-ratio tests and profile intervals may be off. Increase max_iter, "
        "or loosen tol."
    ]


def test_compare_accepts_reml_fits_of_the_same_design_with_rows_reordered():
    # The fit centers columns at a sample's mean, which changes with the row order;
    # the design's signature must not.
    X, y, groups = make_multilevel_regression(n_groups=300, group_size=50, random_state=5)
    order = np.random.default_rng(1).permutation(len(y))
    a = RandomInterceptRegressor().fit(X, y, groups=groups)
    b = RandomInterceptRegressor().fit(X.iloc[order], y.iloc[order], groups=groups.iloc[order])
    assert not np.allclose(a._result.units.x_offset, b._result.units.x_offset, rtol=1e-6)
    table = compare(a, b, names=["a", "b"])
    assert table["logLik"].iloc[0] == pytest.approx(table["logLik"].iloc[1], abs=1e-7)


def test_constraint_on_one_coefficient_equals_the_general_projection():
    # A unit contrast selects the other coefficients; scaling it by 1 + 1e-12 in one
    # more entry (numerically the same constraint) takes the null-space route.
    X, y, groups, _ = design("unbalanced/full/ml")
    model = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    stats = model._result.stats
    lam = model.variance_components_["group"] / model.variance_components_["residual"]
    for k in range(stats.n_params):
        unit = np.zeros(stats.n_params)
        unit[k] = 1.0
        general = unit.copy()
        general[(k + 1) % stats.n_params] = 1e-300  # a second nonzero entry
        value = obj.gls_beta(stats, lam)[0][k] + 0.1
        a = _profile.constrained_stats(stats, unit, value)
        b = _profile.constrained_stats(stats, general, value)
        assert a.n_params == b.n_params == stats.n_params - 1
        for t in [0.0, 0.5, lam, 3.0]:
            assert obj.profiled_criterion(a, t, "ml") == pytest.approx(
                obj.profiled_criterion(b, t, "ml"), rel=1e-12
            )


# -- compare(): each check and each column, one at a time --------------------------


def ml_fit(X, y, groups=None, **params):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no groups: OLS, said once
        return RandomInterceptRegressor(method="ml", **params).fit(X, y, groups=groups)


def test_compare_refuses_fewer_than_two_models_and_mismatched_names():
    X, y, groups, _ = design("balanced/full/ml")
    m = ml_fit(X, y, groups)
    with pytest.raises(ValueError, match=r"^compare needs two or more fitted models, got 1\.$"):
        compare(m)
    with pytest.raises(ValueError, match=r"^names has 3 entries for 2 models\.$"):
        compare(m, m, names=["a", "b", "c"])


def test_compare_messages_say_why_and_what_to_do():
    X, y, groups, _ = design("balanced/full/ml")
    reml = RandomInterceptRegressor().fit(X, y, groups=groups)
    reml_small = RandomInterceptRegressor().fit(X.iloc[:, :1], y, groups=groups)
    ml = ml_fit(X, y, groups)
    other = ml_fit(X, y + 1.0, groups)
    cases = [
        ((reml, ml), {}, (
            "Some models were fitted by REML and some by ML; their log-likelihoods are not "
            "comparable. Pass refit=True to refit the REML models with ML (as lme4's anova "
            "does), or fit all with the same method."
        )),
        ((reml, reml_small), {}, (
            "These REML fits have different fixed effects. A REML likelihood is that of "
            "residual contrasts, which depend on the fixed-effects design, so REML "
            "log-likelihoods of models with different fixed effects are not comparable. "
            "Pass refit=True to refit them with ML (as lme4's anova does), or fit them "
            "with method='ml'."
        )),
        ((ml, ml, other), {"names": ["first", "second", "third"]}, (
            "third was not fitted to the same data as first (the number of rows, the "
            "response, the groups or the weights differ); likelihoods of different data "
            "are not comparable. Fit all models to the same y and groups, with the same "
            "sample_weight."
        )),
    ]
    for models, kwargs, message in cases:
        with pytest.raises(ValueError) as error:
            compare(*models, **kwargs)
        assert str(error.value) == message


def test_compare_a_small_improvement_gives_its_own_chisq():
    """Chisq = 2 diff(logLik) also when the gain is below 1 (no floor but 0)."""
    X, y, groups, _ = design("balanced/full/ml")
    noise = pd.Series(np.random.default_rng(4).normal(size=len(y)), index=X.index)
    m0 = ml_fit(X, y, groups)
    m1 = ml_fit(X.assign(noise=noise), y, groups)
    table = compare(m0, m1)
    gain = m1.log_likelihood_ - m0.log_likelihood_
    assert 0 < gain < 0.5
    assert table["Chisq"].iloc[1] == pytest.approx(2 * gain, rel=1e-12)
    assert table["p_value"].iloc[1] == pytest.approx(st.chi2.sf(2 * gain, 1), rel=1e-12)


def test_compare_models_with_the_same_npar_get_no_p_value():
    """Df = 0 between two models of as many parameters: no test (NaN), as the first row."""
    X, y, groups, _ = design("balanced/full/ml")
    a = ml_fit(X.iloc[:, [0]], y, groups)
    b = ml_fit(X.iloc[:, [1]], y, groups)
    table = compare(a, b, names=["a", "b"])
    assert list(table.index) == ["a", "b"]  # equal npar: the order given
    assert table["Df"].iloc[1] == 0
    assert np.isnan(table["p_value"]).all()
    assert table["Chisq"].iloc[1] == pytest.approx(2 * abs(b.log_likelihood_ - a.log_likelihood_) * (b.log_likelihood_ > a.log_likelihood_), abs=1e-12)


def test_ml_refit_of_an_ml_fit_is_itself_and_keeps_what_a_summary_needs(capsys):
    X, y, groups, _ = design("unbalanced/full/reml")
    ml = ml_fit(X, y, groups)._result
    assert ml.ml is ml
    reml_model = RandomInterceptRegressor(tol=1e-3).fit(X, y.rename("score"), groups=groups.rename("school"))
    reml = reml_model._result
    copy = reml.ml
    assert copy is reml.ml  # one refit per result, shared by compare and the profiles
    assert copy.method == "ml" and copy.limits == Limits(200, 1e-3)
    assert copy.stats is reml.stats and copy.units is reml.units and copy.names == reml.names
    np.testing.assert_array_equal(copy.levels, reml.levels)
    np.testing.assert_array_equal(copy.residual_quantiles, reml.residual_quantiles)
    assert summarize(copy).formula == summarize(reml).formula == "score ~ x1 + x2 + z1 + (1 | school)"
    # The refit starts from the REML estimates and uses the model's own limits: a
    # loose tolerance stops early.
    start = (reml.beta, reml.s2u, reml.s2e)
    loose = _em.fit(reml.stats, "ml", limits=Limits(tol=1e-3), start=start)
    assert copy.n_iter == loose.n_iter < _em.fit(reml.stats, "ml", start=start).n_iter
    np.testing.assert_array_equal(copy.beta, loose.beta)
    tight = ml_fit(X, y, groups)
    assert copy.user_log_likelihood == pytest.approx(tight.log_likelihood_, abs=1e-4)
    # Refits, profiles and summaries print nothing (EM's own verbose is off there).
    compare(reml_model, tight, refit=True)
    reml_model.summary()
    assert capsys.readouterr().out == ""


def test_ml_refit_of_an_array_model_names_features_x0_x1():
    X, y, groups, _ = design("unbalanced/full/reml")
    model = RandomInterceptRegressor().fit(X.to_numpy(), y.to_numpy(), groups=groups.to_numpy())
    assert not hasattr(model, "feature_names_in_")
    assert summarize(model._result.ml).formula == "y ~ x0 + x1 + x2 + (1 | group)"


def test_refit_ml_of_a_model_without_groups_is_the_ols_ml_fit():
    """lm's ML log-likelihood: -n/2 (log(2 pi rss / n) + 1)."""
    X, y, groups, _ = design("balanced/full/reml")
    with pytest.warns(UserWarning, match="no groups"):
        reml = RandomInterceptRegressor().fit(X, y)
    grouped = RandomInterceptRegressor().fit(X, y, groups=groups)
    table = compare(reml, grouped, refit=True, names=["lm", "lmer"])
    design_ = np.column_stack([np.ones(len(y)), X])
    rss = np.sum((y - design_ @ np.linalg.lstsq(design_, y, rcond=None)[0]) ** 2)
    n = len(y)
    assert table.loc["lm", "logLik"] == pytest.approx(-n / 2 * (np.log(2 * np.pi * rss / n) + 1), rel=1e-12)
    assert table.loc["lm", "npar"] == X.shape[1] + 2 and table.loc["lmer", "npar"] == X.shape[1] + 3
    assert table.loc["lmer", "logLik"] == pytest.approx(ml_fit(X, y, groups).log_likelihood_, abs=1e-8)


def test_compare_reml_fits_without_intercept_by_their_design():
    X, y, groups, _ = design("balanced/full/reml")
    a = RandomInterceptRegressor(fit_intercept=False).fit(X, y, groups=groups)
    b = RandomInterceptRegressor(fit_intercept=False).fit(X.copy(), y, groups=groups)
    assert compare(a, b)["Chisq"].iloc[1] == 0.0
    for changed in (X * [1.0, 2.0], X + [0.0, 1.0], X.assign(x2=X["x2"].to_numpy()[::-1])):
        c = RandomInterceptRegressor(fit_intercept=False).fit(changed, y, groups=groups)
        with pytest.raises(ValueError, match="different fixed effects"):
            compare(a, c)
    with_intercept = RandomInterceptRegressor().fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="different fixed effects"):
        compare(a, with_intercept)


def test_compare_same_design_under_other_column_names_is_the_same_design():
    X, y, groups, _ = design("balanced/full/reml")
    a = RandomInterceptRegressor().fit(X, y, groups=groups)
    b = RandomInterceptRegressor().fit(X.set_axis(["u", "v"], axis=1), y, groups=groups)
    assert compare(a, b)["Chisq"].iloc[1] == 0.0


def test_compare_a_design_that_differs_in_the_eighth_digit_is_another_design():
    X, y, groups, _ = design("balanced/full/reml")
    a = RandomInterceptRegressor().fit(X, y, groups=groups)
    b = RandomInterceptRegressor().fit(X * [1.0, 1.0 + 3e-8], y, groups=groups)
    with pytest.raises(ValueError, match="different fixed effects"):
        compare(a, b)


def same_squares_other_total(y, delta):
    """a y + b with the sum of squares of y and a total larger by about delta."""
    n, s1, s2 = len(y), y.sum(), (y**2).sum()
    b = delta / (n - s1**2 / s2)
    a = (-b * s1 + np.sqrt(b**2 * s1**2 - s2 * (n * b**2 - s2))) / s2
    return a * y + b


def moved_within_a_group(y, groups, relative):
    """Two rows of one group moved by +d and -d: the same n, total and group totals,
    a sum of squares larger by ``relative`` of itself."""
    rows = np.flatnonzero(groups.to_numpy() == groups.iloc[0])[:2]
    a, b = y.iloc[rows]
    d = relative * np.sum(y.to_numpy() ** 2) / (2 * abs(a - b))
    moved = y.copy()
    moved.iloc[rows] += [d, -d] if a > b else [-d, d]
    return moved


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_compare_checks_the_response_moments_each_on_its_own(scale):
    X, y, groups, _ = design("balanced/full/ml")
    y = scale * (y + 50.0)  # a total far from 0
    with pytest.raises(ValueError, match="not fitted to the same data"):
        compare(ml_fit(X, y, groups), ml_fit(X, moved_within_a_group(y, groups, 1e-7), groups))
    # The same n and sum of squares, a total off by 1e-7 of sqrt(n sum y^2), which is
    # 100 times the tolerance and far below 1e-5 of the total (no groups, so no
    # group totals to tell them apart).
    size = np.sqrt(len(y) * np.sum(y.to_numpy() ** 2))
    other = same_squares_other_total(y, 1e-7 * size)
    assert np.sum(other**2) == pytest.approx(np.sum(y**2), rel=1e-15)
    assert 0.5e-7 * size < other.sum() - y.sum() < 1e-6 * abs(y.sum())
    without = ml_fit(X, y)
    for changed in (other, -y):
        with pytest.raises(ValueError, match="not fitted to the same data"):
            compare(without, ml_fit(X, changed))
    # Rows of another count: refused even with the same moments of y.
    with pytest.raises(ValueError, match="not fitted to the same data"):
        compare(without, ml_fit(X.iloc[:-1], y.iloc[:-1]))


def test_compare_checks_group_totals_to_their_scale():
    """Two rows of other groups swapped, whose y differ by 1e-6 of y's scale: same n,
    total and sum of squares, group totals off by far less than 1e-5 of themselves."""
    X, y, groups, _ = design("balanced/full/ml")
    codes = groups.to_numpy()
    values = y.to_numpy()
    scale = np.sqrt(np.mean(values**2))
    i = 0
    others = np.flatnonzero(codes != codes[i])
    j = others[np.argmin(np.abs(values[others] - values[i] - 1e-6 * scale))]
    assert 0 < abs(values[j] - values[i]) < 1e-3 * scale
    swapped = y.copy()
    swapped.iloc[[i, j]] = values[[j, i]]
    base = ml_fit(X, y, groups)
    with pytest.raises(ValueError, match="not fitted to the same data"):
        compare(base, ml_fit(X, swapped, groups))


# -- Satterthwaite: the pseudo-inverse and the degenerate contrast ------------------


def test_satterthwaite_drops_hessian_eigenvalues_below_1e_minus8_of_the_largest(monkeypatch):
    """H = diag(1e4, 5e-5): the second eigenvalue is below 1e-8 * 1e4 = 1e-4 and is
    dropped, so only the first direction of (theta, sigma) enters the df."""
    X, y, groups, _ = design("balanced/full/reml")
    m = RandomInterceptRegressor().fit(X, y, groups=groups)
    s2u, s2e = (m._result.s2u, m._result.s2e)
    stats = m._result.stats
    contrast = np.eye(stats.n_params)[1]
    monkeypatch.setattr(inf, "deviance_hessian", lambda *a: np.diag([1e4, 5e-5]))
    df = inf.satterthwaite_df(stats, s2u, s2e, "reml", contrast)
    a_inv = obj.gls_inverse(stats, s2u / s2e)
    var = s2e * a_inv[1, 1]
    grad = np.einsum("i,aij,j->a", contrast, inf.covariance_jacobian(s2u, s2e, obj.lambda_derivatives(stats, s2u / s2e, "reml")), contrast)
    expected = 2 * var**2 / (2 * grad[0] ** 2 / 1e4)
    np.testing.assert_allclose(df, [expected], rtol=1e-12)


def test_satterthwaite_df_of_a_contrast_free_of_the_variances_is_infinite():
    X, y, groups, _ = design("balanced/full/reml")
    m = RandomInterceptRegressor().fit(X, y, groups=groups)
    s2u, s2e = (m._result.s2u, m._result.s2e)
    zero = np.zeros((1, m._result.stats.n_params))
    df = inf.satterthwaite_df(m._result.stats, s2u, s2e, "reml", zero)
    assert df.dtype == np.float64
    np.testing.assert_array_equal(df, [np.inf])


# -- profiles: the constrained problem, models without groups, unbounded ICC ---------


def test_constrained_statistics_are_those_of_the_constrained_design():
    """contrast'beta = value as a design: beta = shift + N gamma, so the design is X N
    and the response y - X shift; every statistic, the group sums included, must be
    that design's, for a selection (one nonzero entry) and a general contrast."""
    x, y, codes = simulate(seed=2)
    stats = dense.naive_stats(x, y, codes)
    for contrast in (np.array([0.0, 1.0, 0.0]), np.array([0.3, -1.0, 2.0])):
        value = 0.7
        sub = _profile.constrained_stats(stats, contrast, value)
        shift = contrast * value / (contrast @ contrast)
        nonzero = np.flatnonzero(contrast)
        if nonzero.size == 1:
            null = np.delete(np.eye(3), nonzero[0], axis=1)
        else:
            from scipy.linalg import null_space

            null = null_space(contrast[None, :])
        ref = dense.naive_stats(x @ null, y - x @ shift, codes)
        np.testing.assert_allclose(sub.xtx, ref.xtx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sub.xty, ref.xty, rtol=1e-12, atol=1e-12)
        assert sub.yty == pytest.approx(ref.yty, rel=1e-12)
        for field in ("ss", "st", "tt", "s", "t"):
            np.testing.assert_allclose(
                getattr(sub.classes, field), getattr(ref.classes, field), rtol=1e-11, atol=1e-11
            )
        gamma = np.array([0.4, -0.2])
        np.testing.assert_allclose(
            sub.groups.residual_sums(gamma), ref.groups.residual_sums(gamma), rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(sub.group_xsum, ref.group_xsum, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sub.group_ysum, ref.group_ysum, rtol=1e-12, atol=1e-12)


def test_profile_intervals_without_groups_are_the_linear_models():
    """OLS, ML deviance n log(rss): at beta_k = b, rss rises by (b - b_hat)^2 / [(X'X)^-1]_kk,
    so the bounds are b_hat -/+ sqrt(rss (exp(crit / n) - 1) [(X'X)^-1]_kk); and
    sigma's are the roots of n log(s2 / s2_hat) + n (s2_hat / s2 - 1) = crit."""
    X, y, _, _ = design("balanced/full/reml")
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    table = _profile.profile_intervals(model._result)
    n = len(y)
    design_ = np.column_stack([np.ones(n), X])
    b_hat = np.linalg.lstsq(design_, y, rcond=None)[0]
    rss = np.sum((y - design_ @ b_hat) ** 2)
    crit = st.chi2.ppf(0.95, 1)
    half = np.sqrt(rss * np.expm1(crit / n) * np.diag(np.linalg.inv(design_.T @ design_)))
    np.testing.assert_allclose(table["lower"].iloc[2:], b_hat - half, rtol=1e-8)
    np.testing.assert_allclose(table["upper"].iloc[2:], b_hat + half, rtol=1e-8)
    assert np.isnan(table.loc["Groups"]).all()
    s2_hat = rss / n

    def excess(sigma):
        return n * np.log(sigma**2 / s2_hat) + n * (s2_hat / sigma**2 - 1) - crit

    sigma_hat = np.sqrt(s2_hat)
    lower = brentq(excess, 0.5 * sigma_hat, sigma_hat)
    upper = brentq(excess, sigma_hat, 2 * sigma_hat)
    np.testing.assert_allclose(table.loc["Residual"], [lower, upper], rtol=1e-8)


def test_icc_interval_reaches_1_when_the_likelihood_does_not_bound_lambda():
    """A fixed effect per group at level 2 (a dummy for each group but the first)
    absorbs every group mean: the REML criterion is flat in lambda, so the ICC's
    interval is [0, 1] (it used to fail in a Cholesky factorization of A(lambda) at
    huge lambda).  ML still bounds it: its criterion grows like G log lambda."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2, 3], 8)
    X = (groups[:, None] == [1, 2, 3]).astype(float)
    y = np.array([0.0, 1.0, 2.0, 1.5])[groups] + rng.normal(size=32)
    with pytest.warns(UserWarning, match="Only 4 groups"):
        reml = RandomInterceptRegressor().fit(X, y, groups=groups)
    assert reml.singular_
    stats = reml._result.stats
    flat = [obj.profiled_criterion(stats, lam, "reml") for lam in (0.0, 1.0, 1e4)]
    np.testing.assert_allclose(flat, flat[0], rtol=1e-9)
    assert _profile.icc_interval(reml._result) == (0.0, 1.0)
    assert _profile.lambda_profile_bounds(stats, "reml", 0.0, 0.95) == (0.0, np.inf)
    summary = reml.summary()
    assert summary.icc_interval == (0.0, 1.0)
    assert "[0.0000, 1.0000]" in str(summary)
    with pytest.warns(UserWarning, match="Only 4 groups"):
        ml = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    lo, hi = _profile.icc_interval(ml._result)
    assert lo == 0.0 and 0.05 < hi < 0.5


def test_profile_intervals_start_from_the_ml_refit_and_say_when_it_failed(monkeypatch):
    """The profiles of a REML fit start from its ML refit: one run of the EM driver
    from the REML estimates, with the model's limits, shared by every later profile;
    those of an ML fit start from the fit itself.  A refit that does not converge is
    said once, by the driver's ConvergenceWarning, which names it."""
    import warnings
    from dataclasses import replace

    from sklearn.exceptions import ConvergenceWarning

    X, y, groups, _ = design("unbalanced/full/reml")
    result = RandomInterceptRegressor().fit(X, y, groups=groups)._result
    ml_result = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)._result
    calls = []
    real_fit = _em.fit

    def fit(stats, method, **kwargs):
        calls.append((method, kwargs))
        return real_fit(stats, method, **kwargs)

    monkeypatch.setattr(_em, "fit", fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _profile.profile_intervals(result, fixed=False)
        _profile.profile_intervals(result)
    assert len(calls) == 1
    method, kwargs = calls[0]
    assert method == "ml" and kwargs["limits"] == Limits(200, 1e-10) and kwargs["purpose"] == "ml refit"
    np.testing.assert_array_equal(kwargs["start"][0], result.beta)
    assert kwargs["start"][1:] == (result.s2u, result.s2e)
    calls.clear()
    _profile.profile_intervals(ml_result, fixed=False)
    assert calls == []

    stuck = replace(result, limits=Limits(max_iter=1, tol=1e-14))
    with pytest.warns(ConvergenceWarning) as record:
        _profile.profile_intervals(stuck, fixed=False)
    assert [str(w.message) for w in record] == [
        "The ML refit of this REML model (for compare(refit=True) and the profile "
        "intervals) did not converge in max_iter=1 iterations (tol=1e-14); its "
        "likelihood-ratio tests and profile intervals may be off. Increase max_iter, "
        "or loosen tol."
    ]


def test_lambda_profile_stops_where_a_lambda_is_too_large_to_evaluate(record_calls):
    """No evaluation beyond n_max lambda = 1e8 (MAX_LAMBDA_N), where A(lambda) cancels."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2, 3], 8)
    X = (groups[:, None] == [1, 2, 3]).astype(float)
    y = np.array([0.0, 1.0, 2.0, 1.5])[groups] + rng.normal(size=32)
    with pytest.warns(UserWarning, match="Only 4 groups"):
        model = RandomInterceptRegressor().fit(X, y, groups=groups)
    calls = record_calls(obj, "profiled_criterion")
    assert _profile.lambda_profile_bounds(model._result.stats, "reml", 0.0, 0.95) == (0.0, np.inf)
    seen = [lam for _, lam, _ in calls]
    assert 8 * max(seen) <= 1e8 * (1 + 1e-12)
    assert 8 * max(seen) > 0.25e8  # it does go up to there


def test_group_intercepts_table_columns_index_and_default_level():
    X, y, groups, _ = design("unbalanced/full/reml")
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    table = inf.random_effects_intervals(model._result)
    assert list(table.columns) == ["estimate", "std_error", "lower", "upper"]
    assert table.index.name == "group" and list(table.index) == list(model.groups_)
    sd = np.sqrt(model.random_effects_var_)
    z = st.norm.ppf(0.975)
    np.testing.assert_allclose(table["estimate"], model.random_effects_)
    np.testing.assert_allclose(table["std_error"], sd)
    np.testing.assert_allclose(table["lower"], model.random_effects_ - z * sd, rtol=1e-14)
    np.testing.assert_allclose(table["upper"], model.random_effects_ + z * sd, rtol=1e-14)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, 95, -0.1])
def test_a_level_outside_the_open_unit_interval_is_refused(level):
    with pytest.raises(ValueError, match=rf"^level must be in \(0, 1\), got {level!r}; e.g. level=0.95\.$"):
        inf.check_level(level)


def test_group_variance_lrt_needs_groups():
    X, y, _, _ = design("balanced/full/reml")
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    with pytest.raises(ValueError) as error:
        group_variance_lrt(model._result)
    assert str(error.value) == (
        "group_variance_lrt needs a model fitted with groups; this one has no random "
        "effects to test. Refit with fit(X, y, groups=labels)."
    )


def test_compare_tolerates_rounding_at_any_scale_of_y_and_nothing_more():
    """Rows reordered (sums rounded otherwise) at y ~ 1e4 and at y ~ 1e-6 are the same
    data; at y ~ 1e-6, two group totals changed by 1e-7 of the data's scale are not."""
    X, y, groups, _ = design("balanced/full/ml")
    order = np.random.default_rng(3).permutation(len(y))
    for scale, shift in ((1e3, 1e4), (1e-6, 0.0)):
        ys = scale * y + shift
        a = ml_fit(X, ys, groups)
        b = ml_fit(X.iloc[order], ys.iloc[order], groups.iloc[order])
        assert compare(a, b)["Chisq"].iloc[1] == pytest.approx(0.0, abs=1e-6)
    ys = 1e-6 * (y + 50.0)
    # Two rows of other groups set eps apart, then swapped: n, total and squares are
    # the same, two group totals differ by eps, 100 times the tolerance and far below
    # 1e-5 of a group total.
    codes = groups.to_numpy()
    i, j = 0, int(np.flatnonzero(codes != codes[0])[0])
    eps = 1e-7 * np.sqrt(len(ys) * np.sum(ys.to_numpy() ** 2))
    close = ys.copy()
    close.iloc[j] = close.iloc[i] + eps
    swapped = close.copy()
    swapped.iloc[[i, j]] = close.iloc[[j, i]].to_numpy()
    assert eps < 1e-5 * abs(close[codes == codes[0]].sum())
    with pytest.raises(ValueError, match="not fitted to the same data"):
        compare(ml_fit(X, close, groups), ml_fit(X, swapped, groups))


# -- the summary's fast paths give scipy.stats' numbers, bit for bit --


def test_t_distribution_functions_are_scipy_stats_to_the_bit():
    """t tests and Wald intervals call scipy.special directly (scipy.stats' argument
    handling cost a tenth of a small summary): the same numbers, also at df = inf
    (the normal), NaN (a dropped feature) and at the tails."""
    df = np.array([1.0, 2.5, 22.81, 161.0, 4973.27, 1e12, np.inf, np.nan])
    x = np.array([0.0, 1e-8, 0.5, 1.96, 13.0, 110.4, 1e3, np.inf, np.nan])
    dfs, xs = np.meshgrid(df, x)
    np.testing.assert_array_equal(inf.t_sf(xs, dfs), st.t.sf(xs, dfs))
    q = np.array([0.5, 0.55, 0.9, 0.95, 0.975, 0.995, 1 - 1e-12])
    dfs, qs = np.meshgrid(df, q)
    np.testing.assert_array_equal(inf.t_quantile(qs, dfs), st.t.ppf(qs, dfs))
    assert inf.t_sf(1.96, np.inf) == pytest.approx(0.025, abs=1e-4)
    assert inf.t_quantile(0.975, 10.0) == pytest.approx(2.228139, abs=1e-6)


def test_fixed_effects_p_values_and_bounds_are_those_of_scipy_stats(case):
    _, model, _ = case
    for ddf, level in [("satterthwaite", 0.95), ("residual", 0.9), ("asymptotic", 0.8)]:
        fe = fixed_effects_table(model._result, level, ddf)
        p = 2.0 * st.t.sf(np.abs(fe["t_value"]), fe["df"])
        np.testing.assert_array_equal(fe["p_value"], p)
        half = st.t.ppf(0.5 + level / 2.0, fe["df"]) * fe["std_error"]
        np.testing.assert_array_equal(fe["ci_upper"], fe["estimate"] + half)
        np.testing.assert_array_equal(fe["ci_lower"], fe["estimate"] - half)


def test_group_variance_lrt_p_value_is_half_scipys_chi2_sf(case):
    _, model, _ = case
    test = group_variance_lrt(model._result)
    expected = 1.0 if test["statistic"] == 0 else 0.5 * st.chi2.sf(test["statistic"], 1)
    assert test["p_value"] == expected


def test_critical_value_is_chi2_quantile_kept_per_level():
    for level in (0.95, 0.9, np.float64(0.8), 0.999):
        assert _profile.critical_value(level) == st.chi2.ppf(level, 1)
    assert _profile.critical_value(0.95) == pytest.approx(1.959963984540054**2, rel=1e-14)
    before = _profile._chi2_1_quantile.cache_info().hits
    _profile.critical_value(0.95)
    assert _profile._chi2_1_quantile.cache_info().hits == before + 1


@pytest.mark.parametrize("floor_attainable", [False, True])
def test_profile_bounds_evaluate_each_point_once(floor_attainable):
    """The root finds start from points the searches evaluated already: each excess
    (a profile) is computed once, and the roots are those of the function."""
    seen = []

    def excess(x):
        seen.append(x)
        return 4.0 * (x - 1.0) ** 2

    floor = 0.0 if floor_attainable else None
    lo, hi = _profile.profile_bounds(
        excess, 1.0, 0.1, 3.0, floor=floor, floor_attainable=floor_attainable
    )
    half = np.sqrt(3.0 / 4.0)
    np.testing.assert_allclose([lo, hi], [1.0 - half, 1.0 + half], rtol=1e-9)
    assert len(seen) == len(set(seen)) and len(seen) > 10
    assert (0.0 in seen) == floor_attainable
