"""Inference for random slopes: Satterthwaite's df of the fixed effects (lmerTest) and
the likelihood-ratio test of a random slope, on the vector engine's statistics.

lmerTest differentiates the deviance as a function of the variance parameters
(theta, sigma), with beta at its GLS value and sigma not profiled: ``devfun_vp``.
Its gradient in theta is :func:`skhlm.engine.vector.gradient_lambda` at the given
sigma, and in sigma ``2 m / sigma - 2 pwrss / sigma^3`` (m = n, or n - p for REML);
the Hessian is taken by central differences of that analytic gradient, and the
Jacobian of Cov(beta) = sigma^2 A(theta)^-1 by central differences.  Satterthwaite's
df is invariant under a smooth reparametrization of (theta, sigma) at the optimum,
so the engine's standardized units give lmerTest's numbers.
"""

import numpy as np
from ..engine import vector


def varpar_gradient(stats, varpar, method, diagonal):
    """d devfun_vp / d(theta, sigma) at ``varpar`` = (theta..., sigma)."""
    theta, sigma = varpar[:-1], varpar[-1]
    lam = vector.lambda_of(theta, stats.q, diagonal)
    ev = vector.evaluate_at(stats, lam, sigma**2, method)
    g_theta = vector.theta_of_gradient(vector.gradient_lambda(stats, ev, method), diagonal)
    m = stats.n_obs if method == "ml" else stats.n_obs - stats.n_params
    g_sigma = 2.0 * m / sigma - 2.0 * ev.pwrss / sigma**3
    return np.append(g_theta, g_sigma)


def varpar_hessian(stats, varpar, method, diagonal):
    """The Hessian of devfun_vp: central differences of its analytic gradient."""
    return vector.central_hessian(lambda v: varpar_gradient(stats, v, method, diagonal), varpar, 1e-5, 1e-2)


def coef_covariance(stats, varpar, method, diagonal):
    """sigma^2 A(theta)^-1: Cov(beta_hat) at the variance parameters."""
    lam = vector.lambda_of(varpar[:-1], stats.q, diagonal)
    return varpar[-1] ** 2 * vector.evaluate(stats, lam, method).a_inv


def satterthwaite_df(stats, result, method, diagonal, contrasts):
    """Satterthwaite's df of each contrast l'beta (rows of ``contrasts``, internal
    units): df = 2 (l'Cl)^2 / (g' A g), A = 2 H^-1 on H's positive eigenvalues (as
    lmerTest's pseudo-inverse), g the gradient of l'Cl in (theta, sigma)."""
    varpar = np.append(result.theta, np.sqrt(result.s2e))
    contrasts = np.atleast_2d(contrasts)
    cov = coef_covariance(stats, varpar, method, diagonal)
    var = np.einsum("ki,ij,kj->k", contrasts, cov, contrasts)
    k = varpar.shape[0]
    grad = np.empty((contrasts.shape[0], k))
    h = 1e-5 * np.maximum(np.abs(varpar), 1e-2)
    for j in range(k):
        e = np.zeros(k)
        e[j] = h[j]
        up = coef_covariance(stats, varpar + e, method, diagonal)
        down = coef_covariance(stats, varpar - e, method, diagonal)
        grad[:, j] = np.einsum("ki,ij,kj->k", contrasts, (up - down) / (2.0 * h[j]), contrasts)
    evals, evecs = np.linalg.eigh(varpar_hessian(stats, varpar, method, diagonal))
    pos = evals > 1e-8 * np.abs(evals).max()
    h_pinv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    denom = 2.0 * np.einsum("ka,ab,kb->k", grad, h_pinv, grad)
    with np.errstate(divide="ignore"):
        return np.where(denom > 0, 2.0 * var**2 / np.where(denom > 0, denom, 1.0), np.inf)
