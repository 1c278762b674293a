"""Precision weights, lme4's ``weights=``: Var(e_i) = s2e / w_i.

Against lme4 1.1-31 / lmerTest 3.1-3 on every fit of tests/data/weights (R script
fit_weights.R), at the tolerances of the unweighted reference tests; against a dense
weighted Gaussian likelihood; and what the weights mean: scaling, unit, zero and
integer weights, bad weights, the engine's per-group sums against size classes, the
accumulator in chunks, and metadata routing.

Two findings about lme4 are tested, not hidden:

* a zero weight: lme4 keeps the row and adds log(0) / 2 to its log-likelihood, which
  is -Inf, and its optimizer never moves; skhlm drops the row, so its zero_weight fits
  are compared with lme4's zero_weight_dropped fits;
* lme4's profile intervals of the *fixed effects* of a weighted fit are wrong (a
  twentieth of an SE wide, and they move when the weights are scaled); ours are
  shown right by a dense profile of the ML deviance, and lme4's fixed-effect
  profile bounds are compared with ours only on the unit-weight fit.
"""

import json
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import optimize
from scipy import stats as st
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skhlm import LinearMixedRegressor, RandomInterceptRegressor
from skhlm.data.accumulator import StatsAccumulator
from skhlm.data.groups import encode_groups
from skhlm.engine import criterion, steps
from skhlm.engine import linalg as la
from skhlm.engine import result as fit_result
from skhlm.inference import vcov as inference

HERE = Path(__file__).parent / "data" / "weights"
REFERENCE = json.loads((HERE / "lme4_weights.json").read_text())
FITS = REFERENCE["fits"]
MODELS = pd.read_csv(HERE / "models.csv", keep_default_na=False)
KEYS = sorted(FITS)
LOG_2PI = np.log(2.0 * np.pi)
CHI2_95 = st.chi2.ppf(0.95, 1)  # 3.841458820694124

# The unweighted reference tests' tolerances (literals there, so not importable):
# tests/test_lme4_agreement.py and tests/test_inference.py for the random intercept,
# tests/test_slopes.py for random slopes.
TOLERANCES = {
    "ri": dict(
        fixef_se=1e-4,  # |beta - lme4's| < 1e-4 SE
        variance=1e-5,  # s2u, s2e relative
        loglik=1e-6,  # absolute, both ways
        loglik_approx=1e-6,
        aic=2e-6,  # AIC, BIC, criterion absolute
        blup_sd=1e-4,  # |BLUP - lme4's| < 1e-4 conditional SD
        condvar=1e-6,  # relative
        vcov=1e-5,  # relative, the whole matrix
        se=1e-5,  # std_error and t_value relative
        df=1e-3,  # Satterthwaite df relative
        p=1e-4,  # p-values relative (log scale below 1e-12)
        profile=1e-3,  # profile bounds relative
    ),
    "slopes": dict(
        fixef_se=1e-4,
        variance=1e-5,  # diag(Sigma) and s2e relative
        corr=1e-5,  # correlation absolute
        loglik=1e-6,  # never below lme4's by more
        loglik_approx=1e-5,  # and within this
        aic=1e-5,
        blup_sd=1e-4,
        condvar_sd=1e-4,  # |condVar - lme4's| < 1e-4 sd_a sd_b
        theta_rtol=1e-4,
        theta_atol=1e-6,
        vcov=1e-5,
        se=1e-5,
        df=1e-5,
        p=1e-3,  # where lme4's p > 1e-12
        profile=1e-3,
    ),
}
_SMALL_P = 1e-12  # tests/test_inference.py: below, p-values are compared as logs


def spec_of(key):
    name, model, _ = key.split("/")
    return MODELS[(MODELS["data"] == name) & (MODELS["model"] == model)].iloc[0]


def family(key):
    return "ri" if spec_of(key)["covariance"] == "intercept" else "slopes"


@lru_cache(maxsize=None)
def data(name):
    return pd.read_csv(HERE / f"{name}.csv")


def estimator_for(key):
    spec, method = spec_of(key), key.split("/")[2]
    if spec["covariance"] == "intercept":
        return RandomInterceptRegressor(method=method)
    return LinearMixedRegressor(method=method, random_slopes=spec["slopes"].split(" + "), covariance=spec["covariance"])


@lru_cache(maxsize=None)
def fitted(key):
    """Our fit of a reference key, on its data and weights (models.csv's model)."""
    d = data(key.split("/")[0])
    columns = spec_of(key)["terms"].split(" + ")
    return estimator_for(key).fit(d[columns], d["y"], groups=d["g"], sample_weight=d["w"])


@lru_cache(maxsize=None)
def summary_of(key):
    return fitted(key).summary()


def reference_for(key):
    """The lme4 fit ours must equal.  A zero weight drops its row here; lme4 keeps it
    and its fit is degenerate (test_lme4s_zero_weight_fit_is_not_the_dropped_rows),
    so our zero_weight fits must equal lme4's fit of the rows dropped."""
    if key.startswith("zero_weight/"):
        return FITS[key.replace("zero_weight/", "zero_weight_dropped/", 1)]
    return FITS[key]


def beta_of(model):
    return np.r_[model.intercept_, model.coef_]


def sigma_of(model):
    return np.atleast_2d(model.variance_components_["group"])


def effects_of(model, n_groups):
    """BLUPs (G, q) and condVar (G, q, q) in lme4's layout."""
    effects = np.asarray(model.random_effects_).reshape(n_groups, -1)
    q = effects.shape[1]
    return effects, np.asarray(model.random_effects_var_).reshape(n_groups, q, q)


def correlation(sigma):
    sd = np.sqrt(np.diag(sigma))
    return sigma / np.outer(sd, sd)


# -- 1. lme4 agreement on every reference fit -------------------------------------


def test_every_reference_fit_is_tested():
    # 16 fits: 8 data sets x (REML, ML), each in the parametrizations below; the two
    # zero_weight ones against lme4's zero_weight_dropped (see reference_for).
    assert len(KEYS) == 16 and len(MODELS) == 8
    assert {k.split("/")[0] for k in KEYS} == set(MODELS["data"])
    for key in KEYS:
        name, model, method = key.split("/")
        assert method in ("reml", "ml") and model in set(MODELS["model"])
        assert (key.startswith("zero_weight/")) == (FITS[key]["logLik"] == "-Inf")


