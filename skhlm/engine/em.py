"""The EM driver: start, iterate, accelerate, detect the boundary, polish, record.

:func:`fit` is the only place that runs EM.  The estimators' fits, the ML refit of a
REML model (for likelihood-ratio tests and profile intervals) and any later caller
that needs a fit from a given starting point go through it, with one set of limits
(:class:`Limits`) and one convergence warning.  The steps themselves are in
skhlm.engine.steps and the objective in skhlm.engine.criterion.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from sklearn.exceptions import ConvergenceWarning

from .._checks import warn
from . import criterion as crit
from . import linalg as la
from . import steps


@dataclass(frozen=True)
class Limits:
    """When EM stops: converged when no parameter changes by more than ``tol`` in
    one EM update (:func:`parameter_change`), or after ``max_iter`` iterations."""

    max_iter: int = 200
    tol: float = 1e-10


@dataclass(frozen=True, eq=False)
class EMResult:
    """What the driver returns, in the units of the statistics it was given.

    ``log_likelihood_history`` holds the objective after every iteration.
    """

    beta: np.ndarray
    s2u: float
    s2e: float
    n_iter: int
    converged: bool
    boundary: bool
    log_likelihood_history: np.ndarray


# What a fit that did not converge is, and what its failure means, by its purpose.
_PURPOSES = {
    "fit": ("EM", "log_likelihood_history_ shows how far the fit got."),
    "ml refit": (
        "The ML refit of this REML model (for compare(refit=True) and the profile "
        "intervals)",
        "its likelihood-ratio tests and profile intervals may be off.",
    ),
}


def parameter_change(step, params):
    """The convergence measure: the largest change of any parameter in one update.

    Absolute for beta (the statistics are standardized, so beta is in units of
    standard deviations) and relative for the variances, which can be far below 1.
    """
    beta_change = np.max(np.abs(step[:-2]), initial=0.0)
    return max(beta_change, np.max(np.abs(step[-2:]) / params[-2:]))


def _feasible(params):
    return math.isfinite(params.sum()) and params[-2] > 0 and params[-1] > 0


def squarem_step(update, objective, params, current, feasible=_feasible):
    """One safeguarded SQUAREM cycle (Varadhan & Roland 2008, scheme S3).

    Extrapolates along two EM updates and stabilizes with a third.  The step length
    is halved toward the plain double update when the extrapolation leaves the
    parameter space or lowers the objective, so the objective never decreases.
    Returns the new params, its objective, the plain EM step (for the convergence
    test) and the number of EM updates spent.
    """
    params1 = update(params)
    params2 = update(params1)
    r = params1 - params
    v = params2 - params1 - r
    n_updates = 2
    vv = v @ v
    alpha = -np.sqrt((r @ r) / vv) if vv > 0 else -1.0
    while alpha < -1.0:
        candidate = params - 2.0 * alpha * r + alpha**2 * v
        if feasible(candidate):
            candidate = update(candidate)
            n_updates += 1
            if feasible(candidate):
                value = objective(candidate)
                if value >= current:
                    return candidate, value, r, n_updates
        alpha = 0.5 * (alpha - 1.0)
        if alpha > -1.01:
            break
    return params2, objective(params2), r, n_updates


def fit(
    stats,
    method,
    *,
    limits=Limits(),
    start=None,
    grouped=True,
    accelerate=True,
    verbose=0,
    log_jacobian=0.0,
    purpose="fit",
):
    """Fit the model by EM, from moment starting values or from ``start``.

    Parameters
    ----------
    stats : SufficientStats
    method : {"reml", "ml"}
    limits : Limits
        The most iterations (an accelerated iteration spends at most a few EM
        updates) and the convergence tolerance.
    start : tuple (beta, s2u, s2e), optional
        A starting point (a warm start), e.g. the REML estimates for the ML refit;
        a start with s2u = 0 is lifted off the boundary, where EM cannot move.
        Moment estimates (:func:`skhlm.engine.steps.moment_start`) when None.
    grouped : bool
        False for a model without groups: no random effects, the fit at s2u = 0.
    accelerate : bool
        SQUAREM (True) or plain EM (False).  With acceleration, a fit still not
        converged after ``POLISH_AFTER`` iterations is finished by
        :func:`profile_polish`; EM then confirms the fixed point.
    verbose : int
        Print each iteration's log-likelihood, minus ``log_jacobian`` (what
        standardizing added to it: skhlm.data.units), so in the user's units.
    purpose : {"fit", "ml refit"}
        What the fit is for: it names the fit in the ConvergenceWarning.

    Returns
    -------
    EMResult

    Warns
    -----
    ConvergenceWarning
        When EM does not meet ``limits.tol`` within ``limits.max_iter`` iterations.
    """
    if not grouped or crit.boundary_slope(stats, method) >= 0:
        return boundary_fit(stats, method)

    if method == "ml":
        xtx_factor = la.cho_factor(stats.xtx)

        def update(params):
            return steps.ml_update(stats, params, xtx_factor)

    else:

        def update(params):
            return steps.reml_update(stats, params)

    def objective(params):
        return steps.log_likelihood(stats, params, method)

    params = _starting_point(stats, method, start)
    current = objective(params)
    history = []
    converged = False
    n_iter = 0
    while n_iter < limits.max_iter:
        n_iter += 1
        if accelerate and n_iter == POLISH_AFTER + 1:
            params = profile_polish(stats, method, params)
            new = update(params)
            step = new - params
            params, current = new, objective(new)
        elif accelerate:
            params, current, step, _ = squarem_step(update, objective, params, current)
        else:
            new = update(params)
            step = new - params
            params, current = new, objective(new)
        history.append(current)
        change = parameter_change(step, params)
        if verbose:
            user = current - log_jacobian
            print(f"EM iteration {n_iter:4d}  log-likelihood {user:.10f}  change {change:.3e}")
        if change <= limits.tol:
            converged = True
            break
    if not converged:
        what, consequence = _PURPOSES[purpose]
        warn(
            f"{what} did not converge in max_iter={limits.max_iter} iterations "
            f"(tol={limits.tol}); {consequence} Increase max_iter, or loosen tol.",
            ConvergenceWarning,
        )

    beta, s2u, s2e = steps.split(params)
    if method == "reml":
        beta = crit.gls_beta(stats, s2u / s2e)[0]
    return EMResult(
        beta=beta,
        s2u=float(s2u),
        s2e=float(s2e),
        n_iter=n_iter,
        converged=converged,
        boundary=False,
        log_likelihood_history=np.asarray(history),
    )


def _starting_point(stats, method, start):
    if start is None:
        params = steps.moment_start(stats)
    else:
        beta, s2u, s2e = start
        # EM cannot leave s2u = 0: start a boundary estimate where moments would.
        floor = steps.moment_start(stats)[-2] if s2u <= 0 else s2u
        params = np.concatenate([np.asarray(beta, dtype=np.float64), [floor, s2e]])
    if method == "reml":
        params[:-2] = crit.gls_beta(stats, params[-2] / params[-1])[0]
    return params


# Typical fits converge in 3 to 15 SQUAREM iterations; those that have not by then
# have an optimum close to s2u = 0, where EM's rate of convergence tends to 1.
POLISH_AFTER = 25


def profile_polish(stats, method, params):
    """The point where the profiled criterion's slope in lambda vanishes, near params.

    The criterion profiled over beta and s2e is a function of lambda alone; the
    root of its exact derivative, bracketed around params' lambda and found by
    Brent's method in log lambda, locates the optimum to machine precision even
    where the criterion is too flat for a search on its values.  beta and s2e
    follow in closed form.  Used where EM is slow (an optimum close to, but not
    at, s2u = 0); params is returned unchanged when no sign change is found.
    """

    def slope(t):
        return crit.profiled_slope(stats, np.exp(t), method)

    center = np.log(params[-2] / params[-1])
    lower, upper = center - 1.0, center + 1.0
    for _ in range(20):  # widen to a sign change: slope < 0 below, > 0 above
        low_ok, high_ok = slope(lower) < 0, slope(upper) > 0
        if low_ok and high_ok:
            break
        lower, upper = lower - (not low_ok) * 2.0, upper + (not high_ok) * 2.0
    else:
        return params
    lam = float(np.exp(optimize.brentq(slope, lower, upper, xtol=1e-14, rtol=1e-14)))
    s2e = crit.profiled_s2e(stats, lam, method)
    return np.concatenate([crit.gls_beta(stats, lam)[0], [lam * s2e, s2e]])


def boundary_fit(stats, method):
    """The fit at s2u = 0 exactly: OLS beta, s2e = rss / n (ML) or rss / (n - p).

    Found in closed form, which counts as one iteration.  An exact fit (possible only
    without groups: the estimator refuses it with them) has s2e = 0 and an infinite
    log-likelihood, as R's lm reports.
    """
    beta, _ = crit.gls_beta(stats, 0.0)
    s2e = max(crit.profiled_s2e(stats, 0.0, method), 0.0)  # rounding can dip below 0
    value = crit.log_likelihood(stats, method, 0.0, s2e) if s2e > 0 else np.inf
    return EMResult(
        beta=beta,
        s2u=0.0,
        s2e=float(s2e),
        n_iter=1,
        converged=True,
        boundary=True,
        log_likelihood_history=np.array([value]),
    )
