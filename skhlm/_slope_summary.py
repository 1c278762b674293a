"""The lme4-style summary of a model with random slopes (LinearMixedRegressor)."""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from ._summary import (
    _DDF,
    _common_decimals,
    _common_width,
    _criterion,
    _fixed_effects,
    _header,
    _residuals,
    coefficient_table,
)
from .engine.result import INTERCEPT
from .inference import vcov


@dataclass(frozen=True, repr=False)
class SlopeSummary:
    """What ``LinearMixedRegressor.summary()`` reports; ``print`` shows lme4's layout.

    The summary of a model with random slopes (and of an LmerModel with ``(x | g)``
    or ``(x || g)``).  Its attributes are the numbers, to read; it is not made by
    hand.

    Parameters
    ----------
    method, ddf, level, formula, fixed_effects, random_effects, correlations, \
diagonal, log_likelihood, aic, bic, criterion, n_obs, n_groups, group_name, \
n_params, singular, converged, n_iter, residual_quantiles, _fit : object
        The attributes below, which ``summary()`` computes and passes.

    Attributes
    ----------
    method : {"reml", "ml"}
        How the model was fitted.
    ddf : {"satterthwaite", "residual", "asymptotic"}
        How ``fixed_effects`` got its degrees of freedom.
    level : float
        Confidence level of the intervals.
    formula : str
        The model in lme4's notation, for the printed header.
    fixed_effects : DataFrame of shape (n_coefficients, 7)
        Rows "(Intercept)" (when fitted) then the features; columns ``estimate``,
        ``std_error``, ``df``, ``t_value``, ``p_value``, ``ci_lower``, ``ci_upper``
        (t intervals at ``df``).
    random_effects : DataFrame of shape (q + 1, 2)
        Rows "(Intercept)", each random slope, "Residual"; columns ``variance`` and
        ``std_dev``.
    correlations : DataFrame of shape (q, q)
        The correlation matrix of the random effects (NaN where a variance is 0).
    diagonal : bool
        Whether the covariance is diagonal (``covariance="diagonal"``, ``||``).
    log_likelihood, aic, bic : float
        As the estimator's ``log_likelihood_``, ``aic_``, ``bic_``.
    criterion : float
        -2 log-likelihood: the REML criterion of a REML fit, the deviance of an ML
        fit (also as ``reml_criterion`` and ``deviance``, None for the other).
    n_obs, n_groups, n_params, n_iter : int
        Rows, groups, estimated parameters (lme4's npar), iterations.
    group_name : str
        The grouping factor's name, as printed.
    singular, converged : bool
        As the estimator's ``singular_`` and ``converged_``.
    residual_quantiles : ndarray of shape (5,) or None
        Min, Q1, median, Q3, max of the scaled conditional residuals; None when
        the fit did not compute them.
    confint : DataFrame of shape (n_variance_parameters + 1, 2)
        Profile-likelihood intervals (columns ``lower``, ``upper``) of the standard
        deviations, correlations (none when diagonal) and sigma, as lme4's
        ``confint(method="profile")``: computed on first access (seconds on small
        data), then kept.

    See Also
    --------
    skhlm.LinearMixedRegressor.summary : Makes it.
    skhlm._summary.Summary : The summary of a random intercept model.

    Examples
    --------
    >>> from skhlm import LinearMixedRegressor
    >>> from skhlm.datasets import make_longitudinal
    >>> X, y, subject = make_longitudinal(random_state=0)
    >>> s = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject).summary()
    >>> print(s)
    Linear mixed model fit by REML. t-tests use Satterthwaite's method
    Formula: y ~ time + (1 + time | subject)
    <BLANKLINE>
    REML criterion at convergence: 1734.0
    <BLANKLINE>
    Scaled residuals:
        Min      1Q  Median      3Q     Max
    -2.9541 -0.5895  0.0762  0.7173  2.1523
    <BLANKLINE>
    Random effects:
     Groups   Name        Variance Std.Dev. Corr
     subject  (Intercept) 545.19   23.349
              time         30.90    5.559   -0.06
     Residual             630.56   25.111
    Number of obs: 180, groups:  subject, 18
    <BLANKLINE>
    Fixed effects:
                Estimate Std. Error     df t value Pr(>|t|)
    (Intercept)  250.053      6.511 17.000  38.406  < 2e-16 ***
    time          12.315      1.463 17.000   8.415 1.82e-07 ***
    ---
    Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1
    >>> s.correlations.round(2)
                 (Intercept)  time
    (Intercept)         1.00 -0.06
    time               -0.06  1.00
    """

    method: str
    ddf: str
    level: float
    formula: str
    fixed_effects: pd.DataFrame
    random_effects: pd.DataFrame
    correlations: pd.DataFrame
    diagonal: bool
    log_likelihood: float
    aic: float
    bic: float
    criterion: float
    n_obs: int
    n_groups: int
    group_name: str
    n_params: int
    singular: bool
    converged: bool
    n_iter: int
    residual_quantiles: np.ndarray
    _fit: object = field(default=None, repr=False, compare=False)

    @cached_property
    def confint(self):
        """Profile-likelihood intervals of the standard deviations, correlations and
        sigma at ``level`` (lme4's ``confint(m, method = "profile")``, from the ML
        deviance as lme4's): computed on first access, then kept."""
        from .inference.slopes import profile_intervals

        return profile_intervals(self._fit, self.level)

    singular_message = "Boundary (singular) fit: a random-effect variance is 0 or a correlation is +-1"

    @property
    def reml_criterion(self):
        """``criterion`` of a REML fit; None for ML."""
        return self.criterion if self.method == "reml" else None

    @property
    def deviance(self):
        """``criterion`` of an ML fit; None for REML."""
        return self.criterion if self.method == "ml" else None

    def __str__(self):
        lines = _header(self) + [""] + _criterion(self) + [""]
        lines += _residuals(self.residual_quantiles, self.n_obs)
        lines.append("")
        lines += self._random_block()
        lines.append("")
        lines += _fixed_effects(self.fixed_effects, self.ddf)
        return "\n".join(lines)

    __repr__ = __str__

    def _random_block(self):
        """lme4's block: per effect its variance, SD and (unstructured) its
        correlations with the effects before it, two decimals."""
        table = self.random_effects
        var = _common_width(_common_decimals(table["variance"].tolist()))
        sd = _common_width(_common_decimals(table["std_dev"].tolist()))
        names = list(table.index[:-1])
        corr = self.correlations.to_numpy()
        header = ("Groups", "Name", "Variance", "Std.Dev.") + (() if self.diagonal else ("Corr",))
        rows = [header]
        for k, name in enumerate(names):
            cells = [self.group_name if k == 0 else "", name, var[k], sd[k]]
            if not self.diagonal:
                cells.append(" ".join(f"{c:5.2f}" if np.isfinite(c) else "  NaN" for c in corr[k, :k]))
            rows.append(tuple(cells))
        rows.append(("Residual", "", var[-1], sd[-1]) + (() if self.diagonal else ("",)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["Random effects:"]
        lines += [" " + " ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        return lines + [f"Number of obs: {self.n_obs}, groups:  {self.group_name}, {self.n_groups}"]


def summarize_slopes(model, level=0.95, ddf="satterthwaite"):
    """The summary of a fitted LinearMixedRegressor with random slopes."""
    vcov.check_level(level)
    if ddf not in _DDF:
        raise ValueError(f"ddf must be one of {sorted(_DDF)}, got {ddf!r}.")
    fit = model._result
    units = fit.units
    cov = units.coef_covariance_to_user(fit.result.coef_cov)
    se = np.sqrt(np.diag(cov))
    estimate = np.concatenate([[model.intercept_], model.coef_]) if units.fit_intercept else model.coef_
    _, _, estimated = units.coef_map()
    df = np.full(se.shape, np.nan)
    if ddf == "satterthwaite":
        df = fit.coef_df()
    elif ddf == "asymptotic":
        df[estimated] = np.inf
    else:
        df[estimated] = fit.n_obs - units.n_params
    names = ([INTERCEPT] if units.fit_intercept else []) + list(fit.names.features)
    fixed = coefficient_table(estimate, se, df, names, level)
    sigma = model.variance_components_["group"]
    s2e = model.variance_components_["residual"]
    effects = [INTERCEPT] + model.random_effect_names_[1:]
    variance = np.append(np.diag(sigma), s2e)
    random = pd.DataFrame(
        {"variance": variance, "std_dev": np.sqrt(variance)}, index=effects + ["Residual"]
    )
    sd = np.sqrt(np.diag(sigma))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sigma / np.outer(sd, sd)
    correlations = pd.DataFrame(corr, index=effects, columns=effects)
    bar = "||" if fit.diagonal else "|"
    terms = [n for n in names if n != INTERCEPT] if units.fit_intercept else ["0"] + names
    slopes = " + ".join(["1"] + model.random_effect_names_[1:])
    formula = f"{fit.names.response} ~ " + " + ".join(terms + [f"({slopes} {bar} {fit.names.group})"])
    return SlopeSummary(
        method=fit.method,
        ddf=ddf,
        level=level,
        formula=formula,
        fixed_effects=fixed,
        random_effects=random,
        correlations=correlations,
        diagonal=fit.diagonal,
        log_likelihood=model.log_likelihood_,
        aic=model.aic_,
        bic=model.bic_,
        criterion=-2.0 * model.log_likelihood_,
        n_obs=fit.n_obs,
        n_groups=model.groups_.shape[0],
        group_name=fit.names.group,
        n_params=fit.n_parameters,
        singular=model.singular_,
        converged=model.converged_,
        n_iter=model.n_iter_,
        residual_quantiles=fit.residual_quantiles,
        _fit=fit,
    )
