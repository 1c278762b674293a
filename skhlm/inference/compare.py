"""Likelihood-ratio tests: nested models compared as lme4's ``anova(m0, m1, ...)``,
and the test of s2u = 0 against the model without random effects."""

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as st
from sklearn.utils.validation import check_is_fitted

from .._base import GroupedRegressorMixin
from .._blas import small_matrix_blas
from ..engine import criterion as crit

# Relative tolerance when checking that two models saw the same response: the
# statistics of the same data agree to rounding, different data do not.
_SAME_DATA_RTOL = 1e-9


def compare(*models, refit=False, names=None):
    """Compare nested models by likelihood-ratio tests, as lme4's ``anova()``.

    Models are sorted by their number of parameters; each row after the first
    tests it against the row above: ``Chisq = 2 * max(0, diff(logLik))`` on
    ``Df = diff(npar)`` degrees of freedom.

    Parameters
    ----------
    *models : fitted RandomInterceptRegressor, LinearMixedRegressor or LmerModel
        Two or more models fitted to the same data (same y and groups); an
        LmerModel (from ``skhlm.lmer``) is compared by its ``estimator_``.
    refit : bool, default=False
        Refit REML models with ML first, from their stored sufficient statistics
        (lme4's ``anova`` does this by default).  Without it, REML fits can only be
        compared when their fixed effects are the same.
    names : list of str, default=None
        Row labels; "m1", "m2", ... in the order given.

    Returns
    -------
    DataFrame
        Columns ``npar``, ``AIC``, ``BIC``, ``logLik``, ``deviance``, ``Chisq``,
        ``Df`` and ``p_value`` (NaN in the first row), as lme4's; and
        ``p_boundary``, where a row adds one random effect (a random intercept, or a
        random slope with its covariances) to the row above with the same fixed
        effects: the p-value under the 50:50 mixture of chi2(Df - 1) and chi2(Df)
        (Stram & Lee 1994), the right null for a variance on the boundary.

    See Also
    --------
    RandomInterceptRegressor.summary : Its ``group_variance_test``, of s2u = 0.
    lmer : Nested models from formulas, which compare takes too.

    Notes
    -----
    ``p_value`` is the naive chi2 one, as lme4's; ``p_boundary`` the mixture's.

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm import compare
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(30), 10)
    >>> X = rng.normal(size=(300, 2))
    >>> y = X[:, 0] + rng.normal(size=30)[g] + rng.normal(size=300)
    >>> m0 = RandomInterceptRegressor(method="ml").fit(X[:, :1], y, groups=g)
    >>> m1 = RandomInterceptRegressor(method="ml").fit(X, y, groups=g)
    >>> compare(m0, m1)[["npar", "Chisq", "Df", "p_value"]].round(3)
        npar  Chisq   Df  p_value
    m1     4    NaN  NaN      NaN
    m2     5  1.003  1.0    0.317
    """
    if len(models) < 2:
        raise ValueError(f"compare needs two or more fitted models, got {len(models)}.")
    from .._formula import LmerModel  # here: _formula imports the estimators, which import this module

    models = [m.estimator_ if isinstance(m, LmerModel) else m for m in models]
    for k, m in enumerate(models):
        if not isinstance(m, GroupedRegressorMixin):
            raise TypeError(
                "compare takes fitted skhlm models (RandomInterceptRegressor); model "
                f"{k + 1} is a {type(m).__name__}. For a Pipeline, pass its last step, "
                "pipeline[-1]."
            )
        check_is_fitted(m)
    names = [f"m{k + 1}" for k in range(len(models))] if names is None else list(names)
    if len(names) != len(models):
        raise ValueError(f"names has {len(names)} entries for {len(models)} models.")
    results = [m._result for m in models]
    _check_same_data(results, names)
    with small_matrix_blas(max(r.stats.n_params for r in results)):
        return _compare(results, names, refit)


def _compare(results, names, refit):
    methods = {r.method for r in results}
    if refit:
        results = [r.ml for r in results]
    elif methods == {"reml", "ml"}:
        raise ValueError(
            "Some models were fitted by REML and some by ML; their log-likelihoods are "
            "not comparable. Pass refit=True to refit the REML models with ML (as "
            "lme4's anova does), or fit all with the same method."
        )
    elif methods == {"reml"} and len({_fixed_signature(r) for r in results}) > 1:
        raise ValueError(
            "These REML fits have different fixed effects. A REML likelihood is that "
            "of residual contrasts, which depend on the fixed-effects design, so REML "
            "log-likelihoods of models with different fixed effects are not "
            "comparable. Pass refit=True to refit them with ML (as lme4's anova "
            "does), or fit them with method='ml'."
        )

    npar = np.array([r.n_parameters for r in results])
    order = np.argsort(npar, kind="stable")
    llk = np.array([results[k].user_log_likelihood for k in order])
    npar = npar[order]
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, np.diff(llk))])
    df = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        p_value = np.where(df > 0, st.chi2.sf(chisq, np.where(df > 0, df, 1.0)), np.nan)
    # Adding one random effect (same fixed effects) puts its variance on the
    # boundary under the null: the 50:50 mixture of chi2(Df - 1) and chi2(Df).
    p_boundary = np.full(len(order), np.nan)
    for row in range(1, len(order)):
        small, big = results[order[row - 1]], results[order[row]]
        if _adds_one_random_effect(small, big) and _fixed_signature(small) == _fixed_signature(big):
            p_boundary[row] = mixture_pvalue(chisq[row], int(df[row]) - 1, int(df[row]))
    return pd.DataFrame(
        {
            "npar": npar,
            "AIC": [results[k].aic for k in order],
            "BIC": [results[k].bic for k in order],
            "logLik": llk,
            "deviance": -2.0 * llk,
            "Chisq": chisq,
            "Df": df,
            "p_value": p_value,
            "p_boundary": p_boundary,
        },
        index=[names[k] for k in order],
    )


