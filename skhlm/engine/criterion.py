"""The likelihood of the random intercept model, on sufficient statistics.

Model: y_ij = x_ij' beta + u_j + e_ij, u_j ~ N(0, s2u), e_ij ~ N(0, s2e); group j has
n_j rows, X_j and y_j.  The statistics are X'X, X'y, y'y, n_j, s_j = X_j'1 and
t_j = 1'y_j.  With lambda = s2u / s2e and c_j = lambda / (1 + n_j lambda):

    V_j^-1 = (I - c_j 1 1') / s2e,       log det V_j = n_j log s2e + log(1 + n_j lambda)
    A(lambda) = X'X - sum_j c_j s_j s_j'  (= s2e X'V^-1 X),   b = X'y - sum_j c_j s_j t_j
    beta(lambda) = A^-1 b,   r_j(beta) = t_j - s_j' beta
    rss(lambda) = sum (y - X beta)^2 - sum_j c_j r_j^2     (= s2e (y-Xb)'V^-1(y-Xb))

    ML:   n log(2 pi rss/n) + sum_j log(1 + n_j lambda) + n
    REML: (n-p) log(2 pi rss/(n-p)) + sum_j log(1 + n_j lambda) + log det A + (n-p)

are minus twice the log-likelihoods profiled over beta and s2e, with lme4's constants
(its ``deviance`` and ``REMLcrit``).  Every function here is pure, costs O(K p^2)
or less (K distinct group sizes: sums over groups are taken over size classes,
skhlm.data.stats.SizeClasses) and works in the units of the statistics it is given.
"""

import numpy as np
from . import linalg as la

LOG_2PI = np.log(2.0 * np.pi)


def shrinkage_weights(stats, lam):
    """c = lambda / (1 + n lambda) per size class: V_j^-1 = (I - c_j 1 1') / s2e."""
    return lam / (1.0 + stats.classes.size * lam)


def gls_system(stats, lam):
    """A(lambda) = s2e X'V^-1 X and b(lambda) = s2e X'V^-1 y."""
    c = shrinkage_weights(stats, lam)
    a = stats.xtx - stats.classes.gram(c)
    b = stats.xty - stats.classes.weighted_sr(c)
    return a, b


def ols_rss(stats, beta):
    """sum_ij (y_ij - x_ij' beta)^2 from the cross-products."""
    return stats.yty - 2.0 * beta @ stats.xty + beta @ stats.xtx @ beta


def penalized_rss(stats, beta, lam):
    """(y - X beta)' V^-1 (y - X beta) * s2e = rss_ols - sum_j c_j r_j^2."""
    r2 = stats.classes.residual_squares(beta)
    return ols_rss(stats, beta) - shrinkage_weights(stats, lam) @ r2


def log_det_v_ratio(stats, lam):
    """sum_j log(1 + n_j lambda) = log det V - n log s2e."""
    classes = stats.classes
    return classes.count @ np.log1p(classes.size * lam)


def gls_beta(stats, lam):
    """beta_hat(lambda) = A^-1 b and the Cholesky factor of A (for log det A).

    EM, its objective and the checks before it ask for the same lambda several times
    (an update and the objective at its result; lambda = 0 for the start, the
    boundary test and the identifiability check): the last few answers are kept on
    the statistics, read-only, since both are immutable.
    """
    key = float(lam)
    memo = stats.memo
    found = memo.get(key)
    if found is None:
        a, b = gls_system(stats, lam)
        factor = la.cho_factor(a)
        beta = la.cho_solve(factor, b)
        beta.flags.writeable = factor[0].flags.writeable = False
        if len(memo) >= _MEMO_SIZE:
            memo.pop(next(iter(memo)))  # the oldest
        found = memo[key] = (beta, factor)
    return found


# Answers of gls_beta kept per statistics: enough for one EM iteration's lambdas.
_MEMO_SIZE = 4


def gls_inverse(stats, lam):
    """A(lambda)^-1, so that Cov(beta_hat) = s2e A^-1 (lme4's vcov)."""
    factor = la.cho_factor(gls_system(stats, lam)[0])
    return la.cho_inverse(factor)


def is_reml(method):
    """True for "reml", False for "ml"; any other method is a caller's bug."""
    if method == "reml":
        return True
    if method == "ml":
        return False
    raise ValueError(f"method must be 'reml' or 'ml', got {method!r}.")


def denominator(stats, method):
    """The degrees of freedom of s2e: n for ML, n - p for REML (the error contrasts)."""
    return stats.n_obs - (stats.n_params if is_reml(method) else 0)


def log_det_a(factor):
    """log det A(lambda), from A's Cholesky factor: REML's log det(X'V^-1 X) is
    this minus p log s2e."""
    return 2.0 * np.log(np.diag(factor[0])).sum()


def deviance(stats, method, lam, s2e, beta=None):
    """Minus twice the log-likelihood at (lambda, s2e): lme4's deviance (ML) or
    REML criterion at any variance parameters, not only at the optimum.

    ML:   m log(2 pi s2e) + sum_j log(1 + n_j lambda) + prss(beta, lambda) / s2e
    REML: the same with m = n - p, beta the GLS beta, plus log det A(lambda)

    with m = :func:`denominator`.  ML takes any ``beta`` (the GLS beta at lambda when
    None); REML integrates beta out.
    """
    factor = None
    reml = is_reml(method)
    if beta is None or reml:
        beta, factor = gls_beta(stats, lam)
    m = denominator(stats, method)
    crit = m * (LOG_2PI + np.log(s2e)) + log_det_v_ratio(stats, lam)
    crit += penalized_rss(stats, beta, lam) / s2e
    if reml:
        crit += log_det_a(factor)
    return float(crit)


