"""Profile-likelihood intervals, on sufficient statistics.

As lme4's ``confint(method="profile")``: the ML deviance profiled over everything
but the one parameter, for REML fits too (lme4 refits with ML first); and the
interval of the ICC from the fit's own criterion, a function of lambda alone.  Each
profiled deviance is a 1-D minimization over lambda on the statistics, so a whole
table takes a fraction of a second.
"""

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import linalg, optimize
from scipy import stats as st

from ..engine import criterion as crit
from .vcov import check_level

# Relative tolerance of the outer root finds of the profile intervals; the inner
# minimizations over lambda are tighter (_INNER_XTOL) so that their error, which
# enters the deviance quadratically, stays below 1e-12.
_ROOT_RTOL = 1e-10
_INNER_XTOL = 1e-7
# The largest n_j lambda at which a profile in lambda is evaluated: beyond, the
# between-group part of A(lambda) = X'X - sum_j c_j s_j s_j' cancels to rounding.
_MAX_LAMBDA_N = 1e8
# Half-width of the search interval of the inner minimizations, in log(lambda).
_LOG_LAMBDA_SPAN = 30.0


def critical_value(level):
    """chi2_1's ``level`` quantile, the rise of the deviance that bounds a profile
    interval: kept per level (scipy.stats takes ~100 us to compute it)."""
    return _chi2_1_quantile(float(level))


@lru_cache(maxsize=16)
def _chi2_1_quantile(level):
    return st.chi2.ppf(level, 1)


def _minimize_over_lambda(fun, lam_start, *, allow_zero=True):
    """min over lambda >= 0 of a smooth fun: Brent in log(lambda), then lambda = 0.

    The log scale makes the search scale-free; lambda = 0 itself (a boundary
    optimum, which log(lambda) only approaches) is checked separately.
    """
    center = np.log(max(lam_start, 1e-6))
    res = optimize.minimize_scalar(
        lambda t: fun(np.exp(t)),
        bounds=(center - _LOG_LAMBDA_SPAN, center + _LOG_LAMBDA_SPAN),
        method="bounded",
        options={"xatol": _INNER_XTOL},
    )
    best_lam, best = float(np.exp(res.x)), float(res.fun)
    if allow_zero:
        at_zero = fun(0.0)
        if at_zero <= best:
            return 0.0, at_zero
    return best_lam, best


def profile_sigma(stats, sigma, lam_start, grouped):
    """ML deviance profiled at a fixed residual sd ``sigma``: min over lambda >= 0."""
    s2e = sigma**2
    if not grouped:
        return crit.deviance(stats, "ml", 0.0, s2e)
    return _minimize_over_lambda(lambda lam: crit.deviance(stats, "ml", lam, s2e), lam_start)[1]


def profile_sigma_u(stats, sigma_u, lam_start):
    """ML deviance profiled at a fixed group sd ``sigma_u`` (s2e = sigma_u^2 / lambda)."""
    if sigma_u == 0.0:
        return crit.profiled_criterion(stats, 0.0, "ml")
    s2u = sigma_u**2
    return _minimize_over_lambda(
        lambda lam: crit.deviance(stats, "ml", lam, s2u / lam), lam_start, allow_zero=False
    )[1]


def constrained_stats(stats, contrast, value):
    """Statistics of the model restricted to contrast'beta = value.

    beta = contrast value / |contrast|^2 + N gamma, N an orthonormal basis of the
    contrast's null space: the design becomes X N and the response
    y - X contrast value / |contrast|^2, both expressed through the statistics.
    For a contrast on one coefficient (a slope's), N selects the others, and every
    product is a selection: O(K p^2) instead of O(K p^3), which matters for wide
    designs (p = 100: the summary's profile intervals 20x faster).
    """
    shift = contrast * (value / (contrast @ contrast))
    nonzero = np.flatnonzero(contrast)
    if nonzero.size == 1:
        keep = np.delete(np.arange(contrast.size), nonzero[0])

        def right(m):  # m N
            return m[..., keep]

        def both(m):  # N' m N
            return m[..., keep[:, None], keep]

    else:
        null = linalg.null_space(contrast[None, :])

        def right(m):
            return m @ null

        def both(m):
            return null.T @ m @ null

    xty_shift = stats.xty - stats.xtx @ shift
    # The same map on the size-class sums: s_j -> N's_j, t_j -> t_j - s_j'shift.
    classes = stats.classes.constrained(right, both, shift)
    groups = stats.groups
    return type(stats)(
        xtx=both(stats.xtx),
        xty=right(xty_shift),
        yty=float(stats.yty - 2.0 * shift @ stats.xty + shift @ stats.xtx @ shift),
        n_obs=stats.n_obs,
        groups=groups.mapped(right(groups.x_map), groups.y_map - groups.x_map @ shift),
        classes=classes,
        weight=stats.weight,
    )