@pytest.mark.parametrize("key", KEYS)
def test_fixed_effects_their_covariance_and_tests_are_lme4s(key):
    model, ref, tol = fitted(key), reference_for(key), TOLERANCES[family(key)]
    sat = ref["satterthwaite"]
    se = np.asarray(sat["std_error"])
    assert ref["fixef_names"][0] == "(Intercept)"
    assert np.all(np.abs(beta_of(model) - ref["fixef"]) < tol["fixef_se"] * se)
    if family(key) == "ri":
        cov = inference.coef_covariance(model._result)
    else:
        fit = model._result
        cov = fit.units.coef_covariance_to_user(fit.result.coef_cov)
    np.testing.assert_allclose(cov, ref["vcov"], rtol=tol["vcov"])
    table = summary_of(key).fixed_effects
    assert list(table.index) == ref["fixef_names"]
    np.testing.assert_allclose(table["estimate"], beta_of(model), rtol=1e-14)
    np.testing.assert_allclose(table["std_error"], se, rtol=tol["se"])
    np.testing.assert_allclose(table["t_value"], sat["t_value"], rtol=tol["se"])
    np.testing.assert_allclose(table["df"], sat["df"], rtol=tol["df"])
    p, ref_p = table["p_value"].to_numpy(), np.asarray(sat["p_value"])
    usual = ref_p >= _SMALL_P
    np.testing.assert_allclose(p[usual], ref_p[usual], rtol=tol["p"])
    if family(key) == "ri":  # test_inference.py: the small ones as logs
        np.testing.assert_allclose(np.log(p[~usual]), np.log(ref_p[~usual]), rtol=tol["p"])


@pytest.mark.parametrize("key", KEYS)
def test_variance_components_are_lme4s(key):
    model, ref, tol = fitted(key), reference_for(key), TOLERANCES[family(key)]
    assert not ref["isSingular"] and not model.singular_
    assert model.converged_
    sigma, ref_sigma = sigma_of(model), np.asarray(ref["sigma"])
    np.testing.assert_allclose(np.diag(sigma), np.diag(ref_sigma), rtol=tol["variance"])
    assert model.variance_components_["residual"] == pytest.approx(ref["s2e"], rel=tol["variance"])
    table = summary_of(key).random_effects
    np.testing.assert_allclose(table["variance"], np.append(np.diag(ref_sigma), ref["s2e"]), rtol=tol["variance"])
    if family(key) == "ri":
        assert model.variance_components_["group"] == pytest.approx(ref["s2u"], rel=tol["variance"])
        icc = ref["s2u"] / (ref["s2u"] + ref["s2e"])
        assert model.icc_ == pytest.approx(icc, rel=tol["variance"])
        return
    fit = model._result
    np.testing.assert_allclose(fit.user_theta, ref["theta"], rtol=tol["theta_rtol"], atol=tol["theta_atol"])
    np.testing.assert_allclose(correlation(sigma), correlation(ref_sigma), atol=tol["corr"])
    if spec_of(key)["covariance"] == "diagonal":
        assert sigma[0, 1] == sigma[1, 0] == 0.0
    else:
        np.testing.assert_allclose(summary_of(key).correlations.to_numpy(), correlation(ref_sigma), atol=tol["corr"])


@pytest.mark.parametrize("key", KEYS)
def test_log_likelihood_aic_bic_are_lme4s(key):
    model, ref, tol = fitted(key), reference_for(key), TOLERANCES[family(key)]
    assert model.log_likelihood_ >= ref["logLik"] - tol["loglik"]
    assert model.log_likelihood_ >= ref["default"]["logLik"] - tol["loglik"]  # lme4's default optimizer
    assert model.log_likelihood_ == pytest.approx(ref["logLik"], abs=tol["loglik_approx"])
    assert model.aic_ == pytest.approx(ref["AIC"], abs=tol["aic"])
    assert model.bic_ == pytest.approx(ref["BIC"], abs=tol["aic"])
    summary = summary_of(key)
    crit = summary.reml_criterion if key.endswith("/reml") else summary.deviance
    assert crit == pytest.approx(ref["criterion"], abs=tol["aic"])
    # Rows: a zero weight drops its row (zero_weight.csv has 324, 45 of weight 0).
    assert summary.n_obs == ref["n_obs"] == int((data(key.split("/")[0])["w"] > 0).sum())
    assert summary.n_groups == ref["n_groups"]


@pytest.mark.parametrize("key", KEYS)
def test_random_effects_and_conditional_variances_are_lme4s(key):
    model, ref, tol = fitted(key), reference_for(key), TOLERANCES[family(key)]
    assert [str(label) for label in model.groups_] == ref["levels"]
    n_groups = len(ref["levels"])
    effects, cond = effects_of(model, n_groups)
    ref_effects = np.asarray(ref["ranef"]).reshape(effects.shape)
    ref_cond = np.asarray(ref["condVar"]).reshape(cond.shape)
    cond_sd = np.sqrt(np.diagonal(ref_cond, axis1=1, axis2=2))
    assert np.all(np.abs(effects - ref_effects) < tol["blup_sd"] * cond_sd)
    if family(key) == "ri":
        np.testing.assert_allclose(cond[:, 0, 0], ref_cond[:, 0, 0], rtol=tol["condvar"])
        return
    if spec_of(key)["covariance"] == "diagonal":
        # lme4's condVar of (1 + x1 || g) has each term's block only; ours has the
        # effects' posterior covariance too (not 0): compare the diagonal blocks.
        assert np.abs(cond[:, 0, 1]).max() > 1e-4
        cond = cond * np.eye(cond.shape[1])
    assert np.all(np.abs(cond - ref_cond) <= tol["condvar_sd"] * cond_sd[:, :, None] * cond_sd[:, None, :])


RI_PROFILED = [k for k in KEYS if family(k) == "ri"]


@pytest.mark.parametrize("key", RI_PROFILED)
def test_variance_profile_intervals_are_lme4s(key):
    ref, tol = reference_for(key), TOLERANCES["ri"]
    ci = summary_of(key).confint
    assert list(ci.index) == ["Groups", "Residual"] + ref["fixef_names"]
    np.testing.assert_allclose(ci.loc["Groups"], ref["confint_profile"]["sd_(Intercept)|g"], rtol=tol["profile"])
    np.testing.assert_allclose(ci.loc["Residual"], ref["confint_profile"]["sigma"], rtol=tol["profile"])


@pytest.mark.slow
def test_slope_variance_profile_intervals_are_lme4s():
    # One slopes profile (about 5 s): the unstructured REML fit, with its correlation.
    # As tests/test_slopes.py: the variance parameters' rows, in lme4's order.
    key = "slopes_weights/slopes/reml"
    ref = FITS[key]["confint_profile"]
    ci = summary_of(key).confint
    assert list(ci.index) == ["sd_(Intercept)|g", "cor_x1.(Intercept)|g", "sd_x1|g", "sigma"]
    for name, (lo, hi) in ci.iterrows():
        expected = np.asarray(ref[name])
        assert np.all((expected != 0) & (np.abs(expected) != 1))  # no bound at a limit here
        np.testing.assert_allclose([lo, hi], expected, rtol=TOLERANCES["slopes"]["profile"])