def random_terms(result):
    """The names of a fit's random effects: ("(Intercept)",) for the random
    intercept model, with the slopes' features after it for random slopes."""
    terms = getattr(result, "random_terms", None)
    if terms is not None:
        return tuple(terms)
    return ("(Intercept)",) if result.grouped else ()


def _adds_one_random_effect(small, big):
    a, b = random_terms(small), random_terms(big)
    return len(b) == len(a) + 1 and set(a) <= set(b)


def mixture_pvalue(statistic, df_low, df_high):
    """The p-value of a likelihood-ratio statistic under the 50:50 mixture of
    chi2(df_low) and chi2(df_high) (Self & Liang 1987; Stram & Lee 1994 for a random
    slope with its covariances); chi2(0) is the point mass at 0."""
    statistic = max(float(statistic), 0.0)
    if df_low == 0:
        low = 1.0 if statistic == 0.0 else 0.0
    else:
        low = float(st.chi2.sf(statistic, df_low))
    return 0.5 * low + 0.5 * float(st.chi2.sf(statistic, df_high))


def group_variance_lrt(result):
    """Likelihood-ratio test of s2u = 0 against the model without random effects.

    The statistic compares the fit's criterion (REML or ML) at its optimum and at
    lambda = 0, which is the linear model's (lm's logLik, with REML matching too).
    s2u = 0 is on the boundary, so the null distribution is the 50:50 mixture of
    chi2(0) and chi2(1) (Self & Liang 1987): p = P(chi2_1 > stat) / 2, and 1 at 0.

    Parameters
    ----------
    result : FitResult
        Of a model fitted with groups.

    Returns
    -------
    dict
        ``statistic``, ``df`` (1), ``p_value`` and ``log_likelihood_null``, the
        log-likelihood of the model without random effects (lm's).

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.inference.compare import group_variance_lrt
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> m = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> round(group_variance_lrt(m._result)["statistic"], 3)
    106.359
    """
    if not result.grouped:
        raise ValueError(
            "group_variance_lrt needs a model fitted with groups; this one has no "
            "random effects to test. Refit with fit(X, y, groups=labels)."
        )
    stats, method = result.stats, result.method
    null_criterion = crit.profiled_criterion(stats, 0.0, method)
    # Both criteria from the same function, so a boundary fit gives exactly 0.
    statistic = max(null_criterion - crit.profiled_criterion(stats, result.lam, method), 0.0)
    null = -0.5 * null_criterion - result.units.log_jacobian(stats.n_obs, method)
    # chi2_1's survival function, scipy.stats.chi2.sf's own (chdtrc) without its
    # ~60 us of argument handling: the summary prints this test.
    p_value = 1.0 if statistic == 0.0 else 0.5 * float(special.chdtrc(1, statistic))
    return {"statistic": statistic, "df": 1, "p_value": p_value, "log_likelihood_null": float(null)}


def _fixed_signature(result):
    """What identifies a fixed-effects design: the intercept, the number of features and
    the kept columns' moments in the user's units, their mean and variance and their
    covariance with y (which tells apart columns of equal mean and variance, e.g. a
    permuted column; y is checked to be the same apart).  The moments do not depend
    on the point the fit centered the columns at (a sample's mean, so it changes
    when the rows are reordered)."""
    units = result.units
    mean, variance, cross = units.column_moments(result.stats)
    return (
        units.fit_intercept,
        units.kept.size,
        units.kept.tobytes(),
        _significant(mean),
        _significant(variance),
        _significant(cross),
    )


def _significant(values, digits=9):
    """Values rounded to a number of significant digits, as bytes (for comparison)."""
    return np.array([float(f"{v:.{digits - 1}e}") for v in values]).tobytes()


def _check_same_data(results, names):
    first = results[0]
    n0, total0, squares0 = first.units.response_sums(first.stats)
    for m, name in zip(results[1:], names[1:]):
        n, total, squares = m.units.response_sums(m.stats)
        # Sums can cancel to ~0; compare them on the scale of sqrt(n sum y^2).
        atol = _SAME_DATA_RTOL * np.sqrt(n0 * squares0)
        same = n == n0 and np.isclose(squares, squares0, rtol=_SAME_DATA_RTOL, atol=0)
        same = same and np.isclose(total, total0, rtol=0, atol=atol)
        if same and first.grouped and m.grouped:
            same = np.array_equal(first.levels, m.levels) and np.allclose(
                first.units.group_response_sums(first.stats),
                m.units.group_response_sums(m.stats),
                rtol=0,
                atol=atol,
            )
        if not same:
            raise ValueError(
                f"{name} was not fitted to the same data as {names[0]} (the number of "
                "rows, the response, the groups or the weights differ); likelihoods of "
                "different data are not comparable. Fit all models to the same y and "
                "groups, with the same sample_weight."
            )
