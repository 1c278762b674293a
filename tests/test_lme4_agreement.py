"""RandomInterceptRegressor against lme4 1.1-31 on the reference data sets.

Tolerances are the project's requirements: fixed effects within 1e-4 of their
standard errors, variance components within 1e-5 relative, a log-likelihood never
below lme4's by more than 1e-6, BLUPs within 1e-4 of their conditional SDs.
"""

import numpy as np
import pytest
from lme4_reference import design, fit_keys

from skhlm import RandomInterceptRegressor


@pytest.fixture(scope="module", params=fit_keys())
def case(request):
    key = request.param
    X, y, groups, ref = design(key)
    model = RandomInterceptRegressor(method=key.split("/")[-1]).fit(X, y, groups=groups)
    return model, ref


def test_fixed_effects(case):
    model, ref = case
    ours = np.concatenate([[model.intercept_], model.coef_])
    theirs = np.array([ref["fixef"][name] for name in ref["fixef_names"]])
    se = np.sqrt(np.diag(ref["vcov"]))
    np.testing.assert_array_less(np.abs(ours - theirs), 1e-4 * se)


def test_variance_components(case):
    model, ref = case
    vc = model.variance_components_
    np.testing.assert_allclose(vc["group"], ref["s2u"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(vc["residual"], ref["s2e"], rtol=1e-5, atol=0)
    icc = ref["s2u"] / (ref["s2u"] + ref["s2e"])
    np.testing.assert_allclose(model.icc_, icc, rtol=1e-5, atol=1e-12)


def test_log_likelihood_at_least_lme4s(case):
    model, ref = case
    assert model.log_likelihood_ >= ref["logLik"] - 1e-6
    assert model.log_likelihood_ >= ref["default"]["logLik"] - 1e-6
    # And not above it either by more than the optimizers' noise: same objective.
    assert model.log_likelihood_ <= ref["logLik"] + 1e-6
    np.testing.assert_allclose(model.aic_, ref["AIC"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(model.bic_, ref["BIC"], rtol=0, atol=2e-6)


def test_blups(case):
    model, ref = case
    assert list(model.groups_) == ref["levels"]
    diff = np.abs(model.random_effects_ - np.array(ref["ranef"]))
    np.testing.assert_array_less(diff, 1e-4 * np.sqrt(ref["condVar"]) + 1e-300)


def test_singular_flag_and_iterations(case):
    model, ref = case
    assert model.singular_ == ref["isSingular"]
    assert model.converged_
    assert model.n_iter_ <= 20
    if ref["isSingular"]:
        assert model.variance_components_["group"] == 0.0
        assert model.n_iter_ == 1


def test_conditional_variances(case):
    model, ref = case
    np.testing.assert_allclose(model.random_effects_var_, ref["condVar"], rtol=1e-6, atol=0)
