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
from ..engine import newton, vector


def varpar_gradient(stats, varpar, method, diagonal):
    """d devfun_vp / d(theta, sigma) at ``varpar`` = (theta..., sigma)."""
    theta, sigma = varpar[:-1], varpar[-1]
    lam = vector.lambda_of(theta, stats.q, diagonal)
    ev = vector.evaluate_at(stats, lam, sigma**2, method, vector.GRADIENT)
    g_theta = vector.theta_of_gradient(vector.gradient_lambda(stats, ev, method), diagonal)
    m = stats.n_obs if method == "ml" else stats.n_obs - stats.n_params
    g_sigma = 2.0 * m / sigma - 2.0 * ev.pwrss / sigma**3
    return np.append(g_theta, g_sigma)


def varpar_hessian(stats, varpar, method, diagonal):
    """The Hessian of devfun_vp: central differences of its analytic gradient."""
    return newton.gradient_hessian(lambda v: varpar_gradient(stats, v, method, diagonal), varpar, 1e-5, 1e-2)


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


# -- Profile-likelihood intervals of the standard deviations and correlations --


def _pairs(q):
    """lme4's order of the variance parameters: per column k, sd_k then the
    correlations of the later effects with it; ("sd", k, k) or ("cor", i, k)."""
    out = []
    for k in range(q):
        out.append(("sd", k, k))
        out += [("cor", i, k) for i in range(k + 1, q)]
    return out


def variance_parameters(fit):
    """The ML fit's variance parameters in the user's units, in lme4's order: sds,
    correlations (unstructured only) and sigma; with their names."""
    ml = fit.ml
    sigma = ml.sigma_to_user(ml.result.sigma)
    sd = np.sqrt(np.diag(sigma))
    names, values = [], []
    effects = ["(Intercept)", *ml.random_terms[1:]]
    group = ml.names.group
    for kind, i, k in _pairs(sigma.shape[0]):
        if kind == "cor" and ml.diagonal:
            continue
        if kind == "sd":
            names.append(f"sd_{effects[k]}|{group}")
            values.append(sd[k])
        else:
            names.append(f"cor_{effects[i]}.{effects[k]}|{group}")
            values.append(sigma[i, k] / (sd[i] * sd[k]) if sd[i] * sd[k] > 0 else 0.0)
    names.append("sigma")
    values.append(np.sqrt(ml.units.variance_to_user(ml.result.s2e)))
    return ml, names, np.asarray(values, dtype=np.float64)


def _deviance_function(ml):
    """The ML deviance (internal units, up to a constant) at user variance
    parameters (sds, correlations, sigma): +inf where they give no covariance."""
    q = ml.T.shape[0]
    T_inv = np.linalg.inv(ml.T)
    scale2 = ml.units.y_scale**2
    kinds = [(kind, i, k) for kind, i, k in _pairs(q) if not (kind == "cor" and ml.diagonal)]

    def deviance(phi):
        sd = np.zeros(q)
        corr = np.eye(q)
        for value, (kind, i, k) in zip(phi[:-1], kinds):
            if kind == "sd":
                sd[k] = value
            else:
                corr[i, k] = corr[k, i] = value
        sigma = phi[-1]
        if sigma <= 0 or np.any(sd < 0) or np.any(np.abs(corr) > 1):
            return np.inf
        user = corr * np.outer(sd, sd)
        internal = T_inv @ user @ T_inv.T / scale2
        if np.linalg.eigvalsh(internal).min() < -1e-12 * max(np.abs(internal).max(), 1e-300):
            return np.inf
        try:
            return vector.unprofiled_criterion(ml.slope_stats, internal, sigma**2 / scale2, "ml")
        except np.linalg.LinAlgError:  # a covariance too extreme for float64
            return np.inf

    return deviance, kinds


def _free_transform(kinds):
    """Maps between the free parameters and an unconstrained vector: log for the
    sds and sigma, artanh for the correlations."""
    is_cor = np.array([kind == "cor" for kind, _, _ in kinds] + [False])

    def to_free(phi):
        with np.errstate(divide="ignore"):
            return np.where(is_cor, np.arctanh(np.clip(phi, -1 + 1e-15, 1 - 1e-15)), np.log(np.maximum(phi, 1e-300)))

    def from_free(x):
        return np.where(is_cor, np.tanh(x), np.exp(x))

    return to_free, from_free


def _bracket(zeta, estimate, limit, z):
    """An interval around where |zeta| crosses z: stepping from the estimate toward
    the limit (which zeta reaches), or, with no limit, upward by factors of 1.5."""
    previous = estimate
    if limit is None:
        v = estimate * 1.5 if estimate > 0 else 1.0
        while zeta(v) < z:
            previous, v = v, v * 1.5
        return previous, v
    for t in (0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        v = estimate + t * (limit - estimate)
        if abs(zeta(v)) >= z:
            return tuple(sorted((previous, v)))
        previous = v
    return tuple(sorted((estimate, limit)))


def profile_intervals(fit, level=0.95):
    """lme4's ``confint(m, method = "profile")`` for the variance parameters: for each
    sd, correlation and sigma, the values where the ML deviance, minimized over the
    others, rises by chi2_1's ``level`` quantile above its minimum (REML fits are
    refitted by ML first, as lme4 does).  A bound that the profile does not reach
    before the parameter's limit is that limit: 0 for an sd, -1 or 1 for a
    correlation.  Returns a DataFrame with columns ``lower`` and ``upper``."""
    import pandas as pd
    from scipy import optimize
    from scipy import stats as st

    ml, names, phi_hat = variance_parameters(fit)
    deviance, kinds = _deviance_function(ml)
    to_free, from_free = _free_transform(kinds)
    dev_min = deviance(phi_hat)
    z = float(np.sqrt(st.chi2.ppf(level, 1)))
    rows = []
    for j, (kind, _, _) in enumerate(kinds + [("sigma", -1, -1)]):
        others = np.arange(phi_hat.size) != j
        start = {"x": to_free(phi_hat)[others]}  # each inner fit starts from the last

        def zeta(v, j=j, others=others, start=start):
            """The signed root of the profiled deviance's rise at phi_j = v."""
            def inner(x):
                phi = from_free(np.where(others, np.insert(x, j, 0.0), 0.0))
                phi[j] = v
                return deviance(phi)

            with np.errstate(invalid="ignore"):  # Nelder-Mead's test on an infinite vertex
                res = optimize.minimize(inner, start["x"], method="Nelder-Mead",
                                        options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 20000, "maxfev": 20000})
            if np.isfinite(res.fun):
                start["x"] = res.x
            return np.sign(v - phi_hat[j]) * np.sqrt(max(res.fun - dev_min, 0.0))

        bounds = []
        for direction in (-1.0, 1.0):
            start["x"] = to_free(phi_hat)[others]
            # A correlation ends at +-1 and an sd at 0; upward an sd or sigma is open.
            limit = direction * (1.0 - 1e-9) if kind == "cor" else (phi_hat[j] * 1e-9 if direction < 0 else None)
            if limit is not None and abs(zeta(limit)) < z:  # never reaches the critical value
                bounds.append(direction if kind == "cor" else 0.0)
                continue
            start["x"] = to_free(phi_hat)[others]
            lo, hi = _bracket(zeta, phi_hat[j], limit, z)
            bounds.append(optimize.brentq(lambda v: zeta(v) - direction * z, lo, hi,
                                          xtol=1e-8 * max(abs(hi), 1e-12), rtol=1e-8))
        rows.append(bounds)
    return pd.DataFrame(rows, index=names, columns=["lower", "upper"])