def test_lme4s_fixed_effect_profile_intervals_are_ours_when_the_weights_are_1():
    # ri_integer_expanded has all weights 1: there lme4's fixed-effect profile is
    # right, and ours agree with it, so the error below is lme4's with weights.
    key = "ri_integer_expanded/ri/reml"
    assert (data("ri_integer_expanded")["w"] == 1).all()
    ref = FITS[key]
    ci = summary_of(key).confint
    for name in ref["fixef_names"]:
        np.testing.assert_allclose(ci.loc[name], ref["confint_profile"][name], rtol=TOLERANCES["ri"]["profile"])


# -- 2. A naive dense weighted likelihood -------------------------------------------


class Dense:
    """The model on each group's rows, padded to the largest group: y (G, m), the
    design X (G, m, p) with its intercept column, Z (G, m, q) = [1, slopes], and
    V_j = Z_j Sigma Z_j' + s2e W_j^-1 per group, formed whole.  A padding row has
    X = Z = y = 0 and V's diagonal entry 1: it adds nothing to any sum, det or
    solve.  Textbook formulas, no use of the model's structure."""

    def __init__(self, d, columns, slopes=(), scale_rows=False):
        d = d[d["w"] > 0]
        labels, codes = np.unique(d["g"].to_numpy(), return_inverse=True)
        sizes = np.bincount(codes)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        position = np.arange(codes.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        n_groups, m = labels.size, sizes.max()
        w = d["w"].to_numpy(float)[order]
        X = np.column_stack([np.ones(len(d)), d[list(columns)].to_numpy(float)])[order]
        Z = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in slopes])[order]
        y = d["y"].to_numpy(float)[order]
        if scale_rows:  # sqrt(w) times every row: lme4's problem, of unit weights
            root = np.sqrt(w)
            X, Z, y, w = X * root[:, None], Z * root[:, None], y * root, np.ones_like(w)
        self.X = np.zeros((n_groups, m, X.shape[1]))
        self.Z = np.zeros((n_groups, m, Z.shape[1]))
        self.y = np.zeros((n_groups, m))
        self.w_inv = np.ones((n_groups, m))
        self.mask = np.zeros((n_groups, m), dtype=bool)
        self.X[codes, position], self.Z[codes, position], self.y[codes, position] = X, Z, y
        self.w_inv[codes, position] = 1.0 / w
        self.mask[codes, position] = True
        self.n, self.p, self.labels = len(d), X.shape[1], labels

    def covariance(self, sigma, s2e):
        V = self.Z @ np.atleast_2d(sigma) @ np.swapaxes(self.Z, 1, 2)
        m = V.shape[1]
        V[:, np.arange(m), np.arange(m)] += np.where(self.mask, s2e * self.w_inv, 1.0)
        return V

    def ml_deviance(self, beta, sigma, s2e, X=None, y=None):
        """-2 log N(y; X beta, V), summed over the groups."""
        X = self.X if X is None else X
        y = self.y if y is None else y
        V = self.covariance(sigma, s2e)
        r = y - X @ beta
        sign, logdet = np.linalg.slogdet(V)
        assert np.all(sign > 0)
        quad = np.einsum("gi,gi->", r, np.linalg.solve(V, r[..., None])[..., 0])
        return self.n * LOG_2PI + logdet.sum() + quad

    def gls(self, sigma, s2e, X=None, y=None):
        """The GLS beta (X'V^-1X)^-1 X'V^-1 y and X'V^-1X."""
        X = self.X if X is None else X
        y = self.y if y is None else y
        V = self.covariance(sigma, s2e)
        solved = np.linalg.solve(V, np.concatenate([X, y[..., None]], axis=2))
        xvx = np.einsum("gip,giq->pq", X, solved[..., :-1])
        xvy = np.einsum("gip,gi->p", X, solved[..., -1])
        return np.linalg.solve(xvx, xvy), xvx

    def log_likelihood(self, beta, sigma, s2e, method):
        """ML: -deviance / 2.  REML (lme4's constants): at the GLS beta,
        -(deviance + log det X'V^-1X - p log 2 pi) / 2."""
        if method == "ml":
            return -0.5 * self.ml_deviance(beta, sigma, s2e)
        beta, xvx = self.gls(sigma, s2e)
        return -0.5 * (self.ml_deviance(beta, sigma, s2e) + np.linalg.slogdet(xvx)[1] - self.p * LOG_2PI)


@lru_cache(maxsize=None)
def dense_of(name, scale_rows=False):
    spec = MODELS[MODELS["data"] == name].iloc[0]
    slopes = spec["slopes"].split(" + ") if spec["slopes"] else ()
    return Dense(data(name), spec["terms"].split(" + "), slopes, scale_rows)


DENSE_KEYS = [k for k in KEYS if k.split("/")[0] in ("ri_weights", "ri_integer", "slopes_weights", "slopes_diag_weights")]


@pytest.mark.parametrize("key", DENSE_KEYS)
def test_lme4s_log_likelihood_is_the_dense_weighted_gaussian(key):
    # Finding lme4's constants: its logLik is the density of y with
    # V_j = Z_j Sigma Z_j' + s2e W_j^-1, REML adding -log det(X'V^-1X) / 2 and
    # + p log(2 pi) / 2.  Equivalently it fits the rows times sqrt(w) (unit
    # weights), whose density lacks sum(log w) / 2, and adds that back: the JSON's
    # sum_log_w.
    ref, dense = FITS[key], dense_of(key.split("/")[0])
    method = key.split("/")[2]
    ours = dense.log_likelihood(np.asarray(ref["fixef"]), ref["sigma"], ref["s2e"], method)
    assert ours == pytest.approx(ref["logLik"], rel=1e-9)
    scaled = dense_of(key.split("/")[0], scale_rows=True)
    unscaled = scaled.log_likelihood(np.asarray(ref["fixef"]), ref["sigma"], ref["s2e"], method)
    assert abs(unscaled - ref["logLik"]) > 0.1  # the constant matters
    assert unscaled + 0.5 * ref["sum_log_w"] == pytest.approx(ref["logLik"], rel=1e-9)
    units = fitted(key)._result.units
    assert units.log_weights == pytest.approx(ref["sum_log_w"], rel=1e-12)


@pytest.mark.parametrize("key", DENSE_KEYS)
def test_the_fit_is_the_dense_weighted_gaussian_at_its_parameters(key):
    model, dense = fitted(key), dense_of(key.split("/")[0])
    method = key.split("/")[2]
    sigma, s2e = sigma_of(model), model.variance_components_["residual"]
    expected = dense.log_likelihood(beta_of(model), sigma, s2e, method)
    assert model.log_likelihood_ == pytest.approx(expected, rel=1e-9)
    gls, _ = dense.gls(sigma, s2e)
    np.testing.assert_allclose(beta_of(model), gls, rtol=1e-9)
    # A different beta is not the ML beta: the dense ML deviance is higher there.
    if method == "ml":
        nudged = beta_of(model) + 0.1 * summary_of(key).fixed_effects["std_error"].to_numpy()
        assert dense.ml_deviance(nudged, sigma, s2e) > dense.ml_deviance(gls, sigma, s2e) + 1e-3


