"""Inference for the random intercept model, on sufficient statistics.

Standard errors, Satterthwaite degrees of freedom, intervals of the random effects
and predictive standard deviations (profile likelihood: skhlm._profile).
The functions in the first part are pure: they take the standardized
:class:`SufficientStats` and variances in the same units (notation:
skhlm._objective) and cost O(K p^2) per likelihood evaluation.  The functions taking
a fitted ``model`` map the results to the user's units with
``model._standardization``.

Two parametrizations are used, each where its invariance matters.  Satterthwaite's
method follows lmerTest: the deviance as a function of (theta, sigma), with
theta = sqrt(lambda) = sigma_u / sigma, profiled over beta only.
"""

import numpy as np
import pandas as pd
from scipy import linalg
from scipy import stats as st

from . import _objective as obj


# -- Satterthwaite degrees of freedom (lmerTest) --


def deviance_hessian(stats, s2u, s2e, method):
    """Hessian of the deviance in (theta, sigma), profiled over beta only.

    The deviance is D = logdet(lambda) + rss(lambda) / sigma^2 + m log(2 pi sigma^2),
    m = n (ML) or n - p (REML): lmerTest's ``devfun_vp``.  With lambda = theta^2,
    D_theta,theta = 2 D_lambda + 4 lambda D_lambda,lambda, which at a boundary fit
    (theta = 0) is 2 D_lambda and the cross term vanishes.
    """
    lam = s2u / s2e
    d = obj.lambda_derivatives(stats, lam, method)
    m = stats.n_obs - (stats.n_params if method == "reml" else 0)
    d_lam = d["logdet1"] + d["rss1"] / s2e
    d_lam2 = d["logdet2"] + d["rss2"] / s2e
    sigma = np.sqrt(s2e)
    h_tt = 2.0 * d_lam + 4.0 * lam * d_lam2
    h_ts = -4.0 * np.sqrt(lam) * d["rss1"] / sigma**3
    h_ss = 6.0 * d["rss"] / s2e**2 - 2.0 * m / s2e
    return np.array([[h_tt, h_ts], [h_ts, h_ss]])


def covariance_jacobian(stats, s2u, s2e):
    """d Cov(beta_hat) / d(theta, sigma) with Cov = sigma^2 A(theta^2)^-1: (2, p, p)."""
    lam = s2u / s2e
    d = obj.lambda_derivatives(stats, lam, "ml")
    a_inv = d["a_inv"]
    d_theta = -2.0 * np.sqrt(lam) * s2e * (a_inv @ d["a1"] @ a_inv)
    d_sigma = 2.0 * np.sqrt(s2e) * a_inv
    return np.stack([d_theta, d_sigma])


def satterthwaite_df(stats, s2u, s2e, method, contrasts):
    """Satterthwaite's denominator df of each contrast l'beta (rows of ``contrasts``).

    df = 2 (l'Cl)^2 / (g' A g), C = Cov(beta_hat), g the gradient of l'Cl in
    (theta, sigma) and A = 2 H^-1, H the deviance Hessian; as lmerTest, H is
    inverted on its positive eigenvalues only.
    """
    lam = s2u / s2e
    a_inv = obj.lambda_derivatives(stats, lam, "ml")["a_inv"]
    contrasts = np.atleast_2d(contrasts)
    var = np.einsum("ki,ij,kj->k", contrasts, s2e * a_inv, contrasts)
    jac = covariance_jacobian(stats, s2u, s2e)
    grad = np.einsum("ki,aij,kj->ka", contrasts, jac, contrasts)
    evals, evecs = linalg.eigh(deviance_hessian(stats, s2u, s2e, method))
    pos = evals > 1e-8 * np.abs(evals).max()
    h_pinv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    denom = 2.0 * np.einsum("ka,ab,kb->k", grad, h_pinv, grad)
    with np.errstate(divide="ignore"):
        return np.where(denom > 0, 2.0 * var**2 / np.where(denom > 0, denom, 1.0), np.inf)


# -- Model-level functions: user units --


def internal_variances(model):
    """(s2u, s2e) of a fitted model in the units of its standardized statistics."""
    y2 = model._standardization.y_scale ** 2
    vc = model.variance_components_
    return vc["group"] / y2, vc["residual"] / y2


def _has_groups(model):
    return model.groups_.size > 0


