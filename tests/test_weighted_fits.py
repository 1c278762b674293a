"""Precision weights against lme4's weighted fits (tests/data/weights), a dense
weighted likelihood, and what the weights mean."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, optimize, stats

from skhlm import LinearMixedRegressor, RandomInterceptRegressor
from skhlm.data.accumulator import StatsAccumulator
from skhlm.data.groups import encode_groups
from skhlm.engine import criterion, steps

HERE = Path(__file__).parent / "data" / "weights"
FITS = json.loads((HERE / "lme4_weights.json").read_text())["fits"]
MODELS = pd.read_csv(HERE / "models.csv").fillna("")
# Keys of the fits skhlm must reproduce: all but lme4's zero-weight fits (see below).
AGREEING = sorted(k for k in FITS if not k.startswith("zero_weight/"))


def data(name):
    return pd.read_csv(HERE / f"{name}.csv")


def fitted(key):
    name, model, method = key.split("/")
    spec = MODELS[(MODELS["data"] == name) & (MODELS["model"] == model)].iloc[0]
    d = data(name)
    columns = spec["terms"].split(" + ")
    if spec["covariance"] == "intercept":
        estimator = RandomInterceptRegressor(method=method)
    else:
        estimator = LinearMixedRegressor(method=method, random_slopes=spec["slopes"].split(" + "), covariance=spec["covariance"])
    return estimator.fit(d[columns], d["y"], groups=d["g"], sample_weight=d["w"]), FITS[key], d


@pytest.mark.parametrize("key", AGREEING)
def test_lme4s_weighted_fits(key):
    # The unweighted references' tolerances (tests/test_lme4_agreement.py,
    # tests/test_slopes.py): fixed effects within 1e-5 of their SE, variances 1e-5
    # relative, logLik 1e-6, BLUPs 1e-4 of their conditional SD, SEs and df 1e-5.
    model, ref, _ = fitted(key)
    beta = np.r_[model.intercept_, model.coef_]
    se = np.asarray(ref["satterthwaite"]["std_error"])
    assert np.all(np.abs(beta - ref["fixef"]) <= 1e-5 * se)
    assert model.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-6)
    assert model.aic_ == pytest.approx(ref["AIC"], abs=2e-6)
    assert model.bic_ == pytest.approx(ref["BIC"], abs=2e-6)
    assert model.variance_components_["residual"] == pytest.approx(ref["s2e"], rel=1e-5)
    sigma = np.atleast_2d(model.variance_components_["group"])
    np.testing.assert_allclose(np.diag(sigma), np.diag(np.asarray(ref["sigma"])), rtol=1e-5)
    effects = np.asarray(model.random_effects_).reshape(len(ref["levels"]), -1)
    cond_var = np.asarray(ref["condVar"]).reshape(len(ref["levels"]), effects.shape[1], -1)
    cond_sd = np.sqrt(np.diagonal(cond_var, axis1=1, axis2=2))
    assert np.all(np.abs(effects - np.asarray(ref["ranef"]).reshape(effects.shape)) <= 1e-4 * cond_sd)
    ours_var = np.asarray(model.random_effects_var_).reshape(cond_var.shape)
    if key.split("/")[1] == "slopes_diag":  # lme4's condVar of (x || g): per-term blocks
        ours_var = ours_var * np.eye(ours_var.shape[1])
    assert np.all(np.abs(ours_var - cond_var) <= 1e-4 * cond_sd[:, :, None] * cond_sd[:, None, :])
    if sigma.shape[0] > 1 and key.split("/")[1] == "slopes":
        corr = sigma[0, 1] / np.sqrt(sigma[0, 0] * sigma[1, 1])
        ref_sigma = np.asarray(ref["sigma"])
        assert corr == pytest.approx(ref_sigma[0, 1] / np.sqrt(ref_sigma[0, 0] * ref_sigma[1, 1]), abs=1e-5)
    assert list(model.groups_) == ref["levels"]
    table = model.summary().fixed_effects
    np.testing.assert_allclose(table["std_error"], se, rtol=1e-5)
    np.testing.assert_allclose(table["df"], ref["satterthwaite"]["df"], rtol=1e-5)
    np.testing.assert_allclose(table["t_value"], ref["satterthwaite"]["t_value"], rtol=1e-5)


@pytest.mark.parametrize("key", ["ri_weights/ri/reml", "ri_weights/ri/ml"])
def test_variance_profile_intervals_are_lme4s(key):
    model, ref, _ = fitted(key)
    ci = model.summary().confint
    np.testing.assert_allclose(ci.loc["Groups"], ref["confint_profile"]["sd_(Intercept)|g"], rtol=1e-4)
    np.testing.assert_allclose(ci.loc["Residual"], ref["confint_profile"]["sigma"], rtol=1e-4)


def dense_ml_deviance(X, y, g, w, beta, s2u, s2e):
    """-2 log N(y; X beta, V), V_j = s2u 1 1' + s2e W_j^-1, group by group."""
    total = 0.0
    for label in np.unique(g):
        rows = g == label
        V = s2u * np.ones((rows.sum(), rows.sum())) + np.diag(s2e / w[rows])
        r = y[rows] - X[rows] @ beta
        factor = linalg.cho_factor(V)
        total += rows.sum() * np.log(2 * np.pi) + 2 * np.log(np.diag(factor[0])).sum()
        total += r @ linalg.cho_solve(factor, r)
    return total