@pytest.mark.parametrize("key", ["ri_weights/ri/reml", "slopes_weights/slopes/ml", "zero_weight/ri/reml"])
def test_the_scaled_residuals_are_lme4s_pearson_residuals(key):
    # summary's "Scaled residuals": lme4's residuals(m, "pearson", scaled = TRUE),
    # sqrt(w) (y - fitted) / sigma, with R's default quantiles (numpy's linear);
    # rows of weight 0 dropped.  (The JSON has no lme4 numbers for these.)
    model, d = fitted(key), data(key.split("/")[0])
    d = d[d["w"] > 0]
    columns = spec_of(key)["terms"].split(" + ")
    resid = np.sqrt(d["w"]) * (d["y"] - model.predict(d[columns], groups=d["g"]))
    resid /= np.sqrt(model.variance_components_["residual"])
    expected = np.quantile(resid, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(model._result.residual_quantiles, expected, rtol=1e-10, atol=1e-12)
    unweighted = np.quantile(resid / np.sqrt(d["w"]), [0, 0.25, 0.5, 0.75, 1])
    assert np.abs(unweighted - expected).max() > 0.05


# -- 1 (continued). lme4's fixed-effect profile of a weighted fit is wrong ----------


def dense_profile(dense, start, fixed=None):
    """The dense ML deviance minimized over (s2u, s2e) by Nelder-Mead in their logs,
    the betas at their (constrained) GLS values; ``fixed`` = (k, value) holds
    coefficient k (0 = intercept) at a value.  Returns the minimum."""
    X, y = dense.X, dense.y
    if fixed is not None:
        k, value = fixed
        y = y - X[..., k] * value
        X = np.delete(X, k, axis=2)

    def deviance(log_variances):
        s2u, s2e = np.exp(log_variances)
        beta, _ = dense.gls([[s2u]], s2e, X, y)
        return dense.ml_deviance(beta, [[s2u]], s2e, X, y)

    res = optimize.minimize(
        deviance, np.log(start), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000}
    )
    assert res.success
    return res.fun


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ri_weights", "ri_integer"])
def test_fixed_effect_profile_bounds_are_where_the_dense_ml_deviance_rises_by_chi2_and_lme4s_are_not(name):
    # summary().confint profiles the ML deviance (of the ML refit, for a REML fit, as
    # lme4's confint) over s2u, s2e and the other betas (skhlm/inference/profile.py:
    # profile_contrast).  Independently: a dense weighted likelihood, minimized by
    # scipy at each bound.  Ours rise by chi2(1)'s 95% point; at lme4's bounds (e.g.
    # ri_weights x1: 0.96502 to 0.96744 with SE 0.0454) the deviance has hardly
    # risen: lme4's intervals are a twentieth of an SE wide.
    key = f"{name}/ri/reml"
    ref, dense = FITS[key], dense_of(name)
    ml = fitted(f"{name}/ri/ml")
    start = (ml.variance_components_["group"], ml.variance_components_["residual"])
    best = dense_profile(dense, start)
    assert best == pytest.approx(-2 * ml.log_likelihood_, rel=1e-10)  # our ML fit is the optimum
    ci = summary_of(key).confint
    np.testing.assert_allclose(ci.loc[ref["fixef_names"]], summary_of(f"{name}/ri/ml").confint.loc[ref["fixef_names"]], rtol=1e-9)
    ml_table = summary_of(f"{name}/ri/ml").fixed_effects
    for k, coef in enumerate(ref["fixef_names"]):
        for bound in ci.loc[coef]:
            assert dense_profile(dense, start, (k, bound)) - best == pytest.approx(CHI2_95, abs=1e-4)
        # Ours about as wide as the ML Wald interval (the intercept's 4% wider: s2u
        # is uncertain with 40 to 60 groups); lme4's a fraction of it.
        wald = 2 * np.sqrt(CHI2_95) * ml_table.loc[coef, "std_error"]
        assert ci.loc[coef, "upper"] - ci.loc[coef, "lower"] == pytest.approx(wald, rel=0.05)
        lme4 = np.asarray(ref["confint_profile"][coef])
        assert lme4[1] - lme4[0] < 0.25 * wald
        for bound in lme4:
            assert dense_profile(dense, start, (k, bound)) - best < 0.05 * CHI2_95


def test_our_fixed_effect_profile_ignores_the_scale_of_the_weights_and_lme4s_does_not():
    ours = summary_of("ri_weights/ri/reml").confint
    scaled = summary_of("scaled_weights/ri/reml").confint
    for name in ("(Intercept)", "x1", "x2"):
        np.testing.assert_allclose(scaled.loc[name], ours.loc[name], rtol=1e-9)
        a = np.asarray(FITS["ri_weights/ri/reml"]["confint_profile"][name])
        b = np.asarray(FITS["scaled_weights/ri/reml"]["confint_profile"][name])
        assert np.abs(a - b).max() > 1e-4  # lme4's move with the scale of the weights
    np.testing.assert_allclose(scaled.loc["Groups"], ours.loc["Groups"], rtol=1e-9)
    np.testing.assert_allclose(scaled.loc["Residual"], np.sqrt(1000) * ours.loc["Residual"], rtol=1e-9)


# -- 3. What the weights mean -------------------------------------------------------


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_scaling_the_weights_changes_only_s2e(method):
    # Var(e_i) = s2e / w_i: weights c w with c s2e give the same V, so the same
    # likelihood (logLik difference 0, not n log(c) / 2: log det(c s2e / (c w)) and
    # sum log(c w) / 2 cancel), beta, s2u, BLUPs and condVar; only s2e scales by c.
    d, s = data("ri_weights"), data("scaled_weights")
    pd.testing.assert_frame_equal(s.drop(columns="w"), d.drop(columns="w"))
    np.testing.assert_allclose(s["w"], 1000 * d["w"], rtol=1e-12)
    a, ref_a = fitted(f"ri_weights/ri/{method}"), FITS[f"ri_weights/ri/{method}"]
    exact = RandomInterceptRegressor(method=method).fit(d[["x1", "x2"]], d["y"], groups=d["g"], sample_weight=1000 * d["w"])
    for b, ref_b in ((fitted(f"scaled_weights/ri/{method}"), FITS[f"scaled_weights/ri/{method}"]), (exact, None)):
        np.testing.assert_allclose(beta_of(b), beta_of(a), rtol=1e-9)
        assert b.variance_components_["group"] == pytest.approx(a.variance_components_["group"], rel=1e-9)
        assert b.variance_components_["residual"] == pytest.approx(1000 * a.variance_components_["residual"], rel=1e-9)
        np.testing.assert_allclose(b.random_effects_, a.random_effects_, rtol=1e-9)
        np.testing.assert_allclose(b.random_effects_var_, a.random_effects_var_, rtol=1e-9)
        assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-9)
        np.testing.assert_allclose(b.summary().fixed_effects["df"], a.summary().fixed_effects["df"], rtol=1e-9)
        np.testing.assert_allclose(b.summary().fixed_effects["std_error"], a.summary().fixed_effects["std_error"], rtol=1e-9)
        if ref_b is None:
            continue
        # lme4 shows the same: s2e x 1000, s2u, beta and logLik unchanged.
        assert ref_b["s2e"] == pytest.approx(1000 * ref_a["s2e"], rel=1e-6)
        assert ref_b["s2u"] == pytest.approx(ref_a["s2u"], rel=1e-6)
        np.testing.assert_allclose(ref_b["fixef"], ref_a["fixef"], rtol=1e-7)
        assert ref_b["logLik"] == pytest.approx(ref_a["logLik"], abs=1e-6)
        # ... while sum(log w) moves by n log 1000, which the criterion of the
        # sqrt(w)-scaled rows (lme4's, before it adds sum(log w) / 2) offsets.
        n = ref_a["n_obs"]
        assert ref_b["sum_log_w"] - ref_a["sum_log_w"] == pytest.approx(n * np.log(1000), rel=1e-12)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("kind", ["intercept", "unstructured", "diagonal"])
