"""The pieces of the EM driver one by one: starting values, the feasibility test,
the SQUAREM cycle, the profile polish and the boundary fit.

The end-to-end fits are checked elsewhere (test_engine, test_lme4_agreement); these
pin each piece against a closed form or a naive computation, so that a change that
only slows a fit down, or lands it on the same point by luck, is caught too.
"""

import dense
import numpy as np
import pytest
from conftest import simulate_multilevel
from scipy.optimize import brentq

from skhlm.engine import em as _em
from skhlm.engine import steps
from skhlm.engine.em import Limits
from skhlm.engine import criterion as obj


def unbalanced(seed=3, n_groups=15, s2u=0.5, s2e=1.0):
    """15 groups of 1 to 7 rows; the design has its column of ones."""
    x, y, codes = simulate_multilevel(
        seed, n_groups=n_groups, sizes=(1, 8), coef=[0.5, 1.0, -0.7], intercept_column=True,
        s2u=s2u, s2e=s2e,
    )
    return x, y, codes, dense.naive_stats(x, y, codes)


# -- starting values --


def naive_moments(x, y, codes):
    """lme4-style moment start, group by group: OLS residuals e; s2e from the
    within-group sum of squares; s2u from the variance of the group means of e less
    the part s2e contributes to it, floored at s2e / 10."""
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    e = y - x @ beta
    labels = np.unique(codes)
    means = np.array([e[codes == j].mean() for j in labels])
    sizes = np.array([(codes == j).sum() for j in labels])
    within = sum(((e[codes == j] - m) ** 2).sum() for j, m in zip(labels, means))
    s2e = within / (y.size - labels.size)
    s2u = max(np.var(means, ddof=1) - s2e * np.mean(1.0 / sizes), 0.1 * s2e)
    return beta, s2u, s2e


@pytest.mark.parametrize("s2u", [0.5, 0.0])  # 0.0: the floor at s2e / 10 binds
@pytest.mark.parametrize("scale", [1.0, 1e-3])  # 1e-3: sums of squares far below 1
def test_moment_start_equals_per_group_moments(s2u, scale):
    x, y, codes, _ = unbalanced(s2u=s2u)
    y = scale * y
    stats = dense.naive_stats(x, y, codes)
    beta, s2u_start, s2e_start = steps.split(steps.moment_start(stats))
    beta_ref, s2u_ref, s2e_ref = naive_moments(x, y, codes)
    np.testing.assert_allclose(beta, beta_ref, rtol=1e-10)
    assert s2e_start == pytest.approx(s2e_ref, rel=1e-10)
    assert s2u_start == pytest.approx(s2u_ref, rel=1e-10)
    if s2u == 0.0:
        assert s2u_start == pytest.approx(0.1 * s2e_start, rel=1e-12)
    else:
        assert s2u_start > 0.2 * s2e_start  # the moment itself, not the floor


def test_moment_start_without_within_group_replication_uses_the_total_rss():
    """Groups of size 1 only: no within-group variance, so s2e starts at rss / n."""
    rng = np.random.default_rng(0)
    n = 20
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [1.0, 2.0] + rng.normal(size=n)
    stats = dense.naive_stats(x, y, np.arange(n))
    beta, s2u, s2e = steps.split(steps.moment_start(stats))
    rss = ((y - x @ beta) ** 2).sum()
    assert s2e == pytest.approx(rss / n, rel=1e-12)
    assert s2u == pytest.approx(0.1 * s2e, rel=1e-12)


# -- feasibility --


@pytest.mark.parametrize(
    "variances, feasible",
    [
        ((0.5, 1.0), True),
        ((1e-300, 1e-300), True),
        ((0.0, 1.0), False),  # EM cannot leave s2u = 0
        ((0.5, 0.0), False),
        ((-0.1, 1.0), False),
        ((0.5, -1.0), False),
        ((-0.5, -1.0), False),
        ((np.nan, 1.0), False),
        ((0.5, np.inf), False),
    ],
)
def test_feasible_means_finite_and_both_variances_positive(variances, feasible):
    params = np.array([0.3, -0.2, *variances])
    assert bool(_em._feasible(params)) is feasible


def test_feasible_requires_finite_coefficients():
    assert not _em._feasible(np.array([np.inf, 0.5, 1.0]))
    assert not _em._feasible(np.array([np.nan, 0.5, 1.0]))


# -- the SQUAREM cycle --


FIXED = np.array([1.0, -2.0, 0.7, 1.3])  # a fixed point with positive variances