def test_the_log_likelihood_is_the_dense_weighted_gaussian():
    for method in ("ml", "reml"):
        model, ref, d = fitted(f"ri_weights/ri/{method}")
        X = np.column_stack([np.ones(len(d)), d[["x1", "x2"]]])
        beta = np.r_[model.intercept_, model.coef_]
        s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
        deviance = dense_ml_deviance(X, d["y"].to_numpy(), d["g"].to_numpy(), d["w"].to_numpy(), beta, s2u, s2e)
        if method == "reml":  # the error contrasts: + log det(X'V^-1 X) - p log 2 pi
            Vinv_X = []
            for label in np.unique(d["g"]):
                rows = (d["g"] == label).to_numpy()
                V = s2u * np.ones((rows.sum(),) * 2) + np.diag(s2e / d["w"].to_numpy()[rows])
                Vinv_X.append(X[rows].T @ np.linalg.solve(V, X[rows]))
            deviance += np.linalg.slogdet(sum(Vinv_X))[1] - X.shape[1] * np.log(2 * np.pi)
        assert -0.5 * deviance == pytest.approx(model.log_likelihood_, rel=1e-12)
        assert -0.5 * deviance == pytest.approx(ref["logLik"], abs=1e-6)


@pytest.mark.slow
def test_lme4s_fixed_effect_profile_intervals_of_a_weighted_fit_are_wrong_and_ours_right():
    # lme4 1.1-31 profiles a weighted fit's fixed effects to intervals a twentieth of an
    # SE wide (x1: 0.96502 to 0.96744, SE 0.0454).  Ours are where the ML deviance,
    # profiled over the other parameters by a dense weighted likelihood, rises by
    # chi2(1)'s 95% point; at lme4's bounds it has risen by almost nothing.
    model, ref, d = fitted("ri_weights/ri/reml")
    X = np.column_stack([np.ones(len(d)), d[["x1", "x2"]]])
    y, g, w = d["y"].to_numpy(), d["g"].to_numpy(), d["w"].to_numpy()
    ml = RandomInterceptRegressor(method="ml").fit(d[["x1", "x2"]], d["y"], groups=d["g"], sample_weight=d["w"])
    best = dense_ml_deviance(X, y, g, w, np.r_[ml.intercept_, ml.coef_], ml.variance_components_["group"], ml.variance_components_["residual"])
    start = np.r_[ml.intercept_, ml.coef_[1], np.log(ml.variance_components_["group"]), np.log(ml.variance_components_["residual"])]

    def profiled(x1):
        def deviance(free):
            beta = np.array([free[0], x1, free[1]])
            return dense_ml_deviance(X, y, g, w, beta, np.exp(free[2]), np.exp(free[3]))

        return optimize.minimize(deviance, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000}).fun

    critical = stats.chi2.ppf(0.95, 1)
    lower, upper = model.summary().confint.loc["x1"]
    for bound in (lower, upper):
        assert profiled(bound) - best == pytest.approx(critical, abs=2e-3)
    for bound in ref["confint_profile"]["x1"]:
        assert profiled(bound) - best < 0.05 * critical