def profile_contrast(stats, contrast, value, lam_start, grouped):
    """ML deviance profiled at contrast'beta = value (over lambda, s2e, the rest)."""
    sub = constrained_stats(stats, contrast, value)
    if not grouped:
        return crit.profiled_criterion(sub, 0.0, "ml")
    return _minimize_over_lambda(lambda lam: crit.profiled_criterion(sub, lam, "ml"), lam_start)[1]


def profile_bounds(
    excess, estimate, step, critical, *, floor=None, floor_attainable=False, ceiling=np.inf
):
    """The two roots of excess(x) = critical around ``estimate``.

    ``excess(x)`` is the profiled deviance minus its minimum.  Brackets grow
    geometrically from ``step``, and approach ``floor`` (0 for a standard deviation)
    geometrically, never touching it unless ``floor_attainable``: then the lower
    bound is the floor itself when the excess there stays below ``critical``, as
    lme4 reports 0 for a group sd.  A side whose excess never reaches ``critical``
    (within 64 doublings of the step, or below ``ceiling``) is NaN.

    Each excess is a profile (a 1-D minimization, or a criterion at least): the
    values the searches found are kept, and the root finds, which start from the
    ends of their brackets, reuse them.
    """
    known = {}

    def excess_at(x):
        value = known.get(x)
        if value is None:
            value = known[x] = excess(x)
        return value

    def root(a, b):
        return optimize.brentq(
            lambda x: excess_at(x) - critical, a, b, xtol=_ROOT_RTOL * step, rtol=_ROOT_RTOL
        )

    def search(direction):
        inner = estimate
        for k in range(64):
            outer = estimate + direction * step * 2.0**k
            if floor is not None and outer <= floor:
                outer = floor + 0.25 * (inner - floor)
            if outer > ceiling:
                break
            if excess_at(outer) > critical:
                return root(min(inner, outer), max(inner, outer))
            inner = outer
        return np.nan

    if floor_attainable:
        lower = floor if excess_at(floor) <= critical else root(floor, estimate)
    else:
        lower = search(-1.0)
    return lower, search(1.0)


def sd_profile_bounds(stats, optimum, level, grouped):
    """Profile intervals of (sigma_u, sigma), internal units, from the ML deviance
    around its ``optimum`` (s2u, s2e, deviance): the ML fit's."""
    s2u, s2e, base = optimum
    lam = s2u / s2e
    critical = critical_value(level)
    sigma, sigma_u = np.sqrt(s2e), np.sqrt(s2u)
    rows = {}
    if grouped:
        rows["Groups"] = profile_bounds(
            lambda s: profile_sigma_u(stats, s, lam) - base,
            sigma_u,
            0.1 * (sigma_u or sigma),
            critical,
            floor=0.0,
            floor_attainable=True,
        )
    else:
        rows["Groups"] = (np.nan, np.nan)
    rows["Residual"] = profile_bounds(
        lambda s: profile_sigma(stats, s, lam, grouped) - base,
        sigma,
        0.1 * sigma,
        critical,
        floor=0.0,
    )
    return rows


