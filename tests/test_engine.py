"""The private numerics against dense formulas, closed forms and a 1-D optimizer."""

from functools import partial

import dense
import numpy as np
import pytest
from conftest import simulate_multilevel
from scipy import linalg
from scipy.optimize import brentq, minimize_scalar

from skhlm.data import accumulator, row_pass
from skhlm.data.stats import kept_columns
from skhlm.engine import em as _em
from skhlm.engine import steps
from skhlm.engine.em import Limits
from skhlm.data.groups import encode_groups
from skhlm.datasets import make_multilevel_regression
from skhlm.engine import criterion as obj


# 12 groups of 2 to 8 rows; the design has its column of ones.
simulate = partial(
    simulate_multilevel, n_groups=12, sizes=(2, 9), coef=[1.0, 0.5, -0.4], intercept_column=True,
    s2u=0.7, s2e=1.3,
)


@pytest.fixture(scope="module")
def small():
    x, y, codes = simulate()
    return x, y, codes, dense.naive_stats(x, y, codes)


@pytest.mark.parametrize("s2u, s2e", [(0.0, 1.0), (0.3, 1.1), (5.0, 0.2)])
def test_ml_log_likelihood_equals_dense(small, s2u, s2e):
    x, y, codes, stats = small
    beta = np.array([0.9, 0.4, -0.2])
    expected = dense.ml_log_likelihood(x, y, codes, beta, s2u, s2e)
    assert obj.log_likelihood(stats, "ml", s2u, s2e, beta) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("s2u, s2e", [(0.0, 1.0), (0.3, 1.1), (5.0, 0.2)])
def test_reml_log_likelihood_equals_dense(small, s2u, s2e):
    x, y, codes, stats = small
    expected = dense.reml_log_likelihood(x, y, codes, s2u, s2e)
    assert obj.log_likelihood(stats, "reml", s2u, s2e) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_profiled_criterion_is_the_maximum_over_s2e(small, method):
    _, _, _, stats = small
    lam = 0.4
    s2e = obj.profiled_s2e(stats, lam, method)
    beta = obj.gls_beta(stats, lam)[0]
    if method == "ml":
        at = obj.log_likelihood(stats, "ml", lam * s2e, s2e, beta)
        nearby = obj.log_likelihood(stats, "ml", lam * s2e * 1.01, s2e * 1.01, beta)
    else:
        at = obj.log_likelihood(stats, "reml", lam * s2e, s2e)
        nearby = obj.log_likelihood(stats, "reml", lam * s2e * 1.01, s2e * 1.01)
    assert obj.profiled_criterion(stats, lam, method) == pytest.approx(-2 * at, rel=1e-13)
    assert nearby < at


def test_posterior_equals_dense_posterior(small):
    x, y, codes, stats = small
    beta, s2u, s2e = np.array([1.1, 0.3, -0.5]), 0.6, 1.4
    u_hat, v = steps.posterior(stats, beta, s2u, s2e)
    mean, var = dense.posterior_u(x, y, codes, beta, s2u, s2e)
    np.testing.assert_allclose(u_hat, mean, rtol=1e-12)
    np.testing.assert_allclose(v, var, rtol=1e-12)


def test_ml_em_update_equals_per_group_formulas(small):
    """The class-sum M-step against the textbook one, group by group."""
    x, y, codes, stats = small
    beta_old, s2u, s2e = np.array([1.1, 0.3, -0.5]), 0.6, 1.4
    u_hat, v = dense.posterior_u(x, y, codes, beta_old, s2u, s2e)
    beta = np.linalg.solve(x.T @ x, x.T @ (y - u_hat[codes]))
    e = y - x @ beta - u_hat[codes]
    s2e_new = (e @ e + np.bincount(codes) @ v) / y.size
    s2u_new = (u_hat @ u_hat + v.sum()) / u_hat.size
    factor = linalg.cho_factor(stats.xtx)
    shrink, var = steps.e_step(stats, s2u, s2e)
    got = steps.m_step_ml(stats, beta_old, shrink, var, factor)
    np.testing.assert_allclose(np.concatenate([got[0], got[1:]]),
                               np.concatenate([beta, [s2u_new, s2e_new]]), rtol=1e-11)
    # The full update (ECME) then takes beta by GLS at the new variances.
    params = steps.ml_update(stats, np.concatenate([beta_old, [s2u, s2e]]), factor)
    np.testing.assert_allclose(params[-2:], [s2u_new, s2e_new], rtol=1e-11)
    np.testing.assert_allclose(params[:-2], obj.gls_beta(stats, s2u_new / s2e_new)[0], rtol=1e-12)