def log_likelihood(stats, method, s2u, s2e, beta=None):
    """The ML or REML log-likelihood at (beta, s2u, s2e): -deviance / 2."""
    return -0.5 * deviance(stats, method, s2u / s2e, s2e, beta)


def profiled_criterion(stats, lam, method):
    """The deviance at lambda, profiled over beta and s2e.

    This is lme4's ``deviance`` (ML) or ``REMLcrit`` (REML) as a function of the
    single variance ratio lambda: :func:`deviance` at its optimal s2e = prss / m,
    where m log(2 pi s2e) + prss / s2e = m log(2 pi prss / m) + m.
    """
    beta, factor = gls_beta(stats, lam)
    rss = penalized_rss(stats, beta, lam)
    m = denominator(stats, method)
    crit = m * (LOG_2PI + np.log(rss / m) + 1.0) + log_det_v_ratio(stats, lam)
    if is_reml(method):
        crit += log_det_a(factor)
    return float(crit)


def profiled_s2e(stats, lam, method):
    """The s2e that maximizes the likelihood at a given lambda."""
    beta, _ = gls_beta(stats, lam)
    return penalized_rss(stats, beta, lam) / denominator(stats, method)


def boundary_slope(stats, method):
    """d criterion / d lambda at lambda = 0 (at the OLS fit).

    The optimum is on the boundary s2u = 0 when this is >= 0, and there EM
    would creep toward 0 sublinearly, so the fit checks this first.  By the
    envelope theorem d rss / d lambda = -sum_j r_j^2 at 0, and
    d log det A / d lambda = -tr(X'X^-1 S'S), S the (G, p) group sums.
    """
    beta, factor = gls_beta(stats, 0.0)
    r2 = stats.classes.residual_squares(beta).sum()
    rss = ols_rss(stats, beta)
    n = stats.n_obs
    if not is_reml(method):
        return float(n - n * r2 / rss)
    classes = stats.classes
    trace = np.trace(la.cho_solve(factor, classes.gram(np.ones(classes.size.shape[0]))))
    return float(n - trace - denominator(stats, method) * r2 / rss)


def within_group_rss(stats):
    """Residual sum of squares of y on X plus a free intercept per group.

    When this is 0, y is X beta plus a constant per group exactly: s2e = 0 and the
    likelihood is unbounded.  W = X'X - sum_j s_j s_j' / n_j etc. are the within-group
    cross-products; lstsq copes with the columns (intercept, level-2 predictors)
    that have no within-group variation.
    """
    classes = stats.classes
    inverse = 1.0 / classes.size
    w_xx = stats.xtx - classes.gram(inverse)
    w_xy = stats.xty - classes.weighted_sr(inverse)
    w_yy = stats.yty - inverse @ classes.residual_squares(np.zeros(stats.n_params))
    coef = np.linalg.lstsq(w_xx, w_xy, rcond=1e-10)[0]
    return float(w_yy - w_xy @ coef)


def lambda_derivatives(stats, lam, method):
    """rss(lambda), log-determinant terms and their first two lambda-derivatives.

    Returns a dict with ``rss`` (s2e times the GLS quadratic form) and ``logdet``
    (sum_j log(1 + n_j lambda), plus log det A for REML), each with its first and
    second derivatives (suffixes 1, 2), and ``a_inv`` = A^-1, ``a1`` = dA/dlambda.
    With c_j = lambda / (1 + n_j lambda): rss' = -sum c_j' r_j^2 by the envelope
    theorem, and beta' = -A^-1 sum_j c_j' s_j r_j enters rss''.
    """
    classes = stats.classes
    n_j, count = classes.size, classes.count  # per size class
    w = 1.0 / (1.0 + n_j * lam)
    c, c1, c2 = lam * w, w**2, -2.0 * n_j * w**3
    a, b = gls_system(stats, lam)
    factor = la.cho_factor(a)
    beta = la.cho_solve(factor, b)
    r2 = classes.residual_squares(beta)
    # sum_j c1_j s_j r_j; the second derivative of rss needs its A^-1 norm.
    sr = classes.weighted_sr(c1, beta)
    a_inv = la.cho_inverse(factor)
    a1 = -classes.gram(c1)
    out = {
        "rss": ols_rss(stats, beta) - c @ r2,
        "rss1": -(c1 @ r2),
        "rss2": -(c2 @ r2) - 2.0 * sr @ la.cho_solve(factor, sr),
        "logdet": count @ np.log1p(n_j * lam),
        "logdet1": count @ (n_j * w),
        "logdet2": -(count @ (n_j * w) ** 2),
        "a_inv": a_inv,
        "a1": a1,
    }
    if is_reml(method):
        a2 = -classes.gram(c2)
        m = a_inv @ a1
        out["logdet"] += log_det_a(factor)
        out["logdet1"] += np.trace(m)
        out["logdet2"] += np.trace(a_inv @ a2) - np.einsum("ij,ji->", m, m)
    return out


def profiled_slope(stats, lam, method):
    """d profiled_criterion / d lambda, from the exact derivatives: its root is the
    optimum, found to machine precision where the criterion itself is flat."""
    d = lambda_derivatives(stats, lam, method)
    return float(denominator(stats, method) * d["rss1"] / d["rss"] + d["logdet1"])
