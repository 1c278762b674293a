"""Standard errors, Satterthwaite degrees of freedom, intervals of the random effects
and predictive standard deviations, on sufficient statistics.

The functions in the first part are pure: they take the standardized
:class:`~skhlm.data.stats.SufficientStats` and variances in the same units (notation:
skhlm.engine.criterion) and cost O(K p^2).  The others take a
:class:`~skhlm.engine.result.FitResult` and report in the user's units, through its
map (skhlm.data.units).

Satterthwaite's method follows lmerTest: the deviance as a function of the variance
parameters (theta, sigma), with theta = sqrt(lambda) = sigma_u / sigma (lme4's
theta), profiled over beta only.
"""

import numpy as np
import pandas as pd
from scipy import linalg, special
from scipy import stats as st

from ..engine import criterion as crit

# -- Satterthwaite degrees of freedom (lmerTest) --


def deviance_hessian(stats, s2u, s2e, method, derivatives=None):
    """Hessian of the deviance in (theta, sigma), profiled over beta only.

    The deviance is D = logdet(lambda) + rss(lambda) / sigma^2 + m log(2 pi sigma^2),
    m = n (ML) or n - p (REML): lmerTest's ``devfun_vp``.  With lambda = theta^2,
    D_theta,theta = 2 D_lambda + 4 lambda D_lambda,lambda, which at a boundary fit
    (theta = 0) is 2 D_lambda and the cross term vanishes.  ``derivatives`` are
    :func:`~skhlm.engine.criterion.lambda_derivatives` at s2u / s2e for ``method``,
    computed when not given.
    """
    lam = s2u / s2e
    d = crit.lambda_derivatives(stats, lam, method) if derivatives is None else derivatives
    m = crit.denominator(stats, method)
    d_lam = d["logdet1"] + d["rss1"] / s2e
    d_lam2 = d["logdet2"] + d["rss2"] / s2e
    sigma = np.sqrt(s2e)
    h_tt = 2.0 * d_lam + 4.0 * lam * d_lam2
    h_ts = -4.0 * np.sqrt(lam) * d["rss1"] / sigma**3
    h_ss = 6.0 * d["rss"] / s2e**2 - 2.0 * m / s2e
    return np.array([[h_tt, h_ts], [h_ts, h_ss]])


def covariance_jacobian(s2u, s2e, derivatives):
    """d Cov(beta_hat) / d(theta, sigma) with Cov = sigma^2 A(theta^2)^-1: (2, p, p).
    Only A^-1 and dA/dlambda of ``derivatives`` (at lambda = s2u / s2e, either
    method's) are read."""
    lam = s2u / s2e
    d = derivatives
    a_inv = d["a_inv"]
    d_theta = -2.0 * np.sqrt(lam) * s2e * (a_inv @ d["a1"] @ a_inv)
    d_sigma = 2.0 * np.sqrt(s2e) * a_inv
    return np.stack([d_theta, d_sigma])


def satterthwaite_df(stats, s2u, s2e, method, contrasts, derivatives=None):
    """Satterthwaite's denominator df of each contrast l'beta (rows of ``contrasts``).

    df = 2 (l'Cl)^2 / (g' A g), C = Cov(beta_hat), g the gradient of l'Cl in
    (theta, sigma) and A = 2 H^-1, H the deviance Hessian; as lmerTest, H is
    inverted on its positive eigenvalues only.  One factorization of A(lambda) serves
    all three (``derivatives``, as in :func:`deviance_hessian`).
    """
    lam = s2u / s2e
    d = crit.lambda_derivatives(stats, lam, method) if derivatives is None else derivatives
    contrasts = np.atleast_2d(contrasts)
    var = np.einsum("ki,ij,kj->k", contrasts, s2e * d["a_inv"], contrasts)
    jac = covariance_jacobian(s2u, s2e, d)
    grad = np.einsum("ki,aij,kj->ka", contrasts, jac, contrasts)
    evals, evecs = linalg.eigh(deviance_hessian(stats, s2u, s2e, method, d))
    pos = evals > 1e-8 * np.abs(evals).max()
    h_pinv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    denom = 2.0 * np.einsum("ka,ab,kb->k", grad, h_pinv, grad)
    with np.errstate(divide="ignore"):
        return np.where(denom > 0, 2.0 * var**2 / np.where(denom > 0, denom, 1.0), np.inf)