def contraction(rate, calls=None):
    """The update params -> fixed + rate (params - fixed), recording its inputs."""

    def update(params):
        if calls is not None:
            calls.append(params.copy())
        return FIXED + rate * (params - FIXED)

    return update


def closeness(params):
    return -float(np.sum((params - FIXED) ** 2))


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.9])
def test_squarem_lands_on_the_fixed_point_of_a_scalar_contraction(rate):
    """For params -> f + c (params - f), SQUAREM's S3 step length is -1 / (1 - c), and
    params - 2 alpha r + alpha^2 v = f exactly: one cycle of three updates."""
    params = FIXED + np.array([0.1, 0.2, 0.05, -0.03])
    update = contraction(rate)
    new, value, step, n_updates = _em.squarem_step(update, closeness, params, closeness(params))
    np.testing.assert_allclose(new, FIXED, rtol=0, atol=1e-13)
    assert value == pytest.approx(0.0, abs=1e-25)
    np.testing.assert_allclose(step, update(params) - params, rtol=1e-15)
    assert n_updates == 3


def test_squarem_at_the_fixed_point_spends_two_updates():
    calls = []
    new, _, step, n_updates = _em.squarem_step(contraction(0.5, calls), closeness, FIXED, 0.0)
    np.testing.assert_array_equal(new, FIXED)
    np.testing.assert_array_equal(step, 0.0)
    assert n_updates == 2 and len(calls) == 2


def test_squarem_after_a_one_step_update_takes_the_double_update():
    """rate 0: the first update reaches the fixed point and alpha is -1 exactly, the
    plain double update; there is nothing to extrapolate."""
    calls = []
    params = FIXED + 0.1
    new, _, _, n_updates = _em.squarem_step(contraction(0.0, calls), closeness, params, closeness(params))
    np.testing.assert_array_equal(new, FIXED)
    assert n_updates == 2 and len(calls) == 2


def test_squarem_accepts_an_extrapolation_that_keeps_the_objective():
    """A flat objective: the extrapolation does not lower it, so it is taken."""
    params = FIXED + np.array([0.1, 0.2, 0.05, -0.03])
    new, value, _, n_updates = _em.squarem_step(contraction(0.9), lambda t: 1.0, params, 1.0)
    np.testing.assert_allclose(new, FIXED, atol=1e-13)
    assert value == 1.0 and n_updates == 3


def test_squarem_halves_the_step_toward_the_double_update_then_gives_up():
    """Every extrapolation is refused: alpha goes -10, (alpha - 1) / 2, ... while it
    is below -1.01, then the plain double update is returned."""
    rate = 0.9
    d = np.array([0.1, 0.2, 0.05, -0.03])
    calls = []
    update = contraction(rate, calls)
    params = FIXED + d
    new, value, step, n_updates = _em.squarem_step(update, lambda t: -np.inf, params, 0.0)

    expected_alphas = [-1.0 / (1.0 - rate)]
    while True:
        alpha = 0.5 * (expected_alphas[-1] - 1.0)
        if alpha > -1.01:
            break
        expected_alphas.append(alpha)
    # candidate - fixed = d (1 + alpha (1 - c))^2 for the scalar contraction
    candidates = np.array(calls[2:])
    factor = np.sqrt(np.abs(candidates[:, 0] - FIXED[0]) / d[0])  # 1 + alpha (1 - c) >= 0
    tried = (factor - 1.0) / (1.0 - rate)
    np.testing.assert_allclose(tried, expected_alphas, rtol=1e-6)
    np.testing.assert_allclose(new, FIXED + rate**2 * d, rtol=1e-15)
    assert n_updates == 2 + len(expected_alphas)
    np.testing.assert_allclose(step, (rate - 1.0) * d, rtol=1e-12)


def test_squarem_refuses_an_infeasible_extrapolation_without_evaluating_it():
    """An extrapolation that leaves the parameter space is not updated from."""
    params = FIXED + np.array([0.1, 0.2, -0.65, 0.0])  # s2u 0.05, heading up to 0.7
    calls = []

    def update(t):  # moves s2u away from 0 slowly: the extrapolation is huge
        calls.append(t.copy())
        return FIXED + 0.999 * (t - FIXED)

    def objective(t):
        assert _em._feasible(t)
        return closeness(t)

    new, value, _, n_updates = _em.squarem_step(update, objective, params, closeness(params))
    assert _em._feasible(new)
    assert value >= closeness(params)
    assert all(_em._feasible(c) for c in calls)


# -- the profile polish --


