"""The E- and M-steps of EM for the random intercept model, on sufficient statistics.

The random intercepts u_j are the missing data.  Each update costs O(K p^2) for K
distinct group sizes: it touches the size-class sums of the group sums, never the
rows nor the groups one by one (notation: skhlm.engine.criterion; c_j =
lambda / (1 + n_j lambda) = s2u / (s2e + n_j s2u) is the shrinkage weight, so that
E[u_j | y] = c_j r_j).  ML estimates (beta, s2u, s2e); REML (Laird, Lange & Stram
1987) integrates beta out and estimates (s2u, s2e), beta being the GLS estimate at
the current variances.

EM moves the vector ``params = (beta_0, ..., beta_{p-1}, s2u, s2e)`` for both
methods, so that convergence is judged on all of them.  (theta is reserved for the
variance parameters, lme4's sqrt(lambda).)  The REML update reads only the variances
of its input and returns the GLS beta of its input alongside the new variances; at
the fixed point that is the REML beta.
"""

import numpy as np
from . import linalg as la

from . import criterion as crit


def split(params):
    """(beta, s2u, s2e) of an EM vector."""
    return params[:-2], params[-2], params[-1]


def posterior(stats, beta, s2u, s2e):
    """Posterior mean and variance of each u_j given y, at fixed beta: the BLUPs,
    in the order of the group labels.

    u_hat_j = s2u r_j / d_j and v_j = s2u s2e / d_j, with d_j = s2e + n_j s2u.
    """
    groups = stats.groups
    d = groups.sizes * s2u  # in size order, in place: G may be as large as n / 2
    d += s2e
    u = groups.residual_sums(beta, by_level=False)
    u *= s2u
    u /= d
    np.divide(s2u * s2e, d, out=d)
    return groups.by_level(u), groups.by_level(d)


def e_step(stats, s2u, s2e):
    """ML E-step: u_j | y ~ N(c_j r_j(beta), v_j), with c_j = s2u / d_j and
    v_j = s2u s2e / d_j (d_j = s2e + n_j s2u).  Both depend on a group only through
    its size, so they are returned per size class; the M-step needs nothing else."""
    d = s2e + stats.classes.size * s2u
    return s2u / d, s2u * s2e / d


def m_step_ml(stats, beta_old, c, var, xtx_factor):
    """Maximize the expected complete-data ML log-likelihood given the E-step.

    beta solves X'X beta = X'y - sum_j s_j u_hat_j; then
    s2e = E[sum (y - X beta - u_j)^2] / n and s2u = E[sum u_j^2] / G, with
    u_hat_j = c_j r_j(beta_old).  Every sum over groups is one over size classes:
    sum_j u_hat_j^2 = sum_k c_k^2 sum_{j in k} r_j^2, and so on.
    """
    classes = stats.classes
    beta = la.cho_solve(xtx_factor, stats.xty - classes.weighted_sr(c, beta_old))
    r2_old = classes.residual_squares(beta_old)
    cross = classes.cross_residuals(beta_old, beta)
    eu2 = c**2 * r2_old + classes.count * var  # per class: sum of E[u_j^2]
    s2e = (crit.ols_rss(stats, beta) - 2.0 * c @ cross + classes.size @ eu2) / stats.n_obs
    s2u = eu2.sum() / stats.n_groups
    return beta, s2u, s2e


