"""The fitted-result contract, the unit map, the EM driver's start and limits, and the
criterion's named pieces."""

import dataclasses
import warnings

import numpy as np
import pytest
from conftest import simulate_multilevel
from sklearn.exceptions import ConvergenceWarning

from skhlm import RandomInterceptRegressor
from skhlm._summary import fixed_effects_table, summarize
from skhlm.engine import criterion as crit
from skhlm.engine import em
from skhlm.engine.em import Limits
from skhlm.engine.result import FitResult


@pytest.fixture(scope="module")
def fitted():
    X, y, codes = simulate_multilevel(
        7, coef=[2.0, -1.0], n_groups=30, sizes=(3, 15), s2u=0.6, offset=50.0, intercept=100.0
    )
    X = np.column_stack([X, 2.0 * X[:, 0]])  # a redundant third column, dropped
    with pytest.warns(UserWarning, match=r"rank deficient: column\(s\) \[2\]"):
        model = RandomInterceptRegressor().fit(X, y, groups=codes)
    return X, y, codes, model


def test_the_estimator_keeps_only_its_fit_result_and_the_attributes_read_from_it(fitted):
    X, _, _, model = fitted
    result = model._result
    assert isinstance(result, FitResult)
    assert [k for k in vars(model) if k.startswith("_")] == ["_result"]
    coef, intercept = result.units.coef_to_user(result.beta)
    np.testing.assert_array_equal(model.coef_, coef)
    assert model.intercept_ == intercept
    y2 = result.units.y_scale**2
    assert model.variance_components_ == {"group": result.s2u * y2, "residual": result.s2e * y2}
    np.testing.assert_array_equal(model.random_effects_, result.random_effects[0])
    np.testing.assert_array_equal(model.random_effects_var_, result.random_effects[1])
    np.testing.assert_array_equal(model.groups_, result.levels)
    assert model.n_iter_ == result.n_iter and model.converged_ is result.converged
    np.testing.assert_array_equal(
        model.log_likelihood_history_,
        result.log_likelihood_history - result.units.log_jacobian(len(X), "reml"),
    )
    assert model.aic_ == -2 * model.log_likelihood_ + 2 * (3 + 2)  # (Intercept), x0, x1; s2u, s2e
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.s2u = 1.0


def test_the_unit_map_is_one_affine_map(fitted):
    X, _, _, model = fitted
    units, beta = model._result.units, model._result.beta
    t, shift, estimated = units.coef_map()
    np.testing.assert_array_equal(estimated, [True, True, True, False])
    user = t @ beta + shift
    np.testing.assert_allclose(user, np.concatenate([[model.intercept_], model.coef_]), rtol=1e-12)
    np.testing.assert_array_equal(t[3], 0.0)
    # A row's prediction through the internal design is the user's x'beta.
    z = units.design_rows(X[:5])
    np.testing.assert_allclose(units.y_offset + units.y_scale * (z @ beta), X[:5] @ model.coef_ + model.intercept_, rtol=1e-12)
    cov = model._result.coef_covariance()
    assert np.isnan(cov[3]).all() and np.isnan(cov[:, 3]).all()
    internal = model._result.s2e * model._result.derivatives["a_inv"]
    np.testing.assert_allclose(cov[:3, :3], t[:3] @ internal @ t[:3].T, rtol=1e-12)


def test_the_fixed_effects_table_factors_a_once(fitted, record_calls):
    """Standard errors and Satterthwaite's df share one factorization of A(lambda)."""
    _, _, _, model = fitted
    result = dataclasses.replace(model._result)  # a fresh result: nothing cached
    calls = record_calls(crit, "lambda_derivatives")
    fixed_effects_table(result)
    fixed_effects_table(result)
    assert len(calls) == 1 and calls[0][1] == result.lam and calls[0][2] == "reml"


def test_a_summary_without_the_rows_says_its_residuals_were_not_computed(fitted):
    _, _, _, model = fitted
    summary = summarize(dataclasses.replace(model._result, residual_quantiles=None))
    assert summary.residual_quantiles is None
    assert (
        "Scaled residuals: not computed (they need the rows; this fit kept only the "
        f"sufficient statistics of its {summary.n_obs} rows)"
    ) in str(summary).splitlines()
    assert "Scaled residuals:\n" in str(model.summary())


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_em_started_at_its_optimum_stays_there(fitted, method):
    _, _, _, model = fitted
    stats = model._result.stats
    cold = em.fit(stats, method)
    warm = em.fit(stats, method, start=(cold.beta, cold.s2u, cold.s2e))
    assert warm.converged and warm.n_iter == 1
    np.testing.assert_allclose([warm.s2u, warm.s2e], [cold.s2u, cold.s2e], rtol=1e-9)
    np.testing.assert_allclose(warm.beta, cold.beta, rtol=1e-9, atol=1e-12)


def test_a_start_on_the_boundary_is_lifted_off_it(fitted):
    """EM cannot move s2u away from 0: a start there begins at the moment estimate of
    s2u instead, and reaches the interior optimum."""
    _, _, _, model = fitted
    stats = model._result.stats
    cold = em.fit(stats, "ml")
    assert cold.s2u > 0
    lifted = em.fit(stats, "ml", start=(cold.beta, 0.0, cold.s2e))
    assert lifted.converged and lifted.s2u == pytest.approx(cold.s2u, rel=1e-8)


