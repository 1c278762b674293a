"""EM for the random intercept model, on sufficient statistics.

The random intercepts u_j are the missing data.  Each update costs O(K p^2) for K
distinct group sizes: it touches the size-class sums of the group sums, never the
rows nor the groups one by one (notation: skhlm._objective).  ML estimates
(beta, s2u, s2e); REML (Laird, Lange & Stram 1987) integrates beta out and estimates
(s2u, s2e), beta being the GLS estimate at the current variances.

The parameter vector is ``theta = (beta_0, ..., beta_{p-1}, s2u, s2e)`` for both
methods, so that convergence is judged on all parameters.  The REML update reads only
the variances of its input and returns the GLS beta of its input alongside the new
variances; at the fixed point that is the REML beta.
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from . import _objective as obj


@dataclass(frozen=True)
class EMResult:
    """What the solver returns, in the units of the statistics it was given."""

    beta: np.ndarray
    s2u: float
    s2e: float
    n_iter: int
    converged: bool
    boundary: bool
    log_likelihood_history: np.ndarray


def split(theta):
    return theta[:-2], theta[-2], theta[-1]


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
    """ML E-step: u_j | y ~ N(a_j r_j(beta), v_j), with a_j = s2u / d_j and
    v_j = s2u s2e / d_j (d_j = s2e + n_j s2u).  Both depend on a group only through
    its size, so they are returned per size class; the M-step needs nothing else."""
    d = s2e + stats.classes.size * s2u
    return s2u / d, s2u * s2e / d


def m_step_ml(stats, beta_old, shrink, var, xtx_factor):
    """Maximize the expected complete-data ML log-likelihood given the E-step.

    beta solves X'X beta = X'y - sum_j s_j u_hat_j; then
    s2e = E[sum (y - X beta - u_j)^2] / n and s2u = E[sum u_j^2] / G, with
    u_hat_j = a_j r_j(beta_old).  Every sum over groups is one over size classes:
    sum_j u_hat_j^2 = sum_k a_k^2 sum_{j in k} r_j^2, and so on.
    """
    classes = stats.classes
    ss_old = classes.ss @ beta_old
    beta = linalg.cho_solve(xtx_factor, stats.xty - shrink @ (classes.st - ss_old))
    r2_old = classes.tt - 2.0 * classes.st @ beta_old + ss_old @ beta_old
    # sum over a class of r_j(beta_old) r_j(beta)
    cross = classes.tt - classes.st @ (beta_old + beta) + ss_old @ beta
    eu2 = shrink**2 * r2_old + classes.count * var  # per class: sum of E[u_j^2]
    s2e = (obj.ols_rss(stats, beta) - 2.0 * shrink @ cross + classes.size @ eu2) / stats.n_obs
    s2u = eu2.sum() / stats.n_groups
    return beta, s2u, s2e


def reml_e_step(stats, s2u, s2e):
    """REML E-step: moments of u and e given y, with beta integrated out.

    Returns the GLS beta, sum_j E[u_j^2 | y] = sum_j (u_hat_j^2 + v_j) with
    v_j = s2u - s2u^2 (Z'PZ)_jj, and E[e'e | y] = e_hat'e_hat + n s2e - s2e^2 tr(P);
    every sum over groups taken over size classes:
    sum_j (Z'PZ)_jj = sum_j n_j / d_j - tr((X'V^-1 X)^-1 sum_j s_j s_j' / d_j^2).
    """
    lam = s2u / s2e
    classes = stats.classes
    size, count = classes.size, classes.count
    beta, factor = obj.gls_beta(stats, lam)
    a_inv = s2e * linalg.cho_solve(factor, np.eye(stats.n_params))  # (X'V^-1 X)^-1
    d = s2e + size * s2u
    shrink = s2u / d
    r2 = classes.residual_squares(beta)
    sum_u_hat2 = shrink**2 @ r2

    zpz = count @ (size / d) - np.trace(a_inv @ np.tensordot(1.0 / d**2, classes.ss, axes=1))
    sum_v = stats.n_groups * s2u - s2u**2 * zpz

    c = obj.shrinkage_weights(stats, lam)
    xv2x = (stats.xtx - np.tensordot(2.0 * c - size * c**2, classes.ss, axes=1)) / s2e**2
    tr_p = count @ (size * (1.0 - c)) / s2e - np.einsum("ij,ji->", a_inv, xv2x)
    e_hat_sq = obj.ols_rss(stats, beta) - 2.0 * shrink @ r2 + size @ (shrink**2 * r2)
    expected_ee = e_hat_sq + stats.n_obs * s2e - s2e**2 * tr_p
    return beta, sum_u_hat2 + sum_v, expected_ee


def m_step_reml(stats, expected_u2, expected_ee):
    """REML M-step: s2u = E[sum u_j^2] / G, s2e = E[e'e] / n."""
    return expected_u2 / stats.n_groups, expected_ee / stats.n_obs


def ml_update(stats, theta, xtx_factor):
    """One ML update of theta = (beta, s2u, s2e): an EM step, then beta by GLS.

    The last step is ECME's (Liu & Rubin 1994): it maximizes the likelihood itself
    over beta at the new variances, so the update still never lowers it.  Plain EM
    moves beta only through the BLUPs, which stalls when the ICC is high and X
    varies between groups (hundreds of iterations); with GLS beta it takes a few.
    """
    beta, s2u, s2e = split(theta)
    shrink, var = e_step(stats, s2u, s2e)
    beta, s2u, s2e = m_step_ml(stats, beta, shrink, var, xtx_factor)
    beta = obj.gls_beta(stats, s2u / s2e)[0]
    return np.concatenate([beta, [s2u, s2e]])


def reml_update(stats, theta):
    """One REML EM update; the beta part of theta is ignored on input."""
    _, s2u, s2e = split(theta)
    beta, expected_u2, expected_ee = reml_e_step(stats, s2u, s2e)
    s2u, s2e = m_step_reml(stats, expected_u2, expected_ee)
    return np.concatenate([beta, [s2u, s2e]])


def log_likelihood(stats, theta, method):
    """The objective EM increases: the ML or the REML log-likelihood at theta."""
    beta, s2u, s2e = split(theta)
    if method == "ml":
        return obj.ml_log_likelihood(stats, beta, s2u, s2e)
    return obj.reml_log_likelihood(stats, s2u, s2e)


def moment_start(stats):
    """Starting values from moments, as lme4 starts: OLS beta, then the within-group
    residual variance for s2e and the excess variance of the group mean residuals
    r_j / n_j for s2u (floored, since EM cannot leave s2u = 0)."""
    beta, _ = obj.gls_beta(stats, 0.0)
    classes = stats.classes
    n, n_groups, size = stats.n_obs, stats.n_groups, classes.size
    r2 = classes.residual_squares(beta)
    rss = obj.ols_rss(stats, beta)
    within = max(rss - r2 @ (1.0 / size), 0.0)
    s2e = within / (n - n_groups) if n > n_groups and within > 0 else rss / n
    mean_sum = (classes.t - classes.s @ beta) @ (1.0 / size)  # sum_j r_j / n_j
    square_sum = r2 @ (1.0 / size**2)
    between = (square_sum - mean_sum**2 / n_groups) / (n_groups - 1) if n_groups > 1 else 0.0
    s2u = max(between - s2e * (classes.count @ (1.0 / size)) / n_groups, 0.1 * s2e)
    return np.concatenate([beta, [s2u, s2e]])


def parameter_change(step, theta):
    """The convergence measure: the largest change of any parameter in one update.

    Absolute for beta (the statistics are standardized, so beta is in units of
    standard deviations) and relative for the variances, which can be far below 1.
    """
    beta_change = np.max(np.abs(step[:-2]), initial=0.0)
    return max(beta_change, np.max(np.abs(step[-2:]) / theta[-2:]))


def _feasible(theta):
    return np.all(np.isfinite(theta)) and theta[-2] > 0 and theta[-1] > 0


def squarem_step(update, objective, theta, current):
    """One safeguarded SQUAREM cycle (Varadhan & Roland 2008, scheme S3).

    Extrapolates along two EM updates and stabilizes with a third.  The step length
    is halved toward the plain double update when the extrapolation leaves the
    parameter space or lowers the objective, so the objective never decreases.
    Returns the new theta, its objective, the plain EM step (for the convergence
    test) and the number of EM updates spent.
    """
    theta1 = update(theta)
    theta2 = update(theta1)
    r = theta1 - theta
    v = theta2 - theta1 - r
    n_updates = 2
    vv = v @ v
    alpha = -np.sqrt((r @ r) / vv) if vv > 0 else -1.0
    while alpha < -1.0:
        candidate = theta - 2.0 * alpha * r + alpha**2 * v
        if _feasible(candidate):
            candidate = update(candidate)
            n_updates += 1
            if _feasible(candidate):
                value = objective(candidate)
                if value >= current:
                    return candidate, value, r, n_updates
        alpha = 0.5 * (alpha - 1.0)
        if alpha > -1.01:
            break
    return theta2, objective(theta2), r, n_updates


def fit(stats, method, *, max_iter=200, tol=1e-10, accelerate=True, verbose=0):
    """Fit the model by EM from moment starting values.

    Parameters
    ----------
    stats : SufficientStats
    method : {"reml", "ml"}
    max_iter : int
        The most iterations; an accelerated iteration spends at most a few EM
        updates.
    tol : float
        Converged when no parameter changes by more than ``tol`` in one EM update,
        as measured by :func:`parameter_change`.
    accelerate : bool
        SQUAREM (True) or plain EM (False).  With acceleration, a fit still not
        converged after ``POLISH_AFTER`` iterations is finished by
        :func:`profile_polish`; EM then confirms the fixed point.

    Returns
    -------
    EMResult
    """
    if obj.boundary_slope(stats, method) >= 0:
        return boundary_fit(stats, method)

    if method == "ml":
        xtx_factor = linalg.cho_factor(stats.xtx)

        def update(theta):
            return ml_update(stats, theta, xtx_factor)

    else:

        def update(theta):
            return reml_update(stats, theta)

    def objective(theta):
        return log_likelihood(stats, theta, method)

    theta = moment_start(stats)
    if method == "reml":
        theta[:-2] = obj.gls_beta(stats, theta[-2] / theta[-1])[0]
    current = objective(theta)
    history = []
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        if accelerate and n_iter == POLISH_AFTER + 1:
            theta = profile_polish(stats, method, theta)
            new = update(theta)
            step = new - theta
            theta, current = new, objective(new)
        elif accelerate:
            theta, current, step, _ = squarem_step(update, objective, theta, current)
        else:
            new = update(theta)
            step = new - theta
            theta, current = new, objective(new)
        history.append(current)
        change = parameter_change(step, theta)
        if verbose:
            print(f"EM iteration {n_iter:4d}  log-likelihood {current:.10f}  change {change:.3e}")
        if change <= tol:
            converged = True
            break

    beta, s2u, s2e = split(theta)
    if method == "reml":
        beta = obj.gls_beta(stats, s2u / s2e)[0]
    return EMResult(
        beta=beta,
        s2u=float(s2u),
        s2e=float(s2e),
        n_iter=n_iter,
        converged=converged,
        boundary=False,
        log_likelihood_history=np.asarray(history),
    )


# Typical fits converge in 3 to 15 SQUAREM iterations; those that have not by then
# have an optimum close to s2u = 0, where EM's rate of convergence tends to 1.
POLISH_AFTER = 25


def profile_polish(stats, method, theta):
    """The point where the profiled criterion's slope in lambda vanishes, near theta.

    The criterion profiled over beta and s2e is a function of lambda alone; the
    root of its exact derivative, bracketed around theta's lambda and found by
    Brent's method in log lambda, locates the optimum to machine precision even
    where the criterion is too flat for a search on its values.  beta and s2e
    follow in closed form.  Used where EM is slow (an optimum close to, but not
    at, s2u = 0); theta is returned unchanged when no sign change is found.
    """
    def slope(t):
        return obj.profiled_slope(stats, np.exp(t), method)

    center = np.log(theta[-2] / theta[-1])
    lower, upper = center - 1.0, center + 1.0
    for _ in range(20):  # widen to a sign change: slope < 0 below, > 0 above
        low_ok, high_ok = slope(lower) < 0, slope(upper) > 0
        if low_ok and high_ok:
            break
        lower, upper = lower - (not low_ok) * 2.0, upper + (not high_ok) * 2.0
    else:
        return theta
    lam = float(np.exp(optimize.brentq(slope, lower, upper, xtol=1e-14, rtol=1e-14)))
    s2e = obj.profiled_s2e(stats, lam, method)
    return np.concatenate([obj.gls_beta(stats, lam)[0], [lam * s2e, s2e]])


def boundary_fit(stats, method):
    """The fit at s2u = 0 exactly: OLS beta, s2e = rss / n (ML) or rss / (n - p).

    Found in closed form, which counts as one iteration.  An exact fit (possible only
    without groups: the estimator refuses it with them) has s2e = 0 and an infinite
    log-likelihood, as R's lm reports.
    """
    beta, _ = obj.gls_beta(stats, 0.0)
    s2e = max(obj.profiled_s2e(stats, 0.0, method), 0.0)  # rounding can dip below 0
    theta = np.concatenate([beta, [0.0, s2e]])
    value = log_likelihood(stats, theta, method) if s2e > 0 else np.inf
    return EMResult(
        beta=beta,
        s2u=0.0,
        s2e=float(s2e),
        n_iter=1,
        converged=True,
        boundary=True,
        log_likelihood_history=np.array([value]),
    )