def test_unit_weights_are_no_weights(kind, method):
    # The weighted path (per-group sums) against the unweighted one (size classes),
    # with random slopes too.  Measured: <= 5e-13, Satterthwaite's df of random
    # slopes 6e-10 (central differences of step 1e-5 amplify rounding).
    d = data("slopes_weights")
    if kind == "intercept":
        make = lambda: RandomInterceptRegressor(method=method)  # noqa: E731
    else:
        make = lambda: LinearMixedRegressor(method=method, random_slopes=["x1"], covariance=kind)  # noqa: E731
    X, y, g = d[["x1", "x2"]], d["y"], d["g"]
    plain = make().fit(X, y, groups=g)
    ones = make().fit(X, y, groups=g, sample_weight=np.ones(len(d)))
    assert type(plain._result.stats.classes).__name__ == "SizeClasses"
    assert type(ones._result.stats.classes).__name__ == "PerGroup"
    np.testing.assert_allclose(beta_of(ones), beta_of(plain), rtol=1e-9)
    np.testing.assert_allclose(sigma_of(ones), sigma_of(plain), rtol=1e-9, atol=0)
    assert ones.variance_components_["residual"] == pytest.approx(plain.variance_components_["residual"], rel=1e-9)
    assert ones.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(ones.random_effects_, plain.random_effects_, rtol=1e-9)
    np.testing.assert_allclose(ones.random_effects_var_, plain.random_effects_var_, rtol=1e-9, atol=0)
    a, b = ones.summary().fixed_effects, plain.summary().fixed_effects
    np.testing.assert_allclose(a["std_error"], b["std_error"], rtol=1e-9)
    np.testing.assert_allclose(a["df"], b["df"], rtol=1e-9 if kind == "intercept" else 1e-8)
    assert ones._result.units.log_weights == 0.0


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_a_scalar_weight_weighs_every_row_the_same(method):
    d = data("ri_weights")
    X, y, g = d[["x1", "x2"]], d["y"], d["g"]
    plain = RandomInterceptRegressor(method=method).fit(X, y, groups=g)
    four = RandomInterceptRegressor(method=method).fit(X, y, groups=g, sample_weight=4.0)
    np.testing.assert_allclose(beta_of(four), beta_of(plain), rtol=1e-9)
    assert four.variance_components_["residual"] == pytest.approx(4 * plain.variance_components_["residual"], rel=1e-9)
    assert four.variance_components_["group"] == pytest.approx(plain.variance_components_["group"], rel=1e-9)
    assert four.log_likelihood_ == pytest.approx(plain.log_likelihood_, abs=1e-9)


def assert_same_fit(a, b, tol=1e-10):
    np.testing.assert_array_equal(a.groups_, b.groups_)
    np.testing.assert_allclose(beta_of(a), beta_of(b), rtol=tol)
    np.testing.assert_allclose(sigma_of(a), sigma_of(b), rtol=tol)
    assert a.variance_components_["residual"] == pytest.approx(b.variance_components_["residual"], rel=tol)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=tol)
    np.testing.assert_allclose(a.random_effects_, b.random_effects_, rtol=tol)
    np.testing.assert_allclose(a.random_effects_var_, b.random_effects_var_, rtol=tol)
    sa, sb = a.summary(), b.summary()
    np.testing.assert_allclose(sa.fixed_effects["std_error"], sb.fixed_effects["std_error"], rtol=tol)
    np.testing.assert_allclose(sa.fixed_effects["df"], sb.fixed_effects["df"], rtol=1e-8)
    assert sa.n_obs == sb.n_obs and sa.n_groups == sb.n_groups
    # The scaled (Pearson) residuals are those of the rows of positive weight.
    np.testing.assert_allclose(sa.residual_quantiles, sb.residual_quantiles, rtol=tol, atol=1e-12)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_a_zero_weight_is_the_row_dropped(method):
    d, dropped = data("zero_weight"), data("zero_weight_dropped")
    assert (d["w"] == 0).sum() == 45 and len(dropped) == len(d) - 45
    pd.testing.assert_frame_equal(d[d["w"] > 0].reset_index(drop=True), dropped)
    for make in (lambda: RandomInterceptRegressor(method=method), lambda: LinearMixedRegressor(method=method, random_slopes=["x1"])):
        a = make().fit(d[["x1"]], d["y"], groups=d["g"], sample_weight=d["w"])
        b = make().fit(dropped[["x1"]], dropped["y"], groups=dropped["g"], sample_weight=dropped["w"])
        assert_same_fit(a, b)
        assert a.summary().n_obs == len(dropped)
        np.testing.assert_allclose(a.predict(d[["x1"]], groups=d["g"]), b.predict(d[["x1"]], groups=d["g"]), rtol=1e-10)


def test_zero_weights_are_dropped_without_a_copy_of_x():
    from skhlm._intercept import prepare

    d = data("zero_weight")
    X = d[["x1"]].to_numpy()
    prepared = prepare(RandomInterceptRegressor(), X, d["y"], d["g"], d["w"])
    assert np.shares_memory(prepared.X, X) and prepared.X.shape == X.shape