def test_the_driver_keeps_to_its_limits_and_says_so_once(fitted):
    _, _, _, model = fitted
    stats = model._result.stats
    with pytest.warns(ConvergenceWarning) as record:
        stuck = em.fit(stats, "reml", limits=Limits(max_iter=2, tol=0.0))
    assert stuck.n_iter == 2 and not stuck.converged and len(stuck.log_likelihood_history) == 2
    assert [str(w.message) for w in record] == [
        "EM did not converge in max_iter=2 iterations (tol=0.0); log_likelihood_history_ "
        "shows how far the fit got. Increase max_iter, or loosen tol."
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert em.fit(stats, "reml", limits=Limits(max_iter=200, tol=1e-6)).converged
    assert not em.fit(stats, "reml", grouped=False).s2u  # no groups: the OLS fit


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("lam", [0.0, 0.05, 2.0])
def test_the_profiled_criterion_is_the_deviance_at_the_best_s2e(fitted, method, lam):
    _, _, _, model = fitted
    stats = model._result.stats
    s2e = crit.profiled_s2e(stats, lam, method)
    best = crit.deviance(stats, method, lam, s2e)
    assert crit.profiled_criterion(stats, lam, method) == pytest.approx(best, rel=1e-13)
    assert crit.deviance(stats, method, lam, 1.01 * s2e) > best < crit.deviance(stats, method, lam, 0.99 * s2e)
    assert crit.denominator(stats, method) == stats.n_obs - (3 if method == "reml" else 0)
    assert crit.log_likelihood(stats, method, lam * s2e, s2e) == pytest.approx(-best / 2, rel=1e-15)
    # ML at a beta other than the GLS one is worse; REML does not depend on beta.
    beta = crit.gls_beta(stats, lam)[0] + 0.01
    if method == "ml":
        assert crit.deviance(stats, "ml", lam, s2e, beta) > best
    else:
        assert crit.deviance(stats, "reml", lam, s2e, beta) == best


def test_the_criterion_refuses_a_method_it_does_not_know(fitted):
    _, _, _, model = fitted
    stats = model._result.stats
    assert crit.is_reml("reml") is True and crit.is_reml("ml") is False
    for function, args in [
        (crit.denominator, (stats,)),
        (crit.profiled_criterion, (stats, 0.5)),
        (crit.lambda_derivatives, (stats, 0.5)),
        (crit.boundary_slope, (stats,)),
    ]:
        with pytest.raises(ValueError, match="method must be 'reml' or 'ml', got 'ML'"):
            function(*args, "ML")
    with pytest.raises(ValueError, match="got None"):
        crit.deviance(stats, None, 0.5, 1.0)


def test_the_coding_of_rows_without_groups():
    from skhlm.data.groups import GroupCoding

    single = GroupCoding.single(4)
    for name, expected in [("codes", [0, 0, 0, 0]), ("sizes", [4]), ("level", [0]), ("levels", [0])]:
        value = getattr(single, name)
        np.testing.assert_array_equal(value, expected)
        assert value.dtype.kind == "i"
    assert single.codes.dtype == np.intp and single.n_groups == 1


def test_a_group_of_exactly_2_to_the_16_rows_is_the_largest():
    """Sizes below 2**16 are sorted as 16-bit integers (a radix sort); 65536 is not."""
    from skhlm.data.groups import encode_groups

    labels = np.repeat([0, 1, 2], [65536, 1, 2])
    coding = encode_groups(labels, labels.size)
    np.testing.assert_array_equal(coding.sizes, [1, 2, 65536])
    np.testing.assert_array_equal(coding.levels[coding.level], [1, 2, 0])
    strings = encode_groups(labels.astype(str), labels.size)  # the factorize path
    np.testing.assert_array_equal(strings.sizes, [1, 2, 65536])


@pytest.mark.parametrize("n", range(1, 41))
def test_quartiles_of_small_samples_are_numpys(n):
    from skhlm.inference.residuals import quartiles

    values = np.random.default_rng(n).normal(size=n).round(1)  # ties too
    expected = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(quartiles(values.copy()), expected, rtol=0, atol=1e-15)


def test_an_exact_least_squares_fit_has_zero_scaled_residuals():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    with pytest.warns(UserWarning, match="got no groups"):
        model = RandomInterceptRegressor().fit(X, X @ [1.0, 2.0] + 3.0)
    assert model.variance_components_["residual"] == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_array_equal(model._result.residual_quantiles, np.zeros(5))


def test_a_fit_computes_the_blups_once(record_calls):
    """The residual quantiles and the public attributes share one posterior."""
    from skhlm.engine import result as result_module

    X, y, codes = simulate_multilevel(3, coef=[1.0, 0.5], n_groups=20, sizes=(3, 9))
    calls = record_calls(result_module, "posterior")
    model = RandomInterceptRegressor().fit(X, y, groups=codes)
    assert len(calls) == 1
    np.testing.assert_array_equal(model._result.random_effects[0], model.random_effects_)
    assert len(calls) == 1