def reml_e_step(stats, s2u, s2e):
    """REML E-step: moments of u and e given y, with beta integrated out.

    Returns the GLS beta, sum_j E[u_j^2 | y] = sum_j (u_hat_j^2 + v_j) with
    v_j = s2u - s2u^2 (Z'PZ)_jj, and E[e'e | y] = e_hat'e_hat + n s2e - s2e^2 tr(P);
    every sum over groups taken over size classes:
    sum_j (Z'PZ)_jj = sum_j n_j / d_j - tr((X'V^-1 X)^-1 sum_j s_j s_j' / d_j^2)
    and tr(P) = (n - sum_j n_j c_j) / s2e - tr((X'V^-1 X)^-1 X'V^-2 X), with
    s2e^2 X'V^-2 X = X'X - sum_j (2 c_j - n_j c_j^2) s_j s_j'.  Each trace is a
    weighted sum of the K traces tr(A^-1 sum_{j in k} s_j s_j'), formed once.
    """
    classes = stats.classes
    size, count = classes.size, classes.count
    beta, factor = crit.gls_beta(stats, s2u / s2e)
    a_inv = la.cho_inverse(factor)  # A^-1 = (X'V^-1 X)^-1 / s2e
    traces = classes.traces(a_inv)  # tr(A^-1 ss_k)
    d = s2e + size * s2u
    c = s2u / d
    r2 = classes.residual_squares(beta)
    w2 = c * (2.0 - size * c)  # 2 c - n c^2: the weights of s2e^2 X'V^-2 X

    zpz = count @ (size / d) - s2e * ((1.0 / d**2) @ traces)
    sum_v = stats.n_groups * s2u - s2u**2 * zpz
    tr_p = (stats.n_obs - count @ (size * c) - np.vdot(a_inv, stats.xtx) + w2 @ traces) / s2e
    e_hat_sq = crit.ols_rss(stats, beta) - w2 @ r2
    expected_ee = e_hat_sq + stats.n_obs * s2e - s2e**2 * tr_p
    return beta, (c * c) @ r2 + sum_v, expected_ee


def m_step_reml(stats, expected_u2, expected_ee):
    """REML M-step: s2u = E[sum u_j^2] / G, s2e = E[e'e] / n."""
    return expected_u2 / stats.n_groups, expected_ee / stats.n_obs


def ml_update(stats, params, xtx_factor):
    """One ML update of params = (beta, s2u, s2e): an EM step, then beta by GLS.

    The last step is ECME's (Liu & Rubin 1994): it maximizes the likelihood itself
    over beta at the new variances, so the update still never lowers it.  Plain EM
    moves beta only through the BLUPs, which stalls when the ICC is high and X
    varies between groups (hundreds of iterations); with GLS beta it takes a few.
    """
    beta, s2u, s2e = split(params)
    c, var = e_step(stats, s2u, s2e)
    beta, s2u, s2e = m_step_ml(stats, beta, c, var, xtx_factor)
    beta = crit.gls_beta(stats, s2u / s2e)[0]
    return np.concatenate([beta, [s2u, s2e]])


def reml_update(stats, params):
    """One REML EM update; the beta part of params is ignored on input."""
    _, s2u, s2e = split(params)
    beta, expected_u2, expected_ee = reml_e_step(stats, s2u, s2e)
    s2u, s2e = m_step_reml(stats, expected_u2, expected_ee)
    return np.concatenate([beta, [s2u, s2e]])


def log_likelihood(stats, params, method):
    """The objective EM increases: the ML or the REML log-likelihood at params."""
    beta, s2u, s2e = split(params)
    return crit.log_likelihood(stats, method, s2u, s2e, beta)


def moment_start(stats):
    """Starting values from moments, as lme4 starts: OLS beta, then the within-group
    residual variance for s2e and the excess variance of the group mean residuals
    r_j / n_j for s2u (floored, since EM cannot leave s2u = 0)."""
    beta, _ = crit.gls_beta(stats, 0.0)
    classes = stats.classes
    n, n_groups, size = stats.n_obs, stats.n_groups, classes.size
    r2 = classes.residual_squares(beta)
    rss = crit.ols_rss(stats, beta)
    within = max(rss - r2 @ (1.0 / size), 0.0)
    s2e = within / (n - n_groups) if n > n_groups and within > 0 else rss / n
    mean_sum = (classes.t - classes.s @ beta) @ (1.0 / size)  # sum_j r_j / n_j
    square_sum = r2 @ (1.0 / size**2)
    between = (square_sum - mean_sum**2 / n_groups) / (n_groups - 1) if n_groups > 1 else 0.0
    s2u = max(between - s2e * (classes.count @ (1.0 / size)) / n_groups, 0.1 * s2e)
    return np.concatenate([beta, [s2u, s2e]])