@pytest.mark.parametrize("slopes", [False, True])
def test_a_group_of_zero_weights_is_gone_as_if_dropped(slopes):
    d = data("slopes_weights")
    w = d["w"].to_numpy().copy()
    gone = (d["g"] == "g00007").to_numpy()
    w[gone] = 0.0
    keep = w > 0
    make = (lambda: LinearMixedRegressor(random_slopes=["x1"])) if slopes else RandomInterceptRegressor
    X, y, g = d[["x1", "x2"]], d["y"], d["g"]
    a = make().fit(X, y, groups=g, sample_weight=w)
    b = make().fit(X[keep], y[keep], groups=g[keep], sample_weight=w[keep])
    assert "g00007" not in list(a.groups_) and len(a.groups_) == 39
    assert_same_fit(a, b)
    # The group's rows are now a new group's: the population-level prediction.
    np.testing.assert_allclose(a.predict(X[gone], groups=g[gone]), a.predict(X[gone], population=True), rtol=1e-14)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_lme4s_zero_weight_fit_is_not_the_dropped_rows(method):
    # lme4 1.1-31 keeps a row of weight 0 and adds log(0) / 2 to the log-likelihood:
    # -Inf, so its criterion is Inf everywhere, the optimizer reports "Gradient
    # contains NAs" and stops where it started (the same theta for REML and ML), and
    # its profiles are NA.  The estimates are not those of the data without the rows.
    ref, dropped = FITS[f"zero_weight/ri/{method}"], FITS[f"zero_weight_dropped/ri/{method}"]
    assert ref["logLik"] == "-Inf" and ref["AIC"] == "Inf" and ref["BIC"] == "Inf" and ref["criterion"] == "Inf"
    assert ref["default"]["logLik"] == "-Inf"
    assert "Gradient contains NAs" in ref["messages"]
    assert set(map(tuple, ref["confint_profile"].values())) == {("NA", "NA")}
    assert FITS["zero_weight/ri/reml"]["theta"] == FITS["zero_weight/ri/ml"]["theta"]
    assert ref["n_obs"] == 324 and dropped["n_obs"] == 279
    assert abs(ref["s2u"] / dropped["s2u"] - 1) > 0.3
    assert abs(ref["s2e"] / dropped["s2e"] - 1) > 0.1
    assert abs(ref["fixef"][0] - dropped["fixef"][0]) > 1e-3 * dropped["satterthwaite"]["std_error"][0]
    # Ours on the rows with weights 0 is lme4's fit of the rows dropped, not this.
    ours = fitted(f"zero_weight/ri/{method}")
    assert ours.variance_components_["group"] == pytest.approx(dropped["s2u"], rel=1e-5)
    assert abs(ours.variance_components_["group"] / ref["s2u"] - 1) > 0.3


def test_integer_weights_are_not_repeated_rows():
    # ri_integer_expanded repeats each row of ri_integer w times.  The weighted sums
    # (X'WX, X'Wy, y'Wy, each group's sum of w, w x, w y) are the same, but n counts
    # rows: 378 against 1144.  So the likelihoods differ, in lme4 and here.
    a, b = data("ri_integer"), data("ri_integer_expanded")
    assert set(a["w"]) == {1, 2, 3, 4, 5} and (b["w"] == 1).all() and len(b) == a["w"].sum() == 1144
    stats = {}
    for name, d in (("weighted", a), ("repeated", b)):
        acc = StatsAccumulator()
        acc.add(d[["x1"]].to_numpy(), d["y"].to_numpy(), encode_groups(d["g"], len(d)), d["w"].to_numpy(float))
        stats[name] = acc.finalize()
    (sw, uw, lw), (sr, ur, lr) = stats["weighted"], stats["repeated"]
    np.testing.assert_array_equal(lw, lr)
    np.testing.assert_allclose(uw.x_offset, ur.x_offset, rtol=1e-12)
    np.testing.assert_allclose(uw.x_scale, ur.x_scale, rtol=1e-12)
    np.testing.assert_allclose(sw.xtx, sr.xtx, rtol=1e-11, atol=1e-11 * np.abs(sr.xtx).max())
    np.testing.assert_allclose(sw.xty, sr.xty, rtol=1e-11, atol=1e-11 * np.abs(sr.xty).max())
    assert sw.yty == pytest.approx(sr.yty, rel=1e-11)
    np.testing.assert_allclose(sw.group_sizes, sr.group_sizes, rtol=1e-14)
    np.testing.assert_allclose(sw.group_xsum, sr.group_xsum, rtol=1e-11, atol=1e-11 * np.abs(sr.group_xsum).max())
    np.testing.assert_allclose(sw.group_ysum, sr.group_ysum, rtol=1e-11, atol=1e-11 * np.abs(sr.group_ysum).max())
    assert (sw.n_obs, sr.n_obs) == (378, 1144) and sw.weight == sr.weight == 1144.0
    # At a common variance ratio the GLS beta is therefore the same ...
    for lam in (0.3, 2.0):
        np.testing.assert_allclose(criterion.gls_beta(sw, lam)[0], criterion.gls_beta(sr, lam)[0], rtol=1e-10, atol=1e-12)
    # ... but the fits are not, in lme4 (its numbers) nor here (agreeing with lme4).
    for method in ("reml", "ml"):
        rw, rr = FITS[f"ri_integer/ri/{method}"], FITS[f"ri_integer_expanded/ri/{method}"]
        weighted, repeated = fitted(f"ri_integer/ri/{method}"), fitted(f"ri_integer_expanded/ri/{method}")
        for s2e_w, s2e_r, ll_w, ll_r, se_w, se_r in (
            (rw["s2e"], rr["s2e"], rw["logLik"], rr["logLik"], rw["satterthwaite"]["std_error"][1], rr["satterthwaite"]["std_error"][1]),
            (weighted.variance_components_["residual"], repeated.variance_components_["residual"],
             weighted.log_likelihood_, repeated.log_likelihood_,
             summary_of(f"ri_integer/ri/{method}").fixed_effects["std_error"].iloc[1],
             summary_of(f"ri_integer_expanded/ri/{method}").fixed_effects["std_error"].iloc[1]),
        ):
            assert s2e_w / s2e_r > 3.0  # 1.31 against 0.40
            assert ll_w - ll_r > 700  # -467 against -1188 (REML)
            assert se_w / se_r > 1.7  # x1's SE: 0.0366 against 0.0203
        assert abs(rw["fixef"][1] - rr["fixef"][1]) > 0.05 * rr["satterthwaite"]["std_error"][1]
        assert weighted.coef_[0] - repeated.coef_[0] == pytest.approx(rw["fixef"][1] - rr["fixef"][1], abs=1e-7)
        assert abs(rw["s2u"] / rr["s2u"] - 1) > 0.02


def test_weights_of_any_container_are_read_by_position():
    d = data("ri_weights")
    X, y, g, w = d[["x1", "x2"]], d["y"], d["g"], d["w"].to_numpy()
    expected = RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=w)
    import polars as pl

    for given in (list(w), pd.Series(w, index=np.arange(len(w))[::-1]), pl.Series(w), tuple(w)):
        model = RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=given)
        assert model.log_likelihood_ == pytest.approx(expected.log_likelihood_, rel=1e-12)
        np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-10)
    # Not the same fit as no weights: the weights are used.
    assert abs(RandomInterceptRegressor().fit(X, y, groups=g).coef_[0] - expected.coef_[0]) > 1e-3