def test_scaling_the_weights_changes_only_s2e_in_lme4_and_here():
    for method in ("reml", "ml"):
        a, ra, _ = fitted(f"ri_weights/ri/{method}")
        b, rb, _ = fitted(f"scaled_weights/ri/{method}")  # the same weights x 1000
        np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-7)
        assert b.variance_components_["group"] == pytest.approx(a.variance_components_["group"], rel=1e-7)
        assert b.variance_components_["residual"] == pytest.approx(1000 * a.variance_components_["residual"], rel=1e-7)
        np.testing.assert_allclose(b.random_effects_, a.random_effects_, rtol=1e-6)
        np.testing.assert_allclose(b.random_effects_var_, a.random_effects_var_, rtol=1e-6)
        # The likelihood is invariant: log det(s2e / w) and sum log w / 2 cancel.
        assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-6)
        assert rb["logLik"] == pytest.approx(ra["logLik"], abs=1e-6)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_unit_weights_are_no_weights(method):
    d = data("slopes_weights")
    for make in (lambda: RandomInterceptRegressor(method=method), lambda: LinearMixedRegressor(method=method, random_slopes=["x1"])):
        plain = make().fit(d[["x1", "x2"]], d["y"], groups=d["g"])
        ones = make().fit(d[["x1", "x2"]], d["y"], groups=d["g"], sample_weight=np.ones(len(d)))
        np.testing.assert_allclose(ones.coef_, plain.coef_, rtol=1e-9)
        np.testing.assert_allclose(ones.variance_components_["group"], plain.variance_components_["group"], rtol=1e-8)
        assert ones.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-12)
        np.testing.assert_allclose(ones.random_effects_, plain.random_effects_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ones.summary().fixed_effects["df"], plain.summary().fixed_effects["df"], rtol=1e-7)


def test_a_zero_weight_drops_the_row_where_lme4_does_not():
    d, dropped = data("zero_weight"), data("zero_weight_dropped")
    for method in ("reml", "ml"):
        a = RandomInterceptRegressor(method=method).fit(d[["x1"]], d["y"], groups=d["g"], sample_weight=d["w"])
        b = RandomInterceptRegressor(method=method).fit(dropped[["x1"]], dropped["y"], groups=dropped["g"], sample_weight=dropped["w"])
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10)
        assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
        assert a.summary().n_obs == len(dropped)
        ref, ref_dropped = FITS[f"zero_weight/ri/{method}"], FITS[f"zero_weight_dropped/ri/{method}"]
        assert ref["logLik"] == "-Inf"  # lme4 adds log(0) / 2
        assert abs(ref["s2u"] / ref_dropped["s2u"] - 1) > 0.1  # and its estimates move
        assert b.log_likelihood_ == pytest.approx(ref_dropped["logLik"], abs=1e-6)


def test_a_group_of_zero_weights_is_gone_as_if_dropped():
    d = data("ri_weights")
    w = d["w"].to_numpy().copy()
    w[(d["g"] == "g00003").to_numpy()] = 0.0
    a = RandomInterceptRegressor().fit(d[["x1"]], d["y"], groups=d["g"], sample_weight=w)
    keep = w > 0
    b = RandomInterceptRegressor().fit(d[["x1"]][keep], d["y"][keep], groups=d["g"][keep], sample_weight=w[keep])
    assert "g00003" not in a.groups_ and len(a.groups_) == 59
    np.testing.assert_array_equal(a.random_effects_, b.random_effects_)
    assert a.log_likelihood_ == b.log_likelihood_