def user_map(standardization):
    """The linear part T of internal beta -> user (intercept, coef...), and which rows
    are estimated (a dropped, linearly redundant feature has a zero row)."""
    s = standardization
    kept = s.kept
    fi = int(s.fit_intercept)
    scale = s.y_scale / s.x_scale[kept]
    t = np.zeros((kept.size + fi, int(kept.sum()) + fi))
    t[np.flatnonzero(kept) + fi, np.arange(kept.sum()) + fi] = scale
    if fi:
        t[0, 0] = s.y_scale
        t[0, 1:] = -scale * s.x_offset[kept]
    estimated = np.concatenate([np.ones(fi, dtype=bool), kept])
    return t, estimated


def coef_covariance(model):
    """Cov(beta_hat) in the user's units: lme4's ``vcov``.

    Parameters
    ----------
    model : fitted RandomInterceptRegressor

    Returns
    -------
    cov : ndarray of shape (n_features_in_ + fit_intercept,) * 2
        Intercept first when the model has one.  Rows and columns of a feature
        dropped as linearly redundant are NaN (lme4 drops the column).

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm._inference import coef_covariance
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> np.sqrt(np.diag(coef_covariance(m))).round(3)
    array([0.264, 0.079])
    """
    s2u, s2e = internal_variances(model)
    a_inv = obj.gls_inverse(model._stats, s2u / s2e)
    t, est = user_map(model._standardization)
    cov = t @ (s2e * a_inv) @ t.T
    cov[~est, :] = np.nan
    cov[:, ~est] = np.nan
    return cov


def random_effects_intervals(model, level=0.95):
    """Prediction intervals of the random intercepts, u_hat_j -/+ z sqrt(condVar_j).

    Parameters
    ----------
    model : fitted RandomInterceptRegressor
    level : float, default=0.95

    Returns
    -------
    DataFrame
        Indexed by ``groups_``, with columns ``estimate`` (the BLUP), ``std_error``
        (the conditional sd), ``lower`` and ``upper``.
    """
    check_level(level)
    sd = np.sqrt(model.random_effects_var_)
    z = st.norm.ppf(0.5 + level / 2.0)
    u = model.random_effects_
    return pd.DataFrame(
        {"estimate": u, "std_error": sd, "lower": u - z * sd, "upper": u + z * sd},
        index=pd.Index(model.groups_, name="group"),
    )


def predictive_std(model, X, group_index):
    """Standard deviation of a new observation y at rows of X.

    Its variance is x'Cov(beta_hat)x + condVar_j + s2e for a group seen in fit and
    x'Cov(beta_hat)x + s2u + s2e for a new one.  The covariance between beta_hat
    and u_hat_j is ignored, as in lme4's condVar.

    Parameters
    ----------
    model : fitted RandomInterceptRegressor
    X : ndarray of shape (n_samples, n_features_in_)
        Validated, in the user's units.
    group_index : ndarray of shape (n_samples,), int
        Index into ``model.groups_``, or -1 for a group not seen in fit.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> from skhlm._inference import predictive_std
    >>> predictive_std(m, np.zeros((2, 1)), np.array([0, -1])).round(3)  # seen, new
    array([1.098, 1.551])
    """
    s = model._standardization
    s2u_int, s2e_int = internal_variances(model)
    a_inv = obj.gls_inverse(model._stats, s2u_int / s2e_int)
    kept = s.kept
    # Centered internal rows keep the intercept's variance exact at large offsets.
    z = (np.asarray(X, dtype=np.float64)[:, kept] - s.x_offset[kept]) / s.x_scale[kept]
    if s.fit_intercept:
        z = np.column_stack([np.ones(z.shape[0]), z])
    var = s.y_scale**2 * s2e_int * np.einsum("ij,jk,ik->i", z, a_inv, z)
    vc = model.variance_components_
    group_index = np.asarray(group_index)
    extra = np.full(z.shape[0], vc["group"])
    # Without groups there is no u_j: every row is "new", with s2u = 0.
    seen = (group_index >= 0) & _has_groups(model)
    extra[seen] = model.random_effects_var_[group_index[seen]]
    return np.sqrt(var + extra + vc["residual"])


def coefficient_names(model):
    """Row names of the fixed effects: "Intercept" when fitted, then the features
    (``feature_names_in_``, or x0, x1, ...)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = [f"x{k}" for k in range(model.n_features_in_)]
    return (["Intercept"] if model._standardization.fit_intercept else []) + [str(n) for n in names]


def check_level(level):
    """Refuse a confidence level outside (0, 1), e.g. 95 for 0.95."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; e.g. level=0.95.")