def lambda_profile_bounds(stats, method, lam_hat, level):
    """Interval of lambda = s2u / s2e from the fit's own criterion, profiled in lambda.

    Lambda is the only parameter left in the profiled criterion, so this is its
    exact profile likelihood; the upper bound is inf when the criterion does not rise
    by the critical value up to ``_MAX_LAMBDA_N`` / n_max (where c_j = 1 / n_j to 8
    digits, beyond which A(lambda) cancels to rounding): when few groups cannot bound
    the between-group variance, or when fixed effects at level 2 absorb every group's
    mean and the REML criterion is flat in lambda.
    """
    base = crit.profiled_criterion(stats, lam_hat, method)
    ceiling = np.sqrt(_MAX_LAMBDA_N / stats.classes.size.max())
    critical = critical_value(level)

    def excess(theta):
        return crit.profiled_criterion(stats, theta**2, method) - base

    theta = np.sqrt(lam_hat)
    lower, upper = profile_bounds(
        excess, theta, 0.5 * max(theta, 0.1), critical, floor=0.0, floor_attainable=True,
        ceiling=max(ceiling, theta),
    )
    return lower**2, (np.inf if np.isnan(upper) else upper**2)


# -- On a fit result: user units --


def profile_intervals(result, level=0.95, *, fixed=True):
    """Profile-likelihood intervals: lme4's ``confint(method="profile")``.

    As lme4, the ML deviance is profiled, also for a REML fit (from its ML refit,
    ``result.ml``, on the sufficient statistics).  Rows "Groups" and "Residual" are
    standard deviations; then, with ``fixed=True``, the intercept and the features.
    The lower bound of "Groups" is 0 when the deviance at s2u = 0 is within the
    critical value, as lme4 reports.

    Parameters
    ----------
    result : FitResult
    level : float, default=0.95
    fixed : bool, default=True
        Also profile the fixed effects (one more 1-D search each).

    Returns
    -------
    DataFrame
        Columns ``lower`` and ``upper``; a redundant feature's row is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.inference.profile import profile_intervals
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> profile_intervals(m._result).round(3)
                 lower  upper
    Groups       0.808  1.596
    Residual     0.920  1.132
    (Intercept) -0.525  0.536
    x0           0.770  1.082
    """
    check_level(level)
    stats, units, grouped = result.stats, result.units, result.grouped
    ml = result.ml
    base = crit.profiled_criterion(stats, ml.lam, "ml")
    rows = sd_profile_bounds(stats, (ml.s2u, ml.s2e, base), level, grouped)
    rows = {k: tuple(units.response_to_user(np.asarray(v))) for k, v in rows.items()}
    if fixed:
        lam = ml.lam
        beta = crit.gls_beta(stats, lam)[0]
        cov = ml.s2e * ml.derivatives["a_inv"]
        t, shift, estimated = units.coef_map()
        critical = critical_value(level)
        for k, name in enumerate(result.coef_names):
            if not estimated[k]:
                rows[name] = (np.nan, np.nan)
                continue
            l = t[k]
            lo, hi = profile_bounds(
                lambda b, l=l: profile_contrast(stats, l, b, lam, grouped) - base,
                l @ beta,
                np.sqrt(l @ cov @ l),
                critical,
            )
            rows[name] = (lo + shift[k], hi + shift[k])
    return pd.DataFrame.from_dict(rows, orient="index", columns=["lower", "upper"])


def icc_interval(result, level=0.95):
    """Profile-likelihood interval of the ICC = lambda / (1 + lambda).

    The fit's own criterion (REML or ML) profiled over beta and s2e is a function of
    lambda alone, and the ICC is monotone in lambda, so the interval is exact for
    that likelihood and invariant to the parametrization.

    Parameters
    ----------
    result : FitResult
    level : float, default=0.95

    Returns
    -------
    (lower, upper) : tuple of float
        Lower is 0 when s2u = 0 is inside the interval; upper is 1 when the
        likelihood does not bound the ratio (very few groups); (0, 0) without groups.
    """
    check_level(level)
    if not result.grouped:
        return 0.0, 0.0
    lo, hi = lambda_profile_bounds(result.stats, result.method, result.lam, level)
    return lo / (1.0 + lo), (1.0 if np.isinf(hi) else hi / (1.0 + hi))