def test_integer_weights_are_not_repeated_rows_in_lme4_either():
    for method in ("reml", "ml"):
        weighted, rw, _ = fitted(f"ri_integer/ri/{method}")
        repeated, rr, _ = fitted(f"ri_integer_expanded/ri/{method}")
        assert abs(weighted.variance_components_["residual"] / repeated.variance_components_["residual"] - 1) > 0.05
        assert abs(rw["s2e"] / rr["s2e"] - 1) > 0.05


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: -np.ones(n), "negative value"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], r"1 NaN or infinite value\(s\), the first at row 0"),
        (lambda n: np.r_[np.ones(n - 1), np.inf], "NaN or infinite"),
        (lambda n: np.zeros(n), "0 for every row"),
        (lambda n: np.ones(n - 1), r"one weight per row \(n_samples=1025\); got shape \(1024,\)"),
        (lambda n: np.ones((n, 2)), "1-D"),
        (lambda n: np.array(["a"] * n), "must be numeric"),
    ],
)
def test_bad_weights_say_what_is_wrong(weights, message):
    d = data("ri_weights")
    for model in (RandomInterceptRegressor(), LinearMixedRegressor(random_slopes=["x1"])):
        X, y = d[["x1", "x2"]], d["y"]
        before = X.copy()
        with pytest.raises(ValueError, match=message):
            model.fit(X, y, groups=d["g"], sample_weight=weights(len(d)))
        assert not hasattr(model, "coef_")
        pd.testing.assert_frame_equal(X, before)


def test_per_group_sums_equal_size_classes():
    # Weighted fits sum over groups one by one; the same operations over size classes
    # (the unweighted path) give the same numbers on the same statistics.
    d = data("ri_weights")
    accumulator = StatsAccumulator()
    accumulator.add(d[["x1", "x2"]].to_numpy(), d["y"].to_numpy(), encode_groups(d["g"], len(d)), d["w"].to_numpy())
    per_group, _, _ = accumulator.finalize()
    from dataclasses import replace

    classes = replace(per_group, classes=per_group.groups.size_classes())
    assert type(per_group.classes).__name__ == "PerGroup"
    for lam in (0.0, 0.3, 4.0):
        for method in ("reml", "ml"):
            assert criterion.profiled_criterion(per_group, lam, method) == pytest.approx(
                criterion.profiled_criterion(classes, lam, method), rel=1e-12)
            a, b = criterion.lambda_derivatives(per_group, lam, method), criterion.lambda_derivatives(classes, lam, method)
            for name in ("rss", "rss1", "rss2", "logdet", "logdet1", "logdet2"):
                assert a[name] == pytest.approx(b[name], rel=1e-10, abs=1e-12)
        params = np.r_[criterion.gls_beta(per_group, 0.5)[0], 0.5, 1.0]
        np.testing.assert_allclose(steps.reml_update(per_group, params), steps.reml_update(classes, params), rtol=1e-11)
        factor = linalg.cho_factor(per_group.xtx)
        np.testing.assert_allclose(steps.ml_update(per_group, params, factor), steps.ml_update(classes, params, factor), rtol=1e-11)
        np.testing.assert_allclose(steps.moment_start(per_group), steps.moment_start(classes), rtol=1e-11)
    assert criterion.within_group_rss(per_group) == pytest.approx(criterion.within_group_rss(classes), rel=1e-11)
    assert criterion.boundary_slope(per_group, "reml") == pytest.approx(criterion.boundary_slope(classes, "reml"), rel=1e-11)


def test_weights_are_routed_through_model_selection():
    import sklearn
    from sklearn.model_selection import GroupKFold, cross_validate

    d = data("ri_weights")
    X, y, g, w = d[["x1", "x2"]], d["y"], d["g"], d["w"]
    with sklearn.config_context(enable_metadata_routing=True):
        model = RandomInterceptRegressor().set_fit_request(sample_weight=True).set_score_request(sample_weight=False)
        out = cross_validate(model, X, y, cv=GroupKFold(3), params={"groups": g, "sample_weight": w}, return_estimator=True, return_indices=True)
        for estimator, train in zip(out["estimator"], out["indices"]["train"]):
            direct = RandomInterceptRegressor().fit(X.iloc[train], y.iloc[train], groups=g.iloc[train], sample_weight=w.iloc[train])
            np.testing.assert_allclose(estimator.coef_, direct.coef_, rtol=1e-12)
        unasked = RandomInterceptRegressor()
        with pytest.raises(sklearn.exceptions.UnsetMetadataPassedError):
            cross_validate(unasked, X, y, cv=GroupKFold(3), params={"groups": g, "sample_weight": w})
