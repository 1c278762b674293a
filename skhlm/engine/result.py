"""The fitted-result contract: what a fit leaves, and what every function on a
fitted model takes (inference, profiles, compare, summary).

A :class:`FitResult` is frozen and in internal units: the statistics it was fitted
on, the map back to the user's units, the estimates and the convergence record.
Everything in user units is derived from it through that map
(skhlm.data.units.Standardization), in one place.  An estimator only stores it
and exposes public attributes read from it.
"""

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..data.stats import SufficientStats
from ..data.units import Standardization
from . import criterion as crit
from . import em
from .steps import posterior

# A group variance below this fraction of the residual one counts as singular, as
# lme4's isSingular (its default tol, 1e-4, is on sqrt(s2u / s2e)).
_SINGULAR_RATIO = 1e-8

INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class ModelNames:
    """Names for printing and tables: the response, the grouping factor, the
    features (``feature_names_in_``, or x0, x1, ...)."""

    response: str = "y"
    group: str = "group"
    features: tuple = ()


@dataclass(frozen=True, eq=False)
class FitResult(em.EMResult):
    """A fitted random intercept model, in internal units.

    The driver's estimates and convergence record (the fields of
    :class:`~skhlm.engine.em.EMResult`: ``beta``, ``s2u``, ``s2e``, ``n_iter``,
    ``converged``, ``boundary``, ``log_likelihood_history``), with what they were
    fitted on and how.  ``levels`` is None for a model fitted without groups.
    ``residual_quantiles`` (min, quartiles and max of the scaled residuals, for the
    summary) need the rows a second time: None when they were not computed.
    """

    stats: SufficientStats
    units: Standardization
    method: str
    limits: em.Limits = em.Limits()
    levels: np.ndarray | None = None
    names: ModelNames = field(default_factory=ModelNames)
    residual_quantiles: np.ndarray | None = None

    # -- the estimates --

    @property
    def grouped(self):
        return self.levels is not None

    @property
    def n_groups(self):
        return 0 if self.levels is None else int(self.levels.shape[0])

    @property
    def lam(self):
        """lambda = s2u / s2e."""
        return self.s2u / self.s2e

    @property
    def n_parameters(self):
        """Fixed effects (linearly redundant ones dropped) plus 2 variances, or 1 for
        s2e alone without groups: lme4's npar and the k of AIC."""
        return self.stats.n_params + (2 if self.grouped else 1)

    @property
    def coef_names(self):
        """Names of the fixed effects, intercept first when fitted (lme4's)."""
        features = [str(n) for n in self.names.features]
        return ([INTERCEPT] if self.units.fit_intercept else []) + features

    # -- in the user's units --

    def coef_and_intercept(self):
        return self.units.coef_to_user(self.beta)

    @property
    def variance_components(self):
        """(s2u, s2e) in the user's units."""
        return self.units.variance_to_user(self.s2u), self.units.variance_to_user(self.s2e)

    @property
    def singular(self):
        s2u, s2e = self.variance_components
        return self.grouped and bool(self.boundary or s2u < _SINGULAR_RATIO * s2e)

    @cached_property
    def user_log_likelihood_history(self):
        return self.log_likelihood_history - self.units.log_jacobian(self.stats.n_obs, self.method)

    @property
    def user_log_likelihood(self):
        """lme4's logLik: REML or ML, with lme4's constants."""
        return float(self.user_log_likelihood_history[-1])

    @property
    def aic(self):
        return -2.0 * self.user_log_likelihood + 2.0 * self.n_parameters

    @property
    def bic(self):
        return -2.0 * self.user_log_likelihood + self.n_parameters * np.log(self.stats.n_obs)

    @cached_property
    def random_effects(self):
        """The BLUPs and their conditional variances (lme4's ranef and condVar), by
        label, in the user's units; empty without groups."""
        if not self.grouped:
            return np.array([]), np.array([])
        u, var = posterior(self.stats, self.beta, self.s2u, self.s2e)
        return self.units.response_to_user(u), self.units.variance_to_user(var)

    # -- shared by inference: A(lambda) factored once per result --

    @cached_property
    def derivatives(self):
        """:func:`skhlm.engine.criterion.lambda_derivatives` at the estimate: A^-1,
        dA/dlambda and the criterion's derivatives, for the covariance, the
        Satterthwaite df and the predictive variances."""
        return crit.lambda_derivatives(self.stats, self.lam, self.method)

    def coef_covariance(self):
        """Cov(beta_hat) = s2e A^-1 in the user's units (lme4's vcov), intercept first;
        NaN rows and columns for a dropped feature."""
        return self.units.coef_covariance_to_user(self.s2e * self.derivatives["a_inv"])

    def with_residual_quantiles(self, quantiles):
        """This result with the summary's scaled residual quantiles, keeping what it
        has computed already (the BLUPs: G-sized, needed by both)."""
        new = replace(self, residual_quantiles=quantiles)
        for name in ("random_effects", "derivatives", "user_log_likelihood_history"):
            if name in self.__dict__:
                new.__dict__[name] = self.__dict__[name]
        return new

    @cached_property
    def ml(self):
        """This model fitted by ML: itself for an ML fit, else EM from the REML
        estimates (a warm start) with the same limits.  lme4's anova and profile
        refit REML models with ML the same way."""
        if self.method == "ml":
            return self
        result = em.fit(
            self.stats,
            "ml",
            limits=self.limits,
            start=(self.beta, self.s2u, self.s2e),
            grouped=self.grouped,
            purpose="ml refit",
        )
        return replace(self, method="ml", **vars(result))


def fit(stats, units, method, *, limits=em.Limits(), levels=None, names=ModelNames(), verbose=0):
    """Run the EM driver from moment estimates and wrap its estimates in a
    :class:`FitResult`."""
    result = em.fit(
        stats,
        method,
        limits=limits,
        grouped=levels is not None,
        verbose=verbose,
        log_jacobian=units.log_jacobian(stats.n_obs, method),
    )
    return FitResult(stats=stats, units=units, method=method, limits=limits, levels=levels, names=names, **vars(result))