# -- Student's t, for the t tests and their intervals --


def t_sf(x, df):
    """P(T > x), T Student's t with ``df`` degrees of freedom (the normal's at
    df = inf; NaN at a NaN df or x), elementwise.

    The numbers of ``scipy.stats.t.sf(x, df)``, which calls the same
    ``scipy.special.stdtr``; this skips scipy.stats' argument handling, which cost
    ~50 us a call, a tenth of a small summary.
    """
    return special.stdtr(df, -np.asarray(x, dtype=np.float64))


def t_quantile(q, df):
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom, elementwise,
    for 0 < q < 1: the numbers of ``scipy.stats.t.ppf(q, df)`` (``scipy.special.
    stdtrit``), without its ~100 us of argument handling."""
    return special.stdtrit(df, np.asarray(q, dtype=np.float64))


# -- On a fit result: user units --


def coef_covariance(result):
    """Cov(beta_hat) in the user's units: lme4's ``vcov``.

    Parameters
    ----------
    result : FitResult

    Returns
    -------
    cov : ndarray of shape (n_features_in_ + fit_intercept,) * 2
        Intercept first when the model has one.  Rows and columns of a feature
        dropped as linearly redundant are NaN (lme4 drops the column).

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.inference.vcov import coef_covariance
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> np.sqrt(np.diag(coef_covariance(m._result))).round(3)
    array([0.264, 0.079])
    """
    return result.coef_covariance()


def coefficient_df(result):
    """Satterthwaite's df of each coefficient in the user's units, intercept first
    (NaN for a dropped feature)."""
    t, _, estimated = result.units.coef_map()
    df = np.full(t.shape[0], np.nan)
    df[estimated] = satterthwaite_df(
        result.stats, result.s2u, result.s2e, result.method, t[estimated], result.derivatives
    )
    return df


def random_effects_intervals(result, level=0.95):
    """Prediction intervals of the random intercepts, u_hat_j -/+ z sqrt(condVar_j).

    Parameters
    ----------
    result : FitResult
        Of a model fitted with groups.
    level : float, default=0.95

    Returns
    -------
    DataFrame
        Indexed by the group labels, with columns ``estimate`` (the BLUP),
        ``std_error`` (the conditional sd), ``lower`` and ``upper``.
    """
    check_level(level)
    u, var = result.random_effects
    sd = np.sqrt(var)
    z = st.norm.ppf(0.5 + level / 2.0)
    return pd.DataFrame(
        {"estimate": u, "std_error": sd, "lower": u - z * sd, "upper": u + z * sd},
        index=pd.Index(result.levels, name="group"),
    )


def predictive_std(result, X, group_index):
    """Standard deviation of a new observation y at rows of X.

    Its variance is x'Cov(beta_hat)x + condVar_j + s2e for a group seen in fit and
    x'Cov(beta_hat)x + s2u + s2e for a new one.  The covariance between beta_hat
    and u_hat_j is ignored, as in lme4's condVar.

    Parameters
    ----------
    result : FitResult
    X : ndarray of shape (n_samples, n_features_in_)
        Validated, in the user's units.
    group_index : ndarray of shape (n_samples,), int
        Index into the group labels, or -1 for a group not seen in fit.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.inference.vcov import predictive_std
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> predictive_std(m._result, np.zeros((2, 1)), np.array([0, -1])).round(3)  # seen, new
    array([1.098, 1.551])
    """
    units = result.units
    z = units.design_rows(X)
    a_inv = result.derivatives["a_inv"]
    var = units.variance_to_user(result.s2e * np.einsum("ij,jk,ik->i", z, a_inv, z))
    s2u, s2e = result.variance_components
    group_index = np.asarray(group_index)
    extra = np.full(z.shape[0], s2u)
    # Without groups there is no u_j: every row is "new", with s2u = 0.
    seen = (group_index >= 0) & result.grouped
    extra[seen] = result.random_effects[1][group_index[seen]]
    return np.sqrt(var + extra + s2e)


def check_level(level):
    """Refuse a confidence level outside (0, 1), e.g. 95 for 0.95."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; e.g. level=0.95.")