BAD_WEIGHTS = [
    (lambda w: np.where(np.arange(w.size) == 7, -0.5, w), r"1 negative value\(s\), the first at row 7 \(-0\.5\)"),
    (lambda w: np.where(np.arange(w.size) >= 3, np.nan, w), r"591 NaN or infinite value\(s\), the first at row 3"),
    (lambda w: np.where(np.arange(w.size) == w.size - 1, np.inf, w), r"1 NaN or infinite value\(s\), the first at row 593"),
    (lambda w: np.zeros(w.size), "sample_weight is 0 for every row"),
    (lambda w: w[:-1], re.escape("1-D with one weight per row (n_samples=594); got shape (593,)")),
    (lambda w: np.column_stack([w, w]), re.escape("1-D with one weight per row (n_samples=594); got shape (594, 2)")),
    (lambda w: np.array(["1.0"] * w.size), "sample_weight must be numeric; got dtype <U3"),
]


@pytest.mark.parametrize("bad, message", BAD_WEIGHTS, ids=["negative", "nan", "inf", "all_zero", "length", "2d", "strings"])
@pytest.mark.parametrize("slopes", [False, True])
def test_bad_weights_are_refused_with_what_is_wrong(bad, message, slopes):
    # A failed fit leaves no fitted state, even on a model fitted before, and the
    # inputs as they were.
    d = data("slopes_weights")
    X, y, g = d[["x1", "x2"]].copy(), d["y"].copy(), d["g"].copy()
    w = bad(d["w"].to_numpy().copy())
    before = (X.copy(), y.copy(), g.copy(), w.copy())
    model = LinearMixedRegressor(random_slopes=["x1"]) if slopes else RandomInterceptRegressor()
    model.fit(X, y, groups=g, sample_weight=d["w"])
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, groups=g, sample_weight=w)
    assert not [name for name in vars(model) if name.endswith("_") or name == "_result"]
    pd.testing.assert_frame_equal(X, before[0])
    pd.testing.assert_series_equal(y, before[1])
    pd.testing.assert_series_equal(g, before[2])
    np.testing.assert_array_equal(w, before[3])


def test_a_fit_with_zero_weights_leaves_its_inputs_alone():
    d = data("zero_weight")
    X, y, g, w = d[["x1"]].copy(), d["y"].copy(), d["g"].copy(), d["w"].to_numpy().copy()
    RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=w)
    pd.testing.assert_frame_equal(X, d[["x1"]])
    pd.testing.assert_series_equal(y, d["y"])
    np.testing.assert_array_equal(w, d["w"].to_numpy())


# -- 5. The engine: per-group sums against size classes; the accumulator -------------


def weighted_stats(name, columns):
    d = data(name)
    acc = StatsAccumulator()
    acc.add(d[columns].to_numpy(), d["y"].to_numpy(), encode_groups(d["g"], len(d)), d["w"].to_numpy(float))
    return acc.finalize()[0]


def size_classes_of(stats, sort):
    """The same statistics summed by size classes (the unweighted path's), from the
    same GroupSums; ``sort``: the groups in order of their weight sums first, so
    that groups of equal sums share a class."""
    groups = stats.groups
    if sort:
        order = np.argsort(groups.sizes, kind="stable")
        groups = replace(groups, sizes=groups.sizes[order], x=groups.x[order], y=groups.y[order], level=groups.level[order])
    return replace(stats, groups=groups, classes=groups.size_classes())


def assert_close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("name, columns, sort, n_classes", [
    ("ri_weights", ["x1", "x2"], False, 60),  # every weight sum distinct
    ("ri_integer", ["x1"], True, 29),  # integer weights: 40 groups, 29 sums
])
def test_per_group_sums_give_the_size_classes_numbers(name, columns, sort, n_classes):
    per_group = weighted_stats(name, columns)
    classes = size_classes_of(per_group, sort)
    assert type(per_group.classes).__name__ == "PerGroup"
    assert type(classes.classes).__name__ == "SizeClasses" and classes.classes.size.shape[0] == n_classes
    assert classes.classes.count.sum() == per_group.n_groups
    factor = la.cho_factor(per_group.xtx)
    for lam in (0.0, 0.05, 0.8, 20.0):
        for method in ("reml", "ml"):
            assert_close(criterion.profiled_criterion(per_group, lam, method), criterion.profiled_criterion(classes, lam, method))
            a = criterion.lambda_derivatives(per_group, lam, method)
            b = criterion.lambda_derivatives(classes, lam, method)
            assert set(a) == set(b) == {"rss", "rss1", "rss2", "logdet", "logdet1", "logdet2", "a_inv", "a1"}
            for field in a:
                assert_close(a[field], b[field])
        s2e = 0.9
        s2u = lam * s2e
        for x, y in zip(steps.reml_e_step(per_group, s2u, s2e), steps.reml_e_step(classes, s2u, s2e)):
            assert_close(x, y)
        # One ML update from a point that is not the optimum, so that it moves.
        params = np.r_[criterion.gls_beta(per_group, 0.5)[0] + 0.01, s2u + 0.1, s2e]
        updated = steps.ml_update(per_group, params, factor)
        assert_close(updated, steps.ml_update(classes, params, factor))
        assert np.abs(updated - params).max() > 1e-3
        assert_close(steps.reml_update(per_group, params), steps.reml_update(classes, params))
    assert_close(steps.moment_start(per_group), steps.moment_start(classes))
    for method in ("reml", "ml"):
        assert_close(criterion.boundary_slope(per_group, method), criterion.boundary_slope(classes, method))
    assert_close(criterion.within_group_rss(per_group), criterion.within_group_rss(classes))


def dense_weighted_stats(X, y, w, labels, units, levels):
    """X'WX, X'Wy, y'Wy and each group's sums of w, w x, w y of the design
    [1, (X - offset) / scale], formed from the rows (two passes: the offset first)."""
    D = np.column_stack([np.ones(len(y)), (X - units.x_offset) / units.x_scale])
    t = (y - units.y_offset) / units.y_scale
    codes = np.searchsorted(levels, labels)
    G = len(levels)
    return dict(
        xtx=(D * w[:, None]).T @ D,
        xty=(D * w[:, None]).T @ t,
        yty=float(t @ (w * t)),
        sizes=np.bincount(codes, weights=w, minlength=G),
        xsum=np.stack([np.bincount(codes, weights=w * D[:, k], minlength=G) for k in range(D.shape[1])], axis=1),
        ysum=np.bincount(codes, weights=w * t, minlength=G),
    )