def exact_root(stats, method):
    return np.exp(brentq(lambda t: obj.profiled_slope(stats, np.exp(t), method), -30, 30, xtol=1e-15, rtol=1e-15))


@pytest.mark.parametrize("method", ["ml", "reml"])
@pytest.mark.parametrize("start_factor", [np.exp(-7.5), np.exp(-0.4), np.exp(0.4), np.exp(9.5)])
def test_profile_polish_finds_the_root_of_the_slope_from_far_and_near(record_calls, method, start_factor):
    x, y, codes, stats = unbalanced()
    lam_hat = exact_root(stats, method)
    s2e_start = 2.5  # not 1: the start's lambda is s2u / s2e, not s2u * s2e
    params = np.array([0.0, 0.0, 0.0, lam_hat * start_factor * s2e_start, s2e_start])
    calls = record_calls(obj, "profiled_slope")
    polished = _em.profile_polish(stats, method, params)
    seen = [lam for _, lam, _ in calls]

    beta, s2u, s2e = steps.split(polished)
    assert s2u / s2e == pytest.approx(lam_hat, rel=1e-12)
    assert s2e == pytest.approx(obj.profiled_s2e(stats, lam_hat, method), rel=1e-12)
    np.testing.assert_allclose(beta, obj.gls_beta(stats, lam_hat)[0], rtol=1e-10)
    # The bracket starts at one unit of log(lambda) either side of params's lambda
    # and widens by two units on the side whose sign is wrong.
    center = np.log(lam_hat * start_factor)
    lows, highs = np.log(seen[0:2 * 40:2]), np.log(seen[1:2 * 40:2])
    assert lows[0] == pytest.approx(center - 1.0, abs=1e-12)
    assert highs[0] == pytest.approx(center + 1.0, abs=1e-12)
    n_widen = int(np.ceil((abs(np.log(start_factor)) - 1.0) / 2.0)) if abs(np.log(start_factor)) > 1 else 0
    if start_factor < 1:  # the upper end moves up
        expected_high = center + 1.0 + 2.0 * np.arange(n_widen + 1)
        np.testing.assert_allclose(highs[: n_widen + 1], expected_high, atol=1e-12)
        np.testing.assert_allclose(lows[: n_widen + 1], center - 1.0, atol=1e-12)
    else:  # the lower end moves down
        expected_low = center - 1.0 - 2.0 * np.arange(n_widen + 1)
        np.testing.assert_allclose(lows[: n_widen + 1], expected_low, atol=1e-12)
        np.testing.assert_allclose(highs[: n_widen + 1], center + 1.0, atol=1e-12)


def test_profile_polish_leaves_theta_when_there_is_no_interior_root():
    """A boundary optimum: the slope is positive everywhere, no sign change."""
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(10), 5)
    x = np.ones((50, 1))
    y = rng.normal(size=50)
    y -= np.bincount(codes, y)[codes] / 5  # every group mean is 0: no between-group variance
    stats = dense.naive_stats(x, y + 3.0, codes)
    assert obj.boundary_slope(stats, "reml") >= 0
    params = np.array([3.0, 0.2, 1.0])
    np.testing.assert_array_equal(_em.profile_polish(stats, "reml", params), params)


# -- the boundary fit --


@pytest.mark.parametrize("method, dof", [("ml", 0), ("reml", 2)])
def test_boundary_fit_is_ols_with_one_iteration(method, dof):
    x, y, codes, stats = unbalanced()
    result = _em.boundary_fit(stats, method)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    rss = ((y - x @ beta) ** 2).sum()
    np.testing.assert_allclose(result.beta, beta, rtol=1e-10)
    assert result.s2u == 0.0 and result.boundary and result.converged and result.n_iter == 1
    assert result.s2e == pytest.approx(rss / (y.size - (3 if method == "reml" else 0)), rel=1e-12)
    params = np.concatenate([beta, [0.0, result.s2e]])
    assert result.log_likelihood_history[0] == pytest.approx(steps.log_likelihood(stats, params, method), rel=1e-12)


def test_boundary_fit_of_an_exact_fit_has_an_infinite_likelihood():
    """y = X beta exactly: s2e = 0, and the log-likelihood is +inf (as R's lm says),
    computed without dividing by zero."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(12), rng.normal(size=12)])
    y = x @ [1.0, 2.0]
    stats = dense.naive_stats(x, y, np.zeros(12, dtype=int))
    with np.errstate(all="raise"):
        result = _em.boundary_fit(stats, "ml")
    assert result.s2e == pytest.approx(0.0, abs=1e-25)
    np.testing.assert_array_equal(result.log_likelihood_history, [np.inf])