def test_reml_e_step_equals_dense_posterior(small):
    x, y, codes, stats = small
    s2u, s2e = 0.6, 1.4
    beta, expected_u2, expected_ee = steps.reml_e_step(stats, s2u, s2e)
    mean, var, ee = dense.reml_posterior(x, y, codes, s2u, s2e)
    assert expected_u2 == pytest.approx(mean @ mean + var.sum(), rel=1e-10)
    assert expected_ee == pytest.approx(ee, rel=1e-10)
    np.testing.assert_allclose(beta, obj.gls_beta(stats, s2u / s2e)[0], rtol=1e-12)


def test_size_classes_are_sums_over_groups_of_each_size(small):
    _, _, _, stats = small
    cl = stats.classes
    gx, gy, n_j = stats.group_xsum, stats.group_ysum, stats.group_sizes
    assert cl.size.tolist() == sorted(set(n_j))
    for k, size in enumerate(cl.size):
        rows = n_j == size
        assert cl.count[k] == rows.sum()
        np.testing.assert_allclose(cl.ss[k], gx[rows].T @ gx[rows], rtol=1e-13)
        np.testing.assert_allclose(cl.st[k], gx[rows].T @ gy[rows], rtol=1e-13)
        np.testing.assert_allclose(cl.tt[k], gy[rows] @ gy[rows], rtol=1e-13)
        np.testing.assert_allclose(cl.s[k], gx[rows].sum(0), rtol=1e-13)
        np.testing.assert_allclose(cl.t[k], gy[rows].sum(), rtol=1e-13)
    beta = np.array([0.2, -1.0, 3.0])
    r = gy - gx @ beta
    expected = [r[n_j == size] @ r[n_j == size] for size in cl.size]
    np.testing.assert_allclose(cl.residual_squares(beta), expected, rtol=1e-12)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_boundary_slope_matches_finite_difference(small, method):
    _, _, _, stats = small
    h = 1e-7
    numeric = (obj.profiled_criterion(stats, h, method) - obj.profiled_criterion(stats, 0.0, method)) / h
    assert obj.boundary_slope(stats, method) == pytest.approx(numeric, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("method", ["ml", "reml"])
@pytest.mark.parametrize("accelerate", [False, True])
def test_em_never_decreases_the_log_likelihood(method, accelerate):
    x, y, codes = simulate(seed=3, n_groups=40, s2u=0.2)
    stats = dense.naive_stats(x, y, codes)
    result = _em.fit(stats, method, limits=Limits(5000, 1e-12), accelerate=accelerate)
    history = result.log_likelihood_history
    assert result.converged and not result.boundary
    assert history.size >= 3
    # Rounding in a log-likelihood of size ~|L| is ~1e-13 |L|; a real decrease is not.
    np.testing.assert_array_less(-1e-12 * np.abs(history[1:]), np.diff(history))
    assert history[-1] - history[0] > 1e-3


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_squarem_never_decreases_the_log_likelihood_on_small_low_icc_designs(method):
    """25 groups of 1 or 2 rows at ICC 0.01: there the SQUAREM extrapolation can land
    on a lower log-likelihood (by 3.6 for seed 12, REML), and the safeguard must
    refuse it."""
    n_interior = 0
    for seed in range(20):
        X, y, g = make_multilevel_regression(n_groups=25, group_size=(1, 2), icc=0.01, random_state=seed)
        stats, _ = accumulator.compute_statistics(X.to_numpy(), y.to_numpy(), encode_groups(g, len(y)))
        result = _em.fit(stats, method)
        assert result.converged
        n_interior += not result.boundary
        history = result.log_likelihood_history
        np.testing.assert_array_less(-1e-9 * np.abs(history[1:]), np.diff(history), err_msg=f"seed {seed}")
    assert n_interior == 12


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_em_fixed_point_is_the_profiled_optimum(method):
    x, y, codes = simulate(seed=5, n_groups=60)
    stats = dense.naive_stats(x, y, codes)
    result = _em.fit(stats, method, limits=Limits(tol=1e-10))
    best = minimize_scalar(
        lambda t: obj.profiled_criterion(stats, np.exp(t), method),
        bounds=(-12.0, 6.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    lam = result.s2u / result.s2e
    assert lam == pytest.approx(np.exp(best.x), rel=1e-5)
    assert -2 * result.log_likelihood_history[-1] <= best.fun + 1e-9
    assert result.s2e == pytest.approx(obj.profiled_s2e(stats, lam, method), rel=1e-9)
    np.testing.assert_allclose(result.beta, obj.gls_beta(stats, lam)[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_acceleration_reaches_the_same_point_in_fewer_iterations(method):
    x, y, codes = simulate(seed=7, n_groups=50, s2u=0.1)
    stats = dense.naive_stats(x, y, codes)
    plain = _em.fit(stats, method, limits=Limits(10000, 1e-11), accelerate=False)
    fast = _em.fit(stats, method, limits=Limits(10000, 1e-11), accelerate=True)
    assert fast.converged and plain.converged
    assert fast.s2u == pytest.approx(plain.s2u, rel=1e-7)
    assert fast.n_iter * 3 < plain.n_iter


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_balanced_one_way_anova_closed_form(method):
    n_groups, m = 15, 8
    x, y, codes = simulate_multilevel(
        11, n_groups=n_groups, sizes=m, n_within=0, n_between=0, coef=[3.0], intercept_column=True,
        s2e=1.5**2,
    )
    means = np.bincount(codes, weights=y) / m
    msw = ((y - means[codes]) ** 2).sum() / (codes.size - n_groups)
    msb = m * ((means - y.mean()) ** 2).sum() / (n_groups - 1)
    if method == "reml":
        s2u = (msb - msw) / m
    else:
        s2u = ((1 - 1 / n_groups) * msb - msw) / m
    assert s2u > 0
    result = _em.fit(dense.naive_stats(x, y, codes), method, limits=Limits(tol=1e-12))
    assert result.s2e == pytest.approx(msw, rel=1e-9)
    assert result.s2u == pytest.approx(s2u, rel=1e-9)
    assert result.beta[0] == pytest.approx(y.mean(), rel=1e-12)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_boundary_fit_is_ordinary_least_squares(method):
    x, y, codes = simulate(seed=2)
    result = _em.boundary_fit(dense.naive_stats(x, y, codes), method)
    beta, rss = np.linalg.lstsq(x, y, rcond=None)[:2]
    np.testing.assert_allclose(result.beta, beta, rtol=1e-10)
    dof = y.size if method == "ml" else y.size - x.shape[1]
    assert result.s2e == pytest.approx(rss[0] / dof, rel=1e-10)
    assert result.s2u == 0.0 and result.boundary and result.n_iter == 1


def test_statistics_are_those_of_the_standardized_design():
    rng = np.random.default_rng(4)
    codes = np.repeat(np.arange(5), [3, 1, 4, 2, 6])
    X = rng.normal(loc=[1e4, -3.0], scale=[1e-2, 50.0], size=(codes.size, 2))
    y = 1e6 + rng.normal(size=codes.size)
    stats, sd = accumulator.compute_statistics(X, y, encode_groups(codes, codes.size), fit_intercept=True)
    design = np.column_stack([np.ones(codes.size), (X - X.mean(0)) / sd.x_scale])
    expected = dense.naive_stats(design, (y - y.mean()) / sd.y_scale, codes)
    for name in ["xtx", "xty", "yty", "group_sizes", "group_xsum", "group_ysum"]:
        np.testing.assert_allclose(getattr(stats, name), getattr(expected, name), atol=1e-12)
    for name in ["size", "count", "ss", "st", "tt", "s", "t"]:
        np.testing.assert_allclose(
            getattr(stats.classes, name), getattr(expected.classes, name), atol=1e-11
        )
    np.testing.assert_allclose(np.diag(stats.xtx)[1:], codes.size, rtol=1e-12)


def test_redundant_columns_are_found_in_order():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50))
    design = np.column_stack([np.ones(50), a, b, a + 2 * b, 3 * a, rng.normal(size=50)])
    kept = kept_columns(design.T @ design)
    assert kept.tolist() == [True, True, True, False, False, True]


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_profiled_slope_is_the_derivative_of_the_criterion(small, method):
    _, _, _, stats = small
    for lam in [1e-3, 0.3, 4.0]:
        h = 1e-6 * lam
        numeric = (obj.profiled_criterion(stats, lam + h, method)
                   - obj.profiled_criterion(stats, lam - h, method)) / (2 * h)
        assert obj.profiled_slope(stats, lam, method) == pytest.approx(numeric, rel=1e-6)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_optimum_near_the_boundary_converges_without_warning(method):
    """lambda ~ 1e-3: EM's rate tends to 1 there; the profile polish after
    POLISH_AFTER iterations lands on the root of the profiled slope."""
    rng = np.random.default_rng(341)  # found by a scan of 400 random designs
    x, y, codes = simulate_multilevel(  # the generator's first draw is the number of groups
        rng, n_groups=rng.integers(5, 60), sizes=(1, 12), n_within=2, n_between=0,
        coef=[0.0, 1.0, -1.0], intercept_column=True, s2u=0.04,
    )
    stats = dense.naive_stats(x, y, codes)
    result = _em.fit(stats, method)
    # The polish runs once POLISH_AFTER iterations are spent, and its root is a fixed
    # point: the one EM update after it confirms convergence.
    assert result.converged is True and result.n_iter == _em.POLISH_AFTER + 1
    lam = result.s2u / result.s2e
    assert 0 < lam < 0.05
    assert abs(obj.profiled_slope(stats, lam, method)) < 1e-6
    history = result.log_likelihood_history
    np.testing.assert_array_less(-1e-12 * np.abs(history[1:]), np.diff(history))


@pytest.mark.parametrize("seed, s2u", [(0, 0.00138), (9, 0.00265)])
def test_convergence_is_judged_on_the_relative_change_of_a_tiny_s2u(seed, s2u):
    """lambda ~ 1e-3 (the simulated s2u found by a search) with large groups: EM
    converges before the polish, with s2u ~ 1e-3 in the standardized statistics.  An
    absolute change of 1e-10 is a relative one of 1e-7 there: judged on it, EM stops
    ~1e-8 short of the optimum."""
    x, y, codes = simulate(seed=seed, n_groups=30, sizes=(200, 400), s2u=s2u)
    stats, _ = accumulator.compute_statistics(x[:, 1:], y, encode_groups(codes, codes.size))
    result = _em.fit(stats, "reml")
    assert result.converged and not result.boundary and result.n_iter <= _em.POLISH_AFTER
    lam = result.s2u / result.s2e
    assert lam == pytest.approx(1e-3, rel=1e-2)
    root = np.exp(brentq(lambda t: obj.profiled_slope(stats, np.exp(t), "reml"),
                         np.log(lam) - 1, np.log(lam) + 1, xtol=1e-14, rtol=1e-15))
    assert lam == pytest.approx(root, rel=1e-9)


def test_large_data_are_centered_at_a_sample_mean_with_exact_statistics():
    # Above _CENTER_SAMPLE_ROWS rows the columns are centered at the mean of a sample
    # of rows, not at their mean; the statistics are exactly those of that design,
    # and the fit is the same as with exact centering (a reparametrization).
    rng = np.random.default_rng(7)
    n = 3 * accumulator._CENTER_SAMPLE_ROWS + 5
    codes = rng.integers(0, 300, n)
    X = rng.normal(loc=[1e4, -3.0], scale=[1e-2, 50.0], size=(n, 2))
    X[:, 0] += np.sort(rng.normal(scale=1e-2, size=n))  # a trend: a biased sample
    y = 1e6 + X @ [100.0, 0.1] + rng.normal(size=300)[codes] + rng.normal(size=n)
    coding = encode_groups(codes, n)
    stats, sd = accumulator.compute_statistics(X, y, coding, fit_intercept=True)
    assert not np.allclose(sd.x_offset, X.mean(0), rtol=0, atol=1e-6)
    design = np.column_stack([np.ones(n), (X - sd.x_offset) / sd.x_scale])
    expected = dense.naive_stats(design, (y - sd.y_offset) / sd.y_scale, codes)
    for name in ["xtx", "xty", "yty", "group_xsum", "group_ysum"]:
        np.testing.assert_allclose(getattr(stats, name), getattr(expected, name), rtol=1e-10, atol=1e-8)
    for method in ["ml", "reml"]:
        ours = _em.fit(stats, method, limits=Limits(200, 1e-12))
        exact_design = np.column_stack([np.ones(n), X - X.mean(0)])
        exact = _em.fit(dense.naive_stats(exact_design, y - y.mean(), codes), method, limits=Limits(200, 1e-12))
        assert ours.s2u * sd.y_scale**2 == pytest.approx(exact.s2u, rel=1e-8)
        assert ours.s2e * sd.y_scale**2 == pytest.approx(exact.s2e, rel=1e-8)
        np.testing.assert_allclose(sd.coef_to_user(ours.beta)[0], exact.beta[1:], rtol=1e-8)


def test_tiny_values_error_names_the_columns_and_y():
    error = accumulator.TinyValues({2: 3e-170}, 1e-200)
    assert error.spreads == {2: 3e-170} and error.response_spread == 1e-200
    assert str(error) == "variation too small for float64: X columns {2: 3e-170}, y 1e-200"


def test_group_sums_without_scipys_private_loop_are_the_same(monkeypatch):
    """The public sparse product stands in when scipy's private csc_matvec(s) is gone."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 40, size=3000)
    X = rng.normal(size=(3000, 3)) + [5.0, 0.0, -2.0]
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=40)[codes] + rng.normal(size=3000)
    coding = encode_groups(codes, codes.size)
    fast, _ = accumulator.compute_statistics(X, y, coding)
    monkeypatch.setattr(row_pass, "_csc_matvec", None)
    monkeypatch.setattr(row_pass, "_csc_matvecs", None)
    public, _ = accumulator.compute_statistics(X, y, coding)
    # Blocks of 256 rows sorted by group: most blocks miss most groups, the last ones
    # included, so the indicator's shape must be given, not inferred.
    order = np.argsort(codes, kind="stable")
    monkeypatch.setattr(row_pass, "_BLOCK_ROWS", 256)
    blocked, _ = accumulator.compute_statistics(X[order], y[order], encode_groups(codes[order], codes.size))
    np.testing.assert_allclose(blocked.group_xsum, fast.group_xsum, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(blocked.group_ysum, fast.group_ysum, rtol=1e-12, atol=1e-9)
    for name in ["xtx", "xty", "yty", "group_sizes", "group_xsum", "group_ysum"]:
        np.testing.assert_allclose(getattr(public, name), getattr(fast, name), rtol=1e-13, atol=1e-12)
    exact = np.zeros((40, 3))
    np.add.at(exact, codes, X - accumulator.compute_statistics(X, y, coding)[1].x_offset)
    np.testing.assert_allclose(public.groups.x, exact[coding.level], rtol=1e-12, atol=1e-10)


def test_residual_sums_are_returned_by_label_or_in_size_order():
    """Labels 0..4 have sizes 3, 1, 4, 2, 6: the size order is 1, 3, 0, 2, 4."""
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(5), [3, 1, 4, 2, 6])
    x = np.column_stack([np.ones(codes.size), rng.normal(size=codes.size)])
    y = rng.normal(size=codes.size)
    stats = dense.naive_stats(x, y, codes)
    beta = np.array([0.3, -1.2])
    by_label = np.bincount(codes, y - x @ beta)
    np.testing.assert_allclose(stats.groups.residual_sums(beta), by_label, rtol=1e-13)
    np.testing.assert_allclose(stats.groups.residual_sums(beta, by_level=False), by_label[[1, 3, 0, 2, 4]], rtol=1e-13)


def test_no_intercept_means_an_intercept_of_zero():
    x, y, codes = simulate()
    model_stats, sd = accumulator.compute_statistics(x[:, 1:], y, encode_groups(codes, codes.size), fit_intercept=False)
    coef, intercept = sd.coef_to_user(np.array([0.5, -0.25]))
    assert intercept == 0.0 and isinstance(intercept, float)
    np.testing.assert_allclose(coef, np.array([0.5, -0.25]) * sd.y_scale / sd.x_scale, rtol=1e-14)