def test_weighted_statistics_in_chunks_in_any_order_or_merged_are_one_chunks():
    d = data("ri_weights")
    X = d[["x1", "x2"]].to_numpy().copy()
    X[:, 1] += 1e6  # a large offset: centering keeps the digits
    y, w, labels = d["y"].to_numpy(), d["w"].to_numpy(), d["g"].to_numpy()
    n = len(y)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(n)  # chunks across groups: a group spans chunks

    def accumulate(chunks):
        acc = StatsAccumulator()
        for rows in chunks:
            acc.add(X[rows], y[rows], encode_groups(labels[rows], rows.size), w[rows])
        return acc

    first, second = shuffled[:400], shuffled[400:]
    merged = accumulate([first])
    merged.merge(accumulate([second]))
    accumulators = {
        "one": accumulate([np.arange(n)]),
        "two": accumulate([first, second]),
        "reversed": accumulate([second, first]),
        "three": accumulate([shuffled[:1], shuffled[1:700], shuffled[700:]]),
        "merged": merged,
    }
    centered = {}
    fits = {}
    for name, acc in accumulators.items():
        stats, units, levels = acc.finalize()
        dense = dense_weighted_stats(X, y, w, labels, units, levels)
        assert_close(stats.xtx, dense["xtx"])
        assert_close(stats.xty, dense["xty"])
        assert stats.yty == pytest.approx(dense["yty"], rel=1e-12)
        assert_close(stats.group_sizes, dense["sizes"])
        assert_close(stats.group_xsum, dense["xsum"])  # column 0: the intercept's, n_j
        assert_close(stats.group_ysum, dense["ysum"])
        assert stats.n_obs == n and stats.weight == pytest.approx(w.sum(), rel=1e-14)
        assert units.log_weights == pytest.approx(np.log(w).sum(), rel=1e-12)
        # The centered cross-products about the weighted mean, in the user's units:
        # the same for every chunking, whatever point each was centered at.
        xtx = stats.xtx
        c = (xtx[1:, 1:] - np.outer(xtx[0, 1:], xtx[0, 1:]) / xtx[0, 0]) * np.outer(units.x_scale, units.x_scale)
        centered[name] = c
        fits[name] = fit_result.fit(stats, units, "reml", levels=levels)
    mean = w @ X / w.sum()
    exact = ((X - mean) * w[:, None]).T @ (X - mean)  # two passes, from the rows
    for name, c in centered.items():
        assert_close(c, exact)
        assert_close(c, centered["one"])
        a, b = fits[name], fits["one"]
        np.testing.assert_allclose(a.coef_and_intercept()[0], b.coef_and_intercept()[0], rtol=1e-10)
        assert a.user_log_likelihood == pytest.approx(b.user_log_likelihood, rel=1e-12)
    # One pass without centering would have lost the digits this test asks for.
    naive = (X * w[:, None]).T @ X - np.outer(w @ X, w @ X) / w.sum()
    assert abs(naive[1, 1] / exact[1, 1] - 1) > 1e-8


def test_the_accumulator_drops_a_group_whose_rows_all_weigh_0():
    # fit drops rows of weight 0 before the pass; chunks given to the accumulator
    # directly (out-of-core, dask) may hold them, and a group with no weight left is
    # gone from the statistics, as if its rows had never been added.
    d = data("ri_weights")
    X, y, labels = d[["x1", "x2"]].to_numpy(), d["y"].to_numpy(), d["g"].to_numpy()
    w = d["w"].to_numpy().copy()
    w[labels == "g00011"] = 0.0
    w[::50] = 0.0  # and some rows of other groups
    keep = w > 0
    with_zeros = StatsAccumulator()
    with_zeros.add(X[:500], y[:500], encode_groups(labels[:500], 500), w[:500])
    with_zeros.add(X[500:], y[500:], encode_groups(labels[500:], len(y) - 500), w[500:])
    dropped = StatsAccumulator()
    dropped.add(X[keep], y[keep], encode_groups(labels[keep], int(keep.sum())), w[keep])
    (a, ua, la_), (b, ub, lb) = with_zeros.finalize(), dropped.finalize()
    assert "g00011" not in la_ and len(la_) == 59
    np.testing.assert_array_equal(la_, lb)
    assert a.n_obs == b.n_obs == int(keep.sum()) and a.n_groups == b.n_groups == 59
    assert ua.log_weights == pytest.approx(ub.log_weights, rel=1e-12)
    fa = fit_result.fit(a, ua, "reml", levels=la_)
    fb = fit_result.fit(b, ub, "reml", levels=lb)
    np.testing.assert_allclose(fa.coef_and_intercept()[0], fb.coef_and_intercept()[0], rtol=1e-10)
    assert fa.user_log_likelihood == pytest.approx(fb.user_log_likelihood, rel=1e-12)
    np.testing.assert_allclose(fa.random_effects[0], fb.random_effects[0], rtol=1e-9, atol=1e-12)


# -- 6. Metadata routing -------------------------------------------------------------


@pytest.mark.parametrize("slopes", [False, True])
def test_weights_are_routed_to_each_fold(slopes):
    d = data("slopes_weights")
    X, y, g, w = d[["x1", "x2"]], d["y"], d["g"], d["w"]

    def make():
        return LinearMixedRegressor(random_slopes=["x1"]) if slopes else RandomInterceptRegressor()

    with sklearn.config_context(enable_metadata_routing=True):
        model = make().set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        pipe = make_pipeline(FunctionTransformer(), model)
        out = cross_validate(pipe, X, y, cv=GroupKFold(3), params={"groups": g, "sample_weight": w},
                             return_estimator=True, return_indices=True)
    for fold, train, test, score in zip(out["estimator"], out["indices"]["train"], out["indices"]["test"], out["test_score"]):
        assert set(g.iloc[train]).isdisjoint(g.iloc[test])  # GroupKFold got the groups
        fold_model = fold[-1]
        direct = make().fit(X.iloc[train], y.iloc[train], groups=g.iloc[train], sample_weight=w.iloc[train])
        np.testing.assert_allclose(beta_of(fold_model), beta_of(direct), rtol=1e-12)
        np.testing.assert_allclose(sigma_of(fold_model), sigma_of(direct), rtol=1e-12)
        assert fold_model.log_likelihood_ == pytest.approx(direct.log_likelihood_, rel=1e-12)
        unweighted = make().fit(X.iloc[train], y.iloc[train], groups=g.iloc[train])
        assert np.abs(beta_of(fold_model) - beta_of(unweighted)).max() > 1e-3  # the weights arrived
        expected = direct.score(X.iloc[test], y.iloc[test], groups=g.iloc[test], sample_weight=w.iloc[test])
        assert score == pytest.approx(expected, rel=1e-12)
        assert score != pytest.approx(direct.score(X.iloc[test], y.iloc[test], groups=g.iloc[test]), rel=1e-6)


def test_weights_passed_but_not_requested_are_refused_by_scikit_learn():
    d = data("ri_weights")
    X, y, g, w = d[["x1", "x2"]], d["y"], d["g"], d["w"]
    message = r"\[sample_weight\] are passed but are not explicitly set as requested or not requested for RandomInterceptRegressor\.fit"
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(UnsetMetadataPassedError, match=message):
            cross_validate(RandomInterceptRegressor(), X, y, cv=GroupKFold(3), params={"groups": g, "sample_weight": w})
        with pytest.raises(UnsetMetadataPassedError, match=message):
            cross_validate(make_pipeline(FunctionTransformer(), RandomInterceptRegressor()), X, y, cv=GroupKFold(3),
                           params={"groups": g, "sample_weight": w}, error_score="raise")
